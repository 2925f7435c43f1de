package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/testnet"
)

// raConf makes the lab router advertise itself as the server side's
// default router, with a short lifetime and frequent RAs.
const raConf = `interface rs0 {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	AdvDefaultLifetime 30;
	prefix fd77:2::/64 { AdvOnLink on; AdvAutonomous off; };
};
`

// TestDoctorRADefaultRoute is the route-loss reference's case 1.1 end to
// end with a real radvd on the lab router: the server learns its IPv6
// default route from router advertisements; switching IPv6 forwarding on
// with accept_ra=1 purges it, and doctor's no-route-to-peer finding names
// that reason and fixes it with accept_ra=2, after which the next RA
// restores the route and the client connects. Then, forwarding on and the
// route present again but no longer refreshed (accept_ra back to 1),
// doctor warns default-route-at-risk before anything fails.
//
// The kernel purges RA routes on a forwarding write only once per RA-added
// route (rt6_purge_dflt_routers clears the table's has-default-router
// flag), so the loss comes first and the at-risk state second.
func TestDoctorRADefaultRoute(t *testing.T) {
	needRoot(t)
	t.Parallel()
	env := labUp(t, "healthy-v6", "it-ra")
	srv, err := netns.Open(env.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rtr, err := netns.Open(env.Router)
	if err != nil {
		t.Fatal(err)
	}
	defer rtr.Close()
	h := handleIn(t, srv)

	// The lab's static IPv6 default goes; router advertisements bring one.
	for _, r := range v6Defaults(t, h) {
		if err := h.RouteDel(&r); err != nil {
			t.Fatal(err)
		}
	}
	testnet.Sysctl(t, srv, "net/ipv6/conf/all/forwarding", "0")
	testnet.Sysctl(t, srv, "net/ipv6/conf/s0/accept_ra", "1")
	testnet.StartRadvd(t, rtr, raConf)
	waitRADefault(t, h, true)
	dialEventually(t, env, 6)

	// The switch: forwarding on while accept_ra=1.
	testnet.Sysctl(t, srv, "net/ipv6/conf/all/forwarding", "1")
	waitRADefault(t, h, false)
	rep, r := doctorJSON(t, "--netns", env.Server)
	if r.code != 1 || len(rep.Findings) == 0 || rep.Findings[0].Cause != causes.NoRouteToPeer {
		dumpReport(t, rep)
		t.Fatalf("exit %d; want no-route-to-peer first", r.code)
	}
	top := rep.Findings[0]
	if !strings.Contains(top.Summary, "(forwarding-enabled)") || !hasReason(top, "forwarding-enabled") {
		dumpReport(t, rep)
		t.Fatalf("no-route-to-peer does not name the reason forwarding-enabled: %s", top.Summary)
	}
	first := strings.SplitN(top.Fix, "\n", 2)[0]
	if want := "ip netns exec " + env.Server + " sysctl -w net.ipv6.conf.s0.accept_ra=2"; first != want {
		t.Fatalf("fix starts with %q, want %q", first, want)
	}
	runFixInScratchShell(t, first)
	waitRADefault(t, h, true)
	dialEventually(t, env, 6)

	// Forwarding on, route present, accept_ra back to 1: at risk.
	testnet.Sysctl(t, srv, "net/ipv6/conf/s0/accept_ra", "1")
	rep, r = doctorJSON(t, "--netns", env.Server, "--no-capture")
	var risk *report.Finding
	for i := range rep.Findings {
		f := &rep.Findings[i]
		switch f.Cause {
		case causes.DefaultRouteAtRisk:
			risk = f
		case causes.NoRouteToPeer:
			t.Errorf("route present, yet %s: %s", f.Cause, f.Summary)
		}
	}
	if risk == nil || risk.Severity != report.Warning || r.code != 1 {
		dumpReport(t, rep)
		t.Fatalf("exit %d; want a default-route-at-risk warning", r.code)
	}
	if !strings.Contains(evidenceText(*risk), "accept_ra") || !strings.Contains(risk.Fix, "accept_ra=2") {
		dumpReport(t, rep)
		t.Fatalf("at-risk finding lacks the accept_ra evidence or fix")
	}
}

func hasReason(f report.Finding, reason string) bool {
	for _, e := range f.Evidence {
		if e.Data["reason"] == reason {
			return true
		}
	}
	return false
}

func v6Defaults(t *testing.T, h *netlink.Handle) []netlink.Route {
	t.Helper()
	rs, err := h.RouteListFiltered(unix.AF_INET6, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Route
	for _, r := range rs {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			out = append(out, r)
		}
	}
	return out
}

// waitRADefault waits until an RA-learned default route is present (or
// gone), bounded by a few RA intervals.
func waitRADefault(t *testing.T, h *netlink.Handle, present bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		found := false
		for _, r := range v6Defaults(t, h) {
			if r.Protocol == unix.RTPROT_RA {
				found = true
			}
		}
		if found == present {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RA default route present=%v after 20s, want %v", found, present)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// raShortConf advertises a router lifetime of 4 s, so that a route no
// longer refreshed expires within seconds.
const raShortConf = `interface rs0 {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	AdvDefaultLifetime 4;
	prefix fd77:2::/64 { AdvOnLink on; AdvAutonomous off; };
};
`

// TestDoctorRAExpiredInPlaceFix is issue 18's doctor acceptance line:
// the RA default route expired in place (forwarding=1, accept_ra=1, the
// route still listed with a negative expiry, lookups failing). doctor's
// printed fix, every line run as printed, restores IPv6 connectivity at
// once — `ip -6 route add` of that route would fail with "File exists",
// so the route line must be a replace.
func TestDoctorRAExpiredInPlaceFix(t *testing.T) {
	needRoot(t)
	t.Parallel()
	env := labUp(t, "healthy-v6", "it-rx")
	srv, err := netns.Open(env.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rtr, err := netns.Open(env.Router)
	if err != nil {
		t.Fatal(err)
	}
	defer rtr.Close()
	h := handleIn(t, srv)
	for _, r := range v6Defaults(t, h) {
		if err := h.RouteDel(&r); err != nil {
			t.Fatal(err)
		}
	}
	testnet.Sysctl(t, srv, "net/ipv6/conf/all/forwarding", "0")
	testnet.Sysctl(t, srv, "net/ipv6/conf/s0/accept_ra", "1")
	testnet.StartRadvd(t, rtr, raShortConf)
	waitRADefault(t, h, true)
	dialEventually(t, env, 6)
	// Forwarding on without the purge (accept_ra=2 first), then accept_ra
	// back to 1: later RAs are ignored and the route runs out in place.
	testnet.Sysctl(t, srv, "net/ipv6/conf/s0/accept_ra", "2")
	testnet.Sysctl(t, srv, "net/ipv6/conf/all/forwarding", "1")
	testnet.Sysctl(t, srv, "net/ipv6/conf/s0/accept_ra", "1")
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := exec.Command("ip", "-n", env.Server, "-6", "route", "show", "default", "proto", "ra").CombinedOutput()
		if err != nil {
			t.Fatalf("ip -6 route: %v: %s", err, out)
		}
		if strings.Contains(string(out), "expires -") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the RA default route did not expire in place within 15s: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The state of the report: the route listed, the lookup failing.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if err := env.Dial(ctx, 6, 500*time.Millisecond); err == nil {
		cancel()
		t.Fatal("the client connects over IPv6 with the default route expired: the state was not built")
	}
	cancel()
	rep, r := doctorJSON(t, "--netns", env.Server, "--window", "300ms", "--peer", "["+env.ClientV6.String()+"]:40000")
	var top *report.Finding
	for i := range rep.Findings {
		if rep.Findings[i].Cause == causes.NoRouteToPeer {
			top = &rep.Findings[i]
			break
		}
	}
	if top == nil || r.code != 1 {
		dumpReport(t, rep)
		t.Fatalf("exit %d; want a no-route-to-peer finding", r.code)
	}
	if !strings.Contains(top.Fix, "-6 route replace default via ") {
		dumpReport(t, rep)
		t.Fatalf("the fix does not replace the expired route in place:\n%s", top.Fix)
	}
	if n := len(v6Defaults(t, h)); n != 1 {
		t.Fatalf("%d IPv6 default routes before the fix, want the expired one", n)
	}
	runFixInScratchShell(t, top.Fix)
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := env.Dial(ctx, 6, time.Second); err != nil {
		t.Fatalf("after the printed fix the client does not connect over IPv6 at once: %v\nfix:\n%s", err, top.Fix)
	}
	t.Logf("fix run as printed:\n%s", top.Fix)
}

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
	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/testnet"
)

// defaultsOf lists a family's default routes in the main table.
func defaultsOf(t *testing.T, h *netlink.Handle, fam int) []netlink.Route {
	t.Helper()
	rs, err := h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Route
	for _, r := range rs {
		if r.Dst == nil {
			out = append(out, r)
		} else if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			out = append(out, r)
		}
	}
	return out
}

// TestDoctorNetworkdOwner is issue 18 item 5 (first half) with Debian's
// real systemd-networkd managing the lab server: its static IPv4 default
// route deleted by hand (networkd does not put it back by itself), doctor
// names networkd as the device's owner in the finding's evidence and in
// the report's default routes, names `networkctl reconfigure s0` in the
// fix beside the ip command, and the fix run as printed restores IPv4 at
// once. Negative control: networkd stopped, the same loss names no owner
// and the fix is the ip command alone.
func TestDoctorNetworkdOwner(t *testing.T) {
	needRoot(t)
	t.Parallel()
	env := labUp(t, "healthy", "it-nd")
	srv, err := netns.Open(env.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h := handleIn(t, srv)
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		for _, r := range defaultsOf(t, h, fam) {
			if err := h.RouteDel(&r); err != nil {
				t.Fatal(err)
			}
		}
	}
	nd := testnet.StartNetworkd(t, srv, map[string]string{"10-s0.network": testnet.LabServerNetwork(lab.ServerV4, lab.ServerV6, lab.RouterS4, lab.RouterS6)})
	deadline := time.Now().Add(15 * time.Second)
	for {
		v4, v6 := defaultsOf(t, h, unix.AF_INET), defaultsOf(t, h, unix.AF_INET6)
		if len(v4) == 1 && len(v6) == 1 && v4[0].Protocol == unix.RTPROT_STATIC && v6[0].Protocol == unix.RTPROT_STATIC {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("networkd did not install its static default routes within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	dialEventually(t, env, 4) // the router's neighbour entry: the gateway doctor infers

	lose := func() (*report.Finding, *report.Report) {
		t.Helper()
		if out, err := exec.Command("ip", "-n", env.Server, "route", "del", "default").CombinedOutput(); err != nil {
			t.Fatalf("ip route del default: %v: %s", err, out)
		}
		rep, r := doctorJSON(t, "--netns", env.Server, "--window", "300ms", "--peer", env.ClientV4.String()+":40000")
		for i := range rep.Findings {
			if rep.Findings[i].Cause == causes.NoRouteToPeer {
				return &rep.Findings[i], rep
			}
		}
		dumpReport(t, rep)
		t.Fatalf("exit %d; want a no-route-to-peer finding", r.code)
		return nil, nil
	}
	evidenceOf := func(f *report.Finding) string {
		var b strings.Builder
		for _, e := range f.Evidence {
			b.WriteString(e.Source + ": " + e.Text + "\n")
		}
		return b.String()
	}

	f, rep := lose()
	const owned = "s0 is managed by systemd-networkd (configured)"
	if ev := evidenceOf(f); !strings.Contains(ev, "network-managers: "+owned) {
		t.Errorf("the finding does not name networkd:\n%s", ev)
	}
	if !strings.Contains(f.Fix, "prefer: networkctl reconfigure s0\n") || !strings.Contains(f.Fix, "route add default via "+lab.RouterS4.String()+" dev s0") {
		t.Errorf("fix does not name networkd's command beside the ip command:\n%s", f.Fix)
	}
	managed := false
	for _, d := range rep.DefaultRoutes {
		managed = managed || (d.Family == "ipv6" && d.Manager == owned)
	}
	if !managed {
		t.Errorf("report default routes do not name networkd: %+v", rep.DefaultRoutes)
	}
	runFixInScratchShell(t, f.Fix)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := env.Dial(ctx, 4, time.Second); err != nil {
		t.Fatalf("after the printed fix the client does not connect over IPv4 at once: %v\nfix:\n%s", err, f.Fix)
	}
	t.Logf("fix run as printed:\n%s", f.Fix)

	// networkd stopped: nothing owns s0.
	nd.Stop()
	f, _ = lose()
	if ev := evidenceOf(f); strings.Contains(ev, "managed by") || !strings.Contains(ev, "network-managers: no network manager runs for s0") {
		t.Errorf("networkd stopped, the evidence says:\n%s", ev)
	}
	if strings.Contains(f.Fix, "networkctl") {
		t.Errorf("networkd stopped, the fix still names it:\n%s", f.Fix)
	}
}

package watch

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/testnet"
)

// networkdRANetwork is the pair's server end as a systemd-networkd
// .network file with networkd's own RA client: no static default route,
// the IPv6 one comes from the router's advertisements through networkd.
const networkdRANetwork = `[Match]
Name=s0

[Network]
Address=10.61.0.2/24
Address=fd61::2/64
IPv6AcceptRA=yes
LinkLocalAddressing=ipv6
`

// raBlock makes the pair's router stop advertising, as a router whose
// radvd hangs: its RAs (unsolicited and answers to solicitations) are
// dropped on the way out; on=false lets them through again.
func (p *pair) raBlock(t *testing.T, on bool) {
	t.Helper()
	op := "-A"
	if !on {
		op = "-D"
	}
	out, err := exec.Command("ip", "netns", "exec", p.gw.Name, "ip6tables-legacy", op, "OUTPUT",
		"-p", "icmpv6", "--icmpv6-type", "router-advertisement", "-j", "DROP").CombinedOutput()
	if err != nil {
		t.Fatalf("ip6tables-legacy %s: %v: %s", op, err, out)
	}
}

// networkdRARoute waits (bounded) for networkd's RA-learned IPv6 default
// route and returns it as watch reads it.
func (p *pair) networkdRARoute(t *testing.T, within time.Duration) Route {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, r := range p.ownDump(t) {
			if r.Family == 6 && r.Protocol == protoRA {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no RA-learned IPv6 default route %s after networkd started", within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLabNetworkdRA is issue 18 item 3(b) and 3(c) with Debian's real
// systemd-networkd and a real radvd. networkd runs its own RA client
// (IPv6AcceptRA=yes): it sets the kernel's accept_ra to 0 and installs the
// RA default route itself, protocol ra, metric 1024, with the router's
// lifetime as the route's expiry. watch --repair --hold-down 2s.
//
// The router stops advertising (its RAs dropped on the way out): the
// route expires, route-lost says ra-expired and names systemd-networkd as
// the device's owner; the repair sends a solicitation (not answered),
// then leaves the route to networkd (left-to-owner, `networkctl
// reconfigure s0`) and adds no route of its own. RAs again: networkd
// re-installs the route, route-restored names it.
//
// Then networkd stopped (SIGTERM, as `systemctl stop`) and the router
// silent again: the route still expires in the kernel (its expiry is the
// kernel's, not networkd's timer), route-lost ra-expired with no owner;
// nothing manages the device, accept_ra is 0 so no RA can bring it back:
// watch re-adds it (proto synscope) once the gateway answers neighbour
// discovery, and a route lookup goes through it.
func TestLabNetworkdRA(t *testing.T) {
	p := newPair(t, "nr", "s0")
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rt := defaultRoute(t, p.hs, fam)
		if err := p.hs.RouteDel(&rt); err != nil {
			t.Fatal(err)
		}
	}
	const lifetime = 9
	testnet.StartRadvd(t, p.gw, fmt.Sprintf("interface g0 {\n\tAdvSendAdvert on;\n\tMinRtrAdvInterval 3;\n\tMaxRtrAdvInterval 4;\n"+
		"\tAdvDefaultLifetime %d;\n\tprefix fd61::/64 { AdvOnLink on; AdvAutonomous off; };\n};\n", lifetime))
	nd := testnet.StartNetworkd(t, p.srv, map[string]string{"10-s0.network": networkdRANetwork})
	ra := p.networkdRARoute(t, 20*time.Second)
	out, err := exec.Command("ip", "netns", "exec", p.srv.Name, "cat", "/proc/sys/net/ipv6/conf/s0/accept_ra").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("networkd's RA route: %s metric %d expiry %v (in %s); kernel accept_ra=%s",
		ra, ra.Metric, ra.HasExpiry, time.Until(ra.ExpiresAt).Round(time.Second), strings.TrimSpace(string(out)))
	if a := strings.TrimSpace(string(out)); a != "0" {
		t.Fatalf("accept_ra=%s under networkd's RA client, want 0 (networkd handles RAs itself)", a)
	}
	if ra.Metric != 1024 || !ra.HasExpiry {
		t.Fatalf("networkd's RA route: metric %d expiry %v, want metric 1024 with an expiry", ra.Metric, ra.HasExpiry)
	}

	opts := repairOpts(p.srv.Name, t.TempDir())
	opts.HoldDown = 2 * time.Second
	opts.RSWait = 2 * time.Second
	opts.Interval = 15 * time.Second
	d := startWatch(t, opts)
	ns := p.srv.Name
	d.waitValue(t, 5*time.Second, "synscope_default_route_present", presentLabels(ns, "ipv6"), 1)

	// The router stops advertising; networkd runs.
	from := d.log.count()
	p.raBlock(t, true)
	l := d.log.wait(t, from, (lifetime+3)*time.Second, "route-lost ipv6", eventIs(EventRouteLost, ns, "ipv6"))
	rt, _ := l.f["route"].(map[string]any)
	if l.f["reason"] != string(ReasonRAExpired) || l.f["owner"] != MgrNetworkd || rt["protocol"] != "ra" {
		t.Errorf("route-lost: reason %v owner %v protocol %v, want ra-expired, systemd-networkd, ra: %s",
			l.f["reason"], l.f["owner"], rt["protocol"], l.raw)
	}
	left := d.log.wait(t, from, opts.HoldDown+opts.RSWait+5*time.Second, "repair left to networkd",
		func(f map[string]any) bool {
			return f["event"] == EventRepair && f["result"] != nil && f["family"] == "ipv6"
		})
	if left.f["result"] != RepairLeftToOwner {
		t.Fatalf("repair of networkd's expired RA route ended %v, want %s; log:\n%s", left.f["result"], RepairLeftToOwner, d.log.dump())
	}
	for _, want := range []string{"owned by systemd-networkd", "run `networkctl reconfigure s0`"} {
		if !strings.Contains(fmt.Sprint(left.f["detail"]), want) {
			t.Errorf("left-to-owner line lacks %q: %s", want, left.raw)
		}
	}
	if len(d.log.all(func(f map[string]any) bool { return f["event"] == EventRepair && f["action"] == "solicit" })) == 0 {
		t.Errorf("no router solicitation before leaving the RA route to networkd; log:\n%s", d.log.dump())
	}
	time.Sleep(time.Second)
	assertNoOwnRoute(t, p.hs)

	// RAs again: networkd re-installs its route.
	from = d.log.count()
	p.raBlock(t, false)
	r := d.log.wait(t, from, 10*time.Second, "route-restored ipv6", eventIs(EventRouteRestored, ns, "ipv6"))
	if r.f["restored_by"] != MgrNetworkd {
		t.Errorf("route-restored by %v, want systemd-networkd: %s", r.f["restored_by"], r.raw)
	}
	assertNoOwnRoute(t, p.hs)

	// networkd stopped while its route's lifetime runs out.
	nd.Stop()
	if n := defaultCount(t, p.hs, unix.AF_INET6); n != 1 {
		t.Fatalf("%d IPv6 default routes after networkd stopped, want its RA route still there", n)
	}
	from = d.log.count()
	p.raBlock(t, true)
	l = d.log.wait(t, from, (lifetime+3)*time.Second, "route-lost ipv6 (networkd stopped)", eventIs(EventRouteLost, ns, "ipv6"))
	if l.f["reason"] != string(ReasonRAExpired) || l.f["owner"] != nil {
		t.Errorf("route-lost with networkd stopped: reason %v owner %v, want ra-expired and no owner: %s", l.f["reason"], l.f["owner"], l.raw)
	}
	fixed := d.log.wait(t, from, opts.HoldDown+opts.RSWait+8*time.Second, "repair with networkd stopped",
		func(f map[string]any) bool {
			return f["event"] == EventRepair && f["result"] != nil && f["family"] == "ipv6"
		})
	if fixed.f["result"] != RepairReadded {
		t.Fatalf("repair with networkd stopped ended %v, want %s; log:\n%s", fixed.f["result"], RepairReadded, d.log.dump())
	}
	if _, v6 := p.kernelRoutes(t); !v6 {
		t.Fatalf("no IPv6 route after watch's repair; log:\n%s", d.log.dump())
	}
	if n := defaultCount(t, p.hs, unix.AF_INET6); n != 1 {
		t.Errorf("%d IPv6 default routes after the repair, want 1", n)
	}
}

// assertNoOwnRoute: no default route of watch's own protocol.
func assertNoOwnRoute(t *testing.T, h *netlink.Handle) {
	t.Helper()
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rs, err := h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Protocol == ProtoSynscope {
				t.Errorf("watch added a route of its own: %+v", r)
			}
		}
	}
}

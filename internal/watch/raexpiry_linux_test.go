package watch

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/testnet"
)

// raPair is a pair whose IPv6 default route comes only from a real radvd
// on the gateway end (the static one is removed).
func raPair(t *testing.T, tag, radvdOpts string, lifetime int) *pair {
	t.Helper()
	p := newPair(t, tag, "s0")
	rt := defaultRoute(t, p.hs, unix.AF_INET6)
	if err := p.hs.RouteDel(&rt); err != nil {
		t.Fatal(err)
	}
	conf := "interface g0 {\n\tAdvSendAdvert on;\n\tMinRtrAdvInterval 3;\n\tMaxRtrAdvInterval 4;\n" +
		"\tAdvDefaultLifetime " + strconv.Itoa(lifetime) + ";\n" + radvdOpts +
		"\tprefix fd61::/64 { AdvOnLink on; AdvAutonomous off; };\n};\n"
	testnet.StartRadvd(t, p.gw, conf)
	return p
}

// ownDump reads the default routes of the pair's watched namespace with
// watch's own parser (exact expiry instants, the raw kernel flags).
func (p *pair) ownDump(t *testing.T) []Route {
	t.Helper()
	var s *nlSock
	if err := p.srv.Do(func() error {
		var err error
		s, err = openSock(nil, 0, time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	rs, err := s.dumpRoutes(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// routeDeletions counts RTM_DELROUTE of IPv6 default routes in the pair's
// watched namespace from now on.
func (p *pair) routeDeletions(t *testing.T) func() int {
	t.Helper()
	h, err := p.srv.Handle()
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan netlink.RouteUpdate, 256)
	done := make(chan struct{})
	if err := netlink.RouteSubscribeAt(h, ch, done); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	go func() {
		for u := range ch {
			if u.Type == unix.RTM_DELROUTE && u.Family == unix.AF_INET6 && (u.Dst == nil || u.Dst.IP.IsUnspecified()) {
				if ones, _ := maskOnes(u.Route); ones == 0 {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() { close(done) })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// TestLabRAExpired is reference 1.2 on a real kernel with a real radvd:
// forwarding on with accept_ra=2 keeps the RA-learned route; accept_ra
// lowered to 1 makes the kernel ignore the next RAs, so the route is not
// refreshed. watch warns first (forwarding-accept-ra, then lifetime-low
// with the time left), and at the expiry instant logs route-lost
// ra-expired (within 100 ms of the instant the kernel stops using it)
// although the kernel sends no RTM_DELROUTE and keeps listing the route,
// while its lookup already fails.
func TestLabRAExpired(t *testing.T) {
	p := raPair(t, "rx", "", 6)
	ns := p.srv.Name
	testnet.Sysctl(t, p.srv, "net/ipv6/conf/s0/accept_ra", "2")
	testnet.Sysctl(t, p.srv, "net/ipv6/conf/all/forwarding", "1")
	d := startWatch(t, Options{Netns: []string{ns}, Interval: 200 * time.Millisecond, RiskLifetime: 4 * time.Second})
	// The RA-learned route (the only IPv6 default route of the pair): it
	// may have come before watch started (then it is in the initial
	// state, with no route-added line), so wait for the gauge.
	d.waitValue(t, 15*time.Second, "synscope_default_route_present", presentLabels(ns, "ipv6"), 1)
	if v, _ := d.value("synscope_default_route_at_risk", riskLabels(ns, "ipv6", RiskForwardingAcceptRA)); v != 0 {
		t.Fatal("at risk with accept_ra=2, which accepts RAs with forwarding on")
	}

	dels := p.routeDeletions(t)
	from := d.log.count()
	testnet.Sysctl(t, p.srv, "net/ipv6/conf/s0/accept_ra", "1")
	d.log.wait(t, from, 2*time.Second, "route-at-risk forwarding-accept-ra", func(f map[string]any) bool {
		return f["event"] == EventRouteAtRisk && f["risk"] == RiskForwardingAcceptRA
	})
	// The route's expiry instant as the kernel holds it: the last RA before
	// the change may still have refreshed it, so read it once RAs are
	// ignored (wait past one advertisement interval).
	time.Sleep(4500 * time.Millisecond)
	var ra Route
	for _, r := range p.ownDump(t) {
		if r.Family == 6 && r.Protocol == protoRA {
			ra = r
		}
	}
	if !ra.HasExpiry {
		t.Fatalf("no RA route with a lifetime left to expire (log:\n%s)", d.log.dump())
	}
	low := d.log.wait(t, from, 6*time.Second, "route-at-risk lifetime-low", func(f map[string]any) bool {
		return f["event"] == EventRouteAtRisk && f["risk"] == RiskLifetimeLow
	})
	if !low.at.Before(ra.ExpiresAt) {
		t.Errorf("lifetime-low logged at %s, not before the expiry %s", low.at, ra.ExpiresAt)
	}
	lost := d.log.wait(t, from, 8*time.Second, "route-lost ra-expired", eventIs(EventRouteLost, ns, "ipv6"))
	if lost.f["reason"] != string(ReasonRAExpired) {
		t.Fatalf("reason %v, want ra-expired: %s\nlog:\n%s\nRTM_DELROUTE seen: %d", lost.f["reason"], lost.raw, d.log.dump(), dels())
	}
	// rta_expires is in clock ticks (10 ms): the instant is known to 10 ms.
	if lat := lost.at.Sub(ra.ExpiresAt); lat > detectBudget || lat < -10*time.Millisecond {
		t.Errorf("ra-expired logged %s after the expiry instant, want within [-10ms, %s]", lat, detectBudget)
	}
	d.waitValue(t, time.Second, "synscope_default_route_present", presentLabels(ns, "ipv6"), 0)
	if v, _ := d.value("synscope_default_route_losses_total", lossLabels(ns, "ipv6", ReasonRAExpired)); v != 1 {
		t.Errorf("losses_total{ra-expired} = %v, want 1", v)
	}
	if _, ok := d.value("synscope_default_route_expiry_seconds", map[string]string{"netns": ns, "family": "ipv6"}); ok {
		t.Error("expiry_seconds still exported for an expired route")
	}
	// The kernel's side of it: still listed, not used, never deleted.
	time.Sleep(500 * time.Millisecond)
	listed := false
	for _, r := range p.ownDump(t) {
		if r.Family == 6 && r.Protocol == protoRA && r.HasExpiry && !time.Now().Before(r.ExpiresAt) {
			listed = true
		}
	}
	if !listed {
		t.Error("the expired RA route is no longer listed: the kernel removed it (reference 1.2 says it stays)")
	}
	if _, v6 := p.kernelRoutes(t); v6 {
		t.Error("the kernel still routes IPv6 through the expired RA route")
	}
	if n := dels(); n != 0 {
		t.Errorf("%d RTM_DELROUTE for the IPv6 default route: the loss was not silent", n)
	}
	t.Logf("expiry %s, lifetime-low %s before it, route-lost %s after it", ra.ExpiresAt.Format("15:04:05.000"),
		ra.ExpiresAt.Sub(low.at).Round(time.Millisecond), lost.at.Sub(ra.ExpiresAt).Round(time.Microsecond))
}

// TestLabRepairBySolicitation: with --repair, a deleted RA-learned route
// is restored by the network, not by watch: radvd runs UnicastOnly (it
// advertises only in answer to a Router Solicitation) and the kernel sends
// none (router_solicitations=0), so the RA that brings the route back
// answers watch's solicitation. watch logs restored-by-ra, adds nothing
// (the route is proto ra, not 83) and counts no re-add.
func TestLabRepairBySolicitation(t *testing.T) {
	p := raPair(t, "rs", "\tUnicastOnly on;\n", 60)
	ns := p.srv.Name
	testnet.Sysctl(t, p.srv, "net/ipv6/conf/s0/accept_ra", "1")
	testnet.Sysctl(t, p.srv, "net/ipv6/conf/s0/router_solicitations", "0")
	opts := repairOpts(ns, t.TempDir())
	opts.RSWait = 5 * time.Second // radvd keeps 3 s between advertisements
	d := startWatch(t, opts)
	s0 := p.link(t, p.hs, "s0")
	// The first route: solicitations from the test, one a second until
	// radvd (just started) answers.
	isRA := func(f map[string]any) bool {
		return f["event"] == EventRouteAdded && f["family"] == "ipv6" && field(f, "route", "protocol") == "ra"
	}
	for i := 0; len(d.log.all(isRA)) == 0; i++ {
		if i == 8 {
			t.Fatalf("radvd answered none of 8 solicitations; log:\n%s", d.log.dump())
		}
		if err := (&nlKernel{t: p.srv}).Solicit(Link{Index: s0.Attrs().Index}); err != nil {
			t.Logf("solicitation %d: %v", i+1, err) // the link-local address may not be usable yet
		}
		time.Sleep(time.Second)
	}
	rt := defaultRoute(t, p.hs, unix.AF_INET6)
	from := d.log.count()
	t0 := time.Now()
	if err := p.hs.RouteDel(&rt); err != nil {
		t.Fatal(err)
	}
	res := d.log.wait(t, from, 8*time.Second, "repair result", func(f map[string]any) bool {
		return f["event"] == EventRepair && f["family"] == "ipv6" && f["action"] == "result"
	})
	if res.f["result"] != RepairRestoredByRA {
		t.Fatalf("repair result %v, want restored-by-ra: %s\nlog:\n%s", res.f["result"], res.raw, d.log.dump())
	}
	d.log.wait(t, from, time.Second, "solicit step", func(f map[string]any) bool {
		return f["event"] == EventRepair && f["action"] == "solicit"
	})
	back := d.log.wait(t, from, time.Second, "route-restored", eventIs(EventRouteRestored, ns, "ipv6"))
	if back.f["restored_by"] != "ra" {
		t.Errorf("restored_by %v, want ra", back.f["restored_by"])
	}
	now := defaultRoute(t, p.hs, unix.AF_INET6)
	if now.Protocol != unix.RTPROT_RA {
		t.Errorf("route after the repair has protocol %d, want ra (%d): watch wrote it", now.Protocol, unix.RTPROT_RA)
	}
	if v, _ := d.value("synscope_route_repairs_total", map[string]string{"netns": ns, "family": "ipv6", "result": RepairReadded}); v != 0 {
		t.Errorf("repairs_total{readded} = %v, want 0", v)
	}
	if v, _ := d.value("synscope_route_repairs_total", map[string]string{"netns": ns, "family": "ipv6", "result": RepairRestoredByRA}); v != 1 {
		t.Errorf("repairs_total{restored-by-ra} = %v, want 1", v)
	}
	if n := len(d.log.all(func(f map[string]any) bool { return f["event"] == EventRepair && f["action"] == "readded" })); n != 0 {
		t.Errorf("%d readded steps", n)
	}
	t.Logf("route back %s after the deletion (hold-down %s, then the solicitation)", back.at.Sub(t0).Round(time.Millisecond), opts.HoldDown)
}

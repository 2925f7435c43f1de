package watch

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// pair is a watched namespace ("srv", device s0) joined by a veth to a
// gateway namespace ("gw", device g0), with default routes of both
// families via the gateway.
type pair struct {
	srv, gw   *netns.Target
	hs, hg    *netlink.Handle
	gw4, gw6  netip.Addr
	srv4      netip.Addr
	dev, peer string
}

// newPair builds a pair; dev names the watched end (hostile names too).
func newPair(t *testing.T, tag, dev string) *pair {
	t.Helper()
	p := &pair{
		srv: testnet.NewNS(t, "watch-"+tag+"-s"), gw: testnet.NewNS(t, "watch-"+tag+"-g"),
		gw4: netip.MustParseAddr("10.61.0.1"), gw6: netip.MustParseAddr("fd61::1"),
		srv4: netip.MustParseAddr("10.61.0.2"), dev: dev, peer: "g0",
	}
	testnet.Pair(t, p.srv, p.gw, testnet.PairOptions{NameA: dev, NameB: p.peer,
		AddrsA: []string{"10.61.0.2/24", "fd61::2/64"}, AddrsB: []string{"10.61.0.1/24", "fd61::1/64"}})
	p.hs, _ = nsHandle(t, p.srv.Name)
	p.hg, _ = nsHandle(t, p.gw.Name)
	l, err := p.hs.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	for _, gw := range []netip.Addr{p.gw4, p.gw6} {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(gw.AsSlice())}
		if err := p.hs.RouteAdd(r); err != nil {
			t.Fatalf("default via %s: %v", gw, err)
		}
	}
	return p
}

func (p *pair) link(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// kernelRoutes asks the kernel (RTM_GETROUTE, as `ip route get`) whether
// an off-link destination of each family has a route now.
func (p *pair) kernelRoutes(t *testing.T) (v4, v6 bool) {
	t.Helper()
	_, err4 := p.hs.RouteGet(net.ParseIP("192.0.2.1"))
	_, err6 := p.hs.RouteGet(net.ParseIP("2001:db8::1"))
	for _, err := range []error{err4, err6} {
		if err != nil && !errors.Is(err, unix.ENETUNREACH) {
			t.Fatalf("route get: %v", err)
		}
	}
	return err4 == nil, err6 == nil
}

// carrierNews follows the kernel's link notifications in the pair's
// watched namespace with a socket of its own: the instant the kernel
// announces a carrier change of the watched device (the kernel's link
// watch sends it, and flags the routes linkdown, up to a second after the
// peer went down) is what the detection budget counts from.
type carrierNews struct {
	ch chan time.Time
}

func (p *pair) followCarrier(t *testing.T, carrier bool) *carrierNews {
	t.Helper()
	h, err := p.srv.Handle()
	if err != nil {
		t.Fatal(err)
	}
	upd := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	if err := netlink.LinkSubscribeAt(h, upd, done); err != nil {
		t.Fatal(err)
	}
	c := &carrierNews{ch: make(chan time.Time, 1)}
	go func() {
		for u := range upd {
			if u.Attrs().Name == p.dev && (u.IfInfomsg.Flags&unix.IFF_LOWER_UP != 0) == carrier {
				select {
				case c.ch <- time.Now():
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { close(done) })
	return c
}

func (c *carrierNews) wait(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-c.ch:
		return at
	case <-time.After(3 * time.Second):
		t.Fatal("the kernel announced no carrier change within 3s")
	}
	return time.Time{}
}

func presentLabels(ns, family string) map[string]string {
	return map[string]string{"netns": ns, "family": family, "table": "main"}
}

func riskLabels(ns, family, risk string) map[string]string {
	return map[string]string{"netns": ns, "family": family, "risk": risk}
}

func lossLabels(ns, family string, r Reason) map[string]string {
	return map[string]string{"netns": ns, "family": family, "reason": string(r)}
}

// TestLabCarrierLost: the gateway end of the veth goes down, so the
// watched device loses its carrier. The kernel keeps the routes and flags
// them linkdown (no route notification). With ignore_routes_with_linkdown=0
// (the default) route lookups still choose them: watch keeps present at 1,
// as the kernel's lookup does, and warns route-at-risk carrier-lost.
// With ignore_routes_with_linkdown=1 (IPv4 through the device's own
// setting, IPv6 through all's) lookups skip them: watch logs route-lost
// carrier-lost within 100 ms and present goes to 0, exactly when the
// kernel's lookup starts failing.
func TestLabCarrierLost(t *testing.T) {
	p := newPair(t, "cl", "s0")
	ns := p.srv.Name
	d := startWatch(t, Options{Netns: []string{ns}, Interval: 200 * time.Millisecond})
	peer := p.link(t, p.hg, p.peer)

	// Phase 1: linkdown routes still used.
	from := d.log.count()
	news := p.followCarrier(t, false)
	if err := p.hg.LinkSetDown(peer); err != nil {
		t.Fatal(err)
	}
	t0 := news.wait(t)
	for _, fam := range []string{"ipv4", "ipv6"} {
		l := d.log.wait(t, from, 3*time.Second, "route-at-risk carrier-lost "+fam, func(f map[string]any) bool {
			return f["event"] == EventRouteAtRisk && f["family"] == fam && f["risk"] == RiskCarrierLost
		})
		if field(l.f, "route", "dev") != "s0" {
			t.Errorf("risk line: %s", l.raw)
		}
		if lat := l.at.Sub(t0); lat > detectBudget {
			t.Errorf("%s: carrier-lost risk logged %s after the kernel's carrier notification, budget %s", fam, lat, detectBudget)
		}
		d.waitValue(t, time.Second, "synscope_default_route_at_risk", riskLabels(ns, fam, RiskCarrierLost), 1)
	}
	if v4, v6 := p.kernelRoutes(t); !v4 || !v6 {
		t.Fatalf("kernel lookups with the carrier lost and ignore_routes_with_linkdown=0: v4 %v v6 %v, want both routed", v4, v6)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		if v, _ := d.value("synscope_default_route_present", presentLabels(ns, fam)); v != 1 {
			t.Errorf("%s present %v while the kernel still routes through the linkdown route, want 1", fam, v)
		}
	}
	if n := len(d.log.all(eventIs(EventRouteLost, ns, ""))); n != 0 {
		t.Fatalf("%d route-lost lines while the kernel still uses the routes:\n%s", n, d.log.dump())
	}
	if err := p.hg.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		d.waitValue(t, 2*time.Second, "synscope_default_route_at_risk", riskLabels(ns, fam, RiskCarrierLost), 0)
	}

	// Phase 2: the kernel ignores linkdown routes.
	testnet.Sysctl(t, p.srv, "net/ipv4/conf/s0/ignore_routes_with_linkdown", "1")
	testnet.Sysctl(t, p.srv, "net/ipv6/conf/all/ignore_routes_with_linkdown", "1")
	time.Sleep(3 * 200 * time.Millisecond) // an interval reads the device's value
	from = d.log.count()
	news = p.followCarrier(t, false)
	down := time.Now()
	if err := p.hg.LinkSetDown(peer); err != nil {
		t.Fatal(err)
	}
	t0 = news.wait(t)
	var lats []time.Duration
	for _, fam := range []string{"ipv4", "ipv6"} {
		l := d.log.wait(t, from, 3*time.Second, "route-lost carrier-lost "+fam, eventIs(EventRouteLost, ns, fam))
		if l.f["reason"] != string(ReasonCarrierLost) {
			t.Errorf("%s: reason %v, want carrier-lost: %s", fam, l.f["reason"], l.raw)
		}
		lat := l.at.Sub(t0)
		if lat > detectBudget {
			t.Errorf("%s: carrier-lost loss logged %s after the kernel's carrier notification, budget %s", fam, lat, detectBudget)
		}
		lats = append(lats, lat)
		d.waitValue(t, time.Second, "synscope_default_route_present", presentLabels(ns, fam), 0)
		if v, _ := d.value("synscope_default_route_losses_total", lossLabels(ns, fam, ReasonCarrierLost)); v != 1 {
			t.Errorf("%s losses_total{carrier-lost} = %v, want 1", fam, v)
		}
	}
	if v4, v6 := p.kernelRoutes(t); v4 || v6 {
		t.Fatalf("kernel lookups with ignore_routes_with_linkdown=1: v4 %v v6 %v, want both unreachable", v4, v6)
	}
	t.Logf("peer down -> kernel carrier notification %s; notification -> route-lost v4 %s, v6 %s",
		t0.Sub(down).Round(time.Millisecond), lats[0].Round(time.Microsecond), lats[1].Round(time.Microsecond))
	// The routes are still listed (linkdown): not a deletion.
	rs, err := p.hs.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, r := range rs {
		if ones, _ := maskOnes(r); ones == 0 && r.Flags&unix.RTNH_F_LINKDOWN != 0 {
			listed = true
		}
	}
	if !listed {
		t.Error("the IPv4 default route is no longer listed as linkdown")
	}
	from = d.log.count()
	if err := p.hg.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		d.log.wait(t, from, 3*time.Second, "route-restored "+fam, eventIs(EventRouteRestored, ns, fam))
		d.waitValue(t, time.Second, "synscope_default_route_present", presentLabels(ns, fam), 1)
	}
	if n := len(d.log.all(func(f map[string]any) bool { return f["event"] == EventRouteAtRisk && f["risk"] == RiskCarrierLost })); n != 2 {
		t.Errorf("%d carrier-lost risk lines, want the 2 of phase 1 (a route the kernel skips is lost, not at risk)", n)
	}
	if testing.Verbose() {
		t.Logf("log:\n%s", d.log.dump())
	}
}

// TestLabLinkDeletedAddressRemoved: removing the watched device's IPv4
// address makes the kernel flush the IPv4 default route silently
// (address-removed); the IPv6 default route stays usable. Deleting the
// device loses both (link-deleted).
func TestLabLinkDeletedAddressRemoved(t *testing.T) {
	p := newPair(t, "ld", "s0")
	ns := p.srv.Name
	d := startWatch(t, Options{Netns: []string{ns}, Interval: time.Second})
	s0 := p.link(t, p.hs, "s0")

	from := d.log.count()
	t0 := time.Now()
	a, err := netlink.ParseAddr("10.61.0.2/24")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.hs.AddrDel(s0, a); err != nil {
		t.Fatal(err)
	}
	l := d.log.wait(t, from, time.Second, "route-lost address-removed", eventIs(EventRouteLost, ns, "ipv4"))
	if l.f["reason"] != string(ReasonAddressRemoved) {
		t.Errorf("reason %v, want address-removed: %s", l.f["reason"], l.raw)
	}
	if lat := l.at.Sub(t0); lat > detectBudget {
		t.Errorf("address-removed loss logged %s after the deletion, budget %s", lat, detectBudget)
	}
	d.waitValue(t, time.Second, "synscope_default_route_present", presentLabels(ns, "ipv4"), 0)
	if v4, v6 := p.kernelRoutes(t); v4 || !v6 {
		t.Errorf("kernel after the IPv4 address went: v4 routed %v (want false), v6 routed %v (want true)", v4, v6)
	}
	if v, _ := d.value("synscope_default_route_present", presentLabels(ns, "ipv6")); v != 1 {
		t.Error("IPv6 default route judged lost although the kernel still routes")
	}

	from = d.log.count()
	t0 = time.Now()
	if err := p.hs.LinkDel(s0); err != nil {
		t.Fatal(err)
	}
	l = d.log.wait(t, from, time.Second, "route-lost link-deleted", eventIs(EventRouteLost, ns, "ipv6"))
	if l.f["reason"] != string(ReasonLinkDeleted) {
		t.Errorf("reason %v, want link-deleted: %s", l.f["reason"], l.raw)
	}
	if lat := l.at.Sub(t0); lat > detectBudget {
		t.Errorf("link-deleted loss logged %s after the deletion, budget %s", lat, detectBudget)
	}
	d.waitValue(t, time.Second, "synscope_default_route_present", presentLabels(ns, "ipv6"), 0)
	if n := len(d.log.all(eventIs(EventRouteLost, ns, ""))); n != 2 {
		t.Errorf("%d losses, want 2:\n%s", n, d.log.dump())
	}
	if testing.Verbose() {
		t.Logf("log:\n%s", d.log.dump())
	}
}

// TestLabGatewayFailed: the gateway stops answering ARP, its neighbour
// entry goes FAILED: watch warns route-at-risk gateway-failed (the route is
// still there), and the warning clears when the gateway answers again.
func TestLabGatewayFailed(t *testing.T) {
	p := newPair(t, "gf", "s0")
	ns := p.srv.Name
	for k, v := range map[string]string{"retrans_time_ms": "100", "mcast_solicit": "2", "ucast_solicit": "1", "app_solicit": "0"} {
		testnet.Sysctl(t, p.srv, "net/ipv4/neigh/s0/"+k, v)
	}
	d := startWatch(t, Options{Netns: []string{ns}, Interval: 200 * time.Millisecond})
	s0 := p.link(t, p.hs, "s0")
	g0 := p.link(t, p.hg, p.peer)
	if err := p.hg.LinkSetARPOff(g0); err != nil {
		t.Fatal(err)
	}
	_ = p.hs.NeighDel(&netlink.Neigh{LinkIndex: s0.Attrs().Index, IP: net.IP(p.gw4.AsSlice())})
	from := d.log.count()
	sendVia(t, p.srv, "192.0.2.1:9") // makes the kernel resolve the gateway
	l := d.log.wait(t, from, 3*time.Second, "route-at-risk gateway-failed", func(f map[string]any) bool {
		return f["event"] == EventRouteAtRisk && f["risk"] == RiskGatewayFailed
	})
	if l.f["family"] != "ipv4" || field(l.f, "route", "gateway") != p.gw4.String() {
		t.Errorf("risk line: %s", l.raw)
	}
	if st := neighState(t, p.hs, s0.Attrs().Index, p.gw4); st != netlink.NUD_FAILED {
		t.Errorf("gateway neighbour state %#x, want FAILED", st)
	}
	d.waitValue(t, time.Second, "synscope_default_route_at_risk", riskLabels(ns, "ipv4", RiskGatewayFailed), 1)
	if v, _ := d.value("synscope_default_route_present", presentLabels(ns, "ipv4")); v != 1 {
		t.Error("a route whose gateway does not answer is still a route the kernel uses: present must stay 1")
	}

	if err := p.hg.LinkSetARPOn(g0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		sendVia(t, p.srv, "192.0.2.1:9")
		if v, _ := d.value("synscope_default_route_at_risk", riskLabels(ns, "ipv4", RiskGatewayFailed)); v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway-failed risk did not clear after the gateway answered ARP again (state %#x)", neighState(t, p.hs, s0.Attrs().Index, p.gw4))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sendVia sends one UDP datagram from inside ns (the lookup goes through
// the default route and makes the kernel resolve the gateway).
func sendVia(t *testing.T, ns *netns.Target, dst string) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.Dial("udp4", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		_, _ = c.Write([]byte("x"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func neighState(t *testing.T, h *netlink.Handle, ifindex int, ip netip.Addr) int {
	t.Helper()
	ns, err := h.NeighList(ifindex, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.IP.Equal(net.IP(ip.AsSlice())) {
			return n.State
		}
	}
	return -1
}

// TestLabENOBUFSResync shrinks the monitor socket's receive buffer, holds
// the receiver while 300 route changes and the deletion of the IPv4
// default route burst through, then lets it go: the socket overran
// (ENOBUFS), watch logs event=resync, rebuilds its state from a dump and
// reports the deletion it never received as a loss.
func TestLabENOBUFSResync(t *testing.T) {
	p := newPair(t, "nb", "s0")
	ns := p.srv.Name
	var hold atomic.Bool
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	beforeRecv := func(ctx context.Context) {
		if !hold.Load() {
			return
		}
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	t.Cleanup(func() {
		once.Do(func() { close(release) })
	})
	opts := Options{Netns: []string{ns}, Interval: time.Minute}
	opts.deps.monitorRcvBuf = 4096 // the kernel's floor is a few KiB
	opts.deps.beforeRecv = beforeRecv
	opts.deps.monitorWait = 250 * time.Millisecond // the hook is armed while the receiver waits
	d := startWatch(t, opts)
	s0 := p.link(t, p.hs, "s0")

	hold.Store(true)
	select {
	case <-entered:
	case <-time.After(2 * time.Second):
		t.Fatal("receiver never reached the hook")
	}
	from := d.log.count()
	for i := 0; i < 300; i++ {
		dst := &net.IPNet{IP: net.IPv4(10, 99, byte(i/250), byte(i%250)), Mask: net.CIDRMask(32, 32)}
		if err := p.hs.RouteAdd(&netlink.Route{LinkIndex: s0.Attrs().Index, Dst: dst, Gw: net.IP(p.gw4.AsSlice())}); err != nil {
			t.Fatal(err)
		}
		if i == 150 {
			rt := defaultRoute(t, p.hs, unix.AF_INET)
			if err := p.hs.RouteDel(&rt); err != nil {
				t.Fatal(err)
			}
		}
	}
	hold.Store(false)
	once.Do(func() { close(release) })
	d.log.wait(t, from, 2*time.Second, "resync", func(f map[string]any) bool {
		return f["event"] == EventResync && f["netns"] == ns
	})
	l := d.log.wait(t, from, 2*time.Second, "route-lost found by the dump", eventIs(EventRouteLost, ns, "ipv4"))
	d.waitValue(t, time.Second, "synscope_default_route_present", presentLabels(ns, "ipv4"), 0)
	if v, _ := d.value("synscope_default_route_present", presentLabels(ns, "ipv6")); v != 1 {
		t.Error("IPv6 default route judged lost after the resync")
	}
	// The state is the kernel's: putting the route back is a return.
	from = d.log.count()
	if err := p.hs.RouteAdd(&netlink.Route{LinkIndex: s0.Attrs().Index, Gw: net.IP(p.gw4.AsSlice())}); err != nil {
		t.Fatal(err)
	}
	d.log.wait(t, from, time.Second, "route-restored", eventIs(EventRouteRestored, ns, "ipv4"))
	t.Logf("loss after the overrun: reason %v (the deletion's own notification was lost)", l.f["reason"])
}

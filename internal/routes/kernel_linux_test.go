package routes

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// The real-kernel tests build, per test, a server namespace and a peer
// namespace joined by veth s0 <-> p0:
//
//	server: s0 10.77.0.1/24 fd77::1/64, default routes via the peer,
//	        s1 (a second veth, up, no address) for "wrong oif" cases
//	peer:   p0 10.77.0.2/24 fd77::2/64, forwarding on; the "client"
//	        198.51.100.2 and 2001:db8:77::2 live on its lo
//
// Queries replay the SYN-ACK of a listener on 10.77.0.1:8080 / [fd77::1]:8080
// to the client's port 40000.

var (
	srv4, cli4 = netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("198.51.100.2")
	srv6, cli6 = netip.MustParseAddr("fd77::1"), netip.MustParseAddr("2001:db8:77::2")
	peer4      = netip.MustParseAddr("10.77.0.2")
	peer6      = netip.MustParseAddr("fd77::2")
)

type testNet struct {
	t         *testing.T
	srv, peer *netns.Target
	s0, s1    int
	peerMAC   net.HardwareAddr
}

// newTestNet builds the topology; both namespaces go away in Cleanup.
func newTestNet(t testing.TB) *testNet {
	t.Helper()
	testnet.NeedRoot(t, "creates network namespaces and veth devices")
	n := &testNet{srv: testnet.NewNS(t, "routes-s"), peer: testnet.NewNS(t, "routes-p")}
	// Forwarding on: the peer's NAs then carry the R flag.
	testnet.Sysctl(t, n.peer, "net/ipv6/conf/all/forwarding", "1")
	testnet.Sysctl(t, n.peer, "net/ipv4/ip_forward", "1")
	s0, p0 := testnet.Pair(t, n.srv, n.peer, testnet.PairOptions{
		NameA: "s0", AddrsA: []string{"10.77.0.1/24", "fd77::1/64"},
		NameB: "p0", AddrsB: []string{"10.77.0.2/24", "fd77::2/64"},
	})
	s1, _ := testnet.Pair(t, n.srv, n.srv, testnet.PairOptions{NameA: "s1", NameB: "s1p"})
	n.s0, n.s1, n.peerMAC = s0.Index, s1.Index, p0.MAC
	testnet.AddAddrs(t, n.peer, "lo", "198.51.100.2/32", "2001:db8:77::2/128")
	n.srvNL(t, func(h *netlink.Handle) error {
		for _, gw := range []netip.Addr{peer4, peer6} {
			r := &netlink.Route{LinkIndex: n.s0, Gw: gw.AsSlice()}
			if err := h.RouteAdd(r); err != nil {
				return fmt.Errorf("default via %s: %w", gw, err)
			}
		}
		return nil
	})
	return n
}

// srvNL runs fn with a netlink handle inside the server namespace.
func (n *testNet) srvNL(t testing.TB, fn func(h *netlink.Handle) error) {
	t.Helper()
	err := n.srv.Do(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		return fn(h)
	})
	if err != nil {
		t.Fatalf("server netlink: %v", err)
	}
}

func (n *testNet) replay(t testing.TB, q Query) Result {
	t.Helper()
	var r Result
	if err := n.srv.Do(func() error { r = Replay(q); return nil }); err != nil {
		t.Fatal(err)
	}
	return r
}

func (n *testNet) collect(t testing.TB) *State {
	t.Helper()
	var s *State
	if err := n.srv.Do(func() error {
		var err error
		s, err = Collect()
		return err
	}); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return s
}

// ipRun runs iproute2 in the server namespace (verification only).
func (n *testNet) ipRun(args ...string) (string, error) {
	out, err := testnet.Exec(n.srv, "", "ip", args...)
	return strings.TrimSpace(string(out)), err
}

// crossCheck runs q.Command() with iproute2 and compares its verdict.
func (n *testNet) crossCheck(t *testing.T, r Result) {
	t.Helper()
	args, ok := r.Query.Command(fixcmd.New("ip")).Args()
	if !ok {
		t.Fatalf("no argument vector for %s", r.Query.Command(fixcmd.New("ip")))
	}
	args = args[1:]
	out, err := n.ipRun(args...)
	if r.OK {
		if err != nil {
			t.Errorf("Replay OK (%s) but %q failed: %s", r, r.Query.Command(fixcmd.New("ip")), out)
			return
		}
		if r.Dev != "" && !strings.Contains(out, " dev "+r.Dev) {
			t.Errorf("Replay dev %s, ip says %q", r.Dev, out)
		}
		if r.Gateway.IsValid() && !strings.Contains(out, " via "+r.Gateway.String()) {
			t.Errorf("Replay gateway %s, ip says %q", r.Gateway, out)
		}
		return
	}
	if err == nil {
		t.Errorf("Replay failed (%s) but %q succeeded: %s", r, r.Query.Command(fixcmd.New("ip")), out)
		return
	}
	if !strings.Contains(out, r.Err) {
		t.Errorf("Replay error %q, ip says %q", r.Err, out)
	}
}

func q4() Query { return Query{Src: srv4, Dst: cli4, Sport: 8080, Dport: 40000} }
func q6() Query { return Query{Src: srv6, Dst: cli6, Sport: 8080, Dport: 40000} }

func TestReplayKernel(t *testing.T) {
	testnet.NeedRoot(t, "creates network namespaces and veth devices")
	type tc struct {
		name  string
		fault func(n *testNet, h *netlink.Handle) error
		query func(n *testNet) Query
		ok    bool
		errno syscall.Errno
		dev   string
	}
	delDefault := func(gw netip.Addr) func(*testNet, *netlink.Handle) error {
		return func(n *testNet, h *netlink.Handle) error {
			return h.RouteDel(&netlink.Route{LinkIndex: n.s0, Gw: gw.AsSlice()})
		}
	}
	typed := func(prefix string, typ int) func(*testNet, *netlink.Handle) error {
		return func(n *testNet, h *netlink.Handle) error {
			dst := netip.MustParsePrefix(prefix)
			return h.RouteAdd(&netlink.Route{Dst: prefixNet(dst), Type: typ, Family: familyOf(dst.Addr())})
		}
	}
	// A table whose only entry is a typed default, entered by a rule.
	ruleTo := func(fam int, mod func(r *netlink.Rule)) func(*testNet, *netlink.Handle) error {
		return func(n *testNet, h *netlink.Handle) error {
			def := netip.MustParsePrefix("0.0.0.0/0")
			if fam == unix.AF_INET6 {
				def = netip.MustParsePrefix("::/0")
			}
			if err := h.RouteAdd(&netlink.Route{Dst: prefixNet(def), Type: unix.RTN_UNREACHABLE, Table: 100, Family: fam}); err != nil {
				return fmt.Errorf("unreachable default table 100: %w", err)
			}
			r := netlink.NewRule()
			r.Family, r.Priority, r.Table = fam, 100, 100
			mod(r)
			return h.RuleAdd(r)
		}
	}
	fwmark := func(r *netlink.Rule) { r.Mark = 1; m := uint32(0xffffffff); r.Mask = &m }
	uidr := func(r *netlink.Rule) { r.UIDRange = netlink.NewRuleUIDRange(1000, 1000) }
	from := func(a netip.Addr) func(r *netlink.Rule) {
		return func(r *netlink.Rule) { r.Src = prefixNet(netip.PrefixFrom(a, a.BitLen())) }
	}
	withMark := func(m uint32, base func() Query) func(*testNet) Query {
		return func(*testNet) Query { q := base(); q.Mark = m; return q }
	}
	withUID := func(u uint32, base func() Query) func(*testNet) Query {
		return func(*testNet) Query { q := base(); q.UID, q.HasUID = u, true; return q }
	}
	plain := func(base func() Query) func(*testNet) Query { return func(*testNet) Query { return base() } }
	oifS1 := func(base func() Query) func(*testNet) Query {
		return func(n *testNet) Query { q := base(); q.Oif = n.s1; return q }
	}
	cases := []tc{
		{name: "healthy v4", query: plain(q4), ok: true, dev: "s0"},
		{name: "healthy v6", query: plain(q6), ok: true, dev: "s0"},
		{name: "no default v4", fault: delDefault(peer4), query: plain(q4), errno: unix.ENETUNREACH},
		{name: "no default v6", fault: delDefault(peer6), query: plain(q6), errno: unix.ENETUNREACH},
		{name: "unreachable v4", fault: typed("198.51.100.0/24", unix.RTN_UNREACHABLE), query: plain(q4), errno: unix.EHOSTUNREACH},
		{name: "blackhole v4", fault: typed("198.51.100.0/24", unix.RTN_BLACKHOLE), query: plain(q4), errno: unix.EINVAL},
		{name: "prohibit v4", fault: typed("198.51.100.0/24", unix.RTN_PROHIBIT), query: plain(q4), errno: unix.EACCES},
		{name: "unreachable v6", fault: typed("2001:db8:77::/64", unix.RTN_UNREACHABLE), query: plain(q6), errno: unix.EHOSTUNREACH},
		{name: "blackhole v6", fault: typed("2001:db8:77::/64", unix.RTN_BLACKHOLE), query: plain(q6), errno: unix.EINVAL},
		{name: "prohibit v6", fault: typed("2001:db8:77::/64", unix.RTN_PROHIBIT), query: plain(q6), errno: unix.EACCES},
		{name: "rule from server v4", fault: ruleTo(unix.AF_INET, from(srv4)), query: plain(q4), errno: unix.EHOSTUNREACH},
		{name: "rule from server v6", fault: ruleTo(unix.AF_INET6, from(srv6)), query: plain(q6), errno: unix.EHOSTUNREACH},
		{name: "fwmark rule v4 mark 1", fault: ruleTo(unix.AF_INET, fwmark), query: withMark(1, q4), errno: unix.EHOSTUNREACH},
		{name: "fwmark rule v4 mark 0", fault: ruleTo(unix.AF_INET, fwmark), query: withMark(0, q4), ok: true, dev: "s0"},
		{name: "fwmark rule v6 mark 1", fault: ruleTo(unix.AF_INET6, fwmark), query: withMark(1, q6), errno: unix.EHOSTUNREACH},
		{name: "fwmark rule v6 mark 0", fault: ruleTo(unix.AF_INET6, fwmark), query: withMark(0, q6), ok: true, dev: "s0"},
		{name: "uid rule v4 uid 1000", fault: ruleTo(unix.AF_INET, uidr), query: withUID(1000, q4), errno: unix.EHOSTUNREACH},
		{name: "uid rule v4 uid 0", fault: ruleTo(unix.AF_INET, uidr), query: withUID(0, q4), ok: true, dev: "s0"},
		{name: "uid rule v6 uid 1000", fault: ruleTo(unix.AF_INET6, uidr), query: withUID(1000, q6), errno: unix.EHOSTUNREACH},
		{name: "uid rule v6 uid 0", fault: ruleTo(unix.AF_INET6, uidr), query: withUID(0, q6), ok: true, dev: "s0"},
		// An empty table does not fail the lookup: the kernel falls through
		// to the next rule (main). Kept as a test so nobody "fixes" it.
		{name: "fwmark to empty table v4 falls through", fault: func(n *testNet, h *netlink.Handle) error {
			r := netlink.NewRule()
			r.Family, r.Priority, r.Table, r.Mark = unix.AF_INET, 100, 101, 1
			return h.RuleAdd(r)
		}, query: withMark(1, q4), ok: true, dev: "s0"},
		{name: "fwmark to empty table v6 falls through", fault: func(n *testNet, h *netlink.Handle) error {
			r := netlink.NewRule()
			r.Family, r.Priority, r.Table, r.Mark = unix.AF_INET6, 100, 101, 1
			return h.RuleAdd(r)
		}, query: withMark(1, q6), ok: true, dev: "s0"},
		// v4 with an oif that no route uses: the kernel assumes the
		// destination is on-link there (ip_route_output_key_hash_rcu), so the
		// lookup succeeds out of s1 (and the SYN-ACK then dies in ARP).
		{name: "oif other device v4", query: oifS1(q4), ok: true, dev: "s1"},
		// v6 with a bound device is strict: no route via s1, no route.
		{name: "oif other device v6", query: oifS1(q6), errno: unix.ENETUNREACH},
		{name: "oif same device v6", query: func(n *testNet) Query { q := q6(); q.Oif = n.s0; return q }, ok: true, dev: "s0"},
		{name: "oif same device v4", query: func(n *testNet) Query { q := q4(); q.Oif = n.s0; return q }, ok: true, dev: "s0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newTestNet(t)
			if c.fault != nil {
				n.srvNL(t, func(h *netlink.Handle) error { return c.fault(n, h) })
			}
			q := c.query(n)
			r := n.replay(t, q)
			t.Logf("%s -> %s", r.Query.Command(fixcmd.New("ip")), r)
			if r.OK != c.ok {
				t.Fatalf("OK = %v, want %v (%s)", r.OK, c.ok, r)
			}
			if !c.ok && r.Errno != c.errno {
				t.Errorf("errno = %d (%s), want %d (%s)", int(r.Errno), r.Err, int(c.errno), errnoText(c.errno))
			}
			if c.ok && r.Dev != c.dev {
				t.Errorf("dev = %q, want %q", r.Dev, c.dev)
			}
			if c.ok && r.Err != "" {
				t.Errorf("Err = %q on success", r.Err)
			}
			n.crossCheck(t, r)
		})
	}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// TestReplayHealthyDetails checks the fields of a successful answer against
// the setup: gateway, table, prefsrc-free route, and Result.String.
func TestReplayHealthyDetails(t *testing.T) {
	n := newTestNet(t)
	r := n.replay(t, q6())
	if !r.OK || r.Gateway != peer6 || r.Table != unix.RT_TABLE_MAIN || r.Type != "unicast" || r.Ifindex != n.s0 {
		t.Fatalf("unexpected answer %+v", r)
	}
	if got, want := r.String(), "2001:db8:77::2 from fd77::1 via fd77::2 dev s0"; !strings.HasPrefix(got, want) {
		t.Errorf("String() = %q, want prefix %q", got, want)
	}
	// A route in another table entered by a rule reports that table.
	n.srvNL(t, func(h *netlink.Handle) error {
		if err := h.RouteAdd(&netlink.Route{Dst: prefixNet(netip.MustParsePrefix("198.51.100.0/24")), Gw: peer4.AsSlice(), LinkIndex: n.s0, Table: 100}); err != nil {
			return err
		}
		rl := netlink.NewRule()
		rl.Family, rl.Priority, rl.Table = unix.AF_INET, 100, 100
		return h.RuleAdd(rl)
	})
	r = n.replay(t, q4())
	if !r.OK || r.Table != 100 {
		t.Fatalf("want table 100, got %+v", r)
	}
	if !strings.Contains(r.String(), " table 100") {
		t.Errorf("String() = %q lacks the table", r.String())
	}
	n.crossCheck(t, r)
}

func TestReplayBadQuery(t *testing.T) {
	r := Replay(Query{})
	if r.OK || r.Errno != unix.EINVAL {
		t.Fatalf("empty query: %+v", r)
	}
	r = Replay(Query{Src: srv4, Dst: cli6})
	if r.OK || !strings.Contains(r.Err, "families differ") {
		t.Fatalf("mixed families: %+v", r)
	}
}

func TestCollectKernel(t *testing.T) {
	n := newTestNet(t)
	n.srvNL(t, func(h *netlink.Handle) error {
		if err := h.RouteAdd(&netlink.Route{Dst: prefixNet(netip.MustParsePrefix("203.0.113.0/24")), Gw: peer4.AsSlice(), LinkIndex: n.s0, Table: 100}); err != nil {
			return err
		}
		if err := h.RouteAdd(&netlink.Route{Dst: prefixNet(netip.MustParsePrefix("2001:db8:99::/48")), Type: unix.RTN_PROHIBIT, Family: unix.AF_INET6}); err != nil {
			return err
		}
		r := netlink.NewRule()
		r.Family, r.Priority, r.Table, r.Mark = unix.AF_INET, 100, 100, 1
		if err := h.RuleAdd(r); err != nil {
			return err
		}
		r = netlink.NewRule()
		r.Family, r.Priority, r.Table = unix.AF_INET6, 101, 100
		r.UIDRange = netlink.NewRuleUIDRange(1000, 1999)
		r.Src = prefixNet(netip.MustParsePrefix("fd77::/64"))
		if err := h.RuleAdd(r); err != nil {
			return err
		}
		r = netlink.NewRule()
		r.Family, r.Priority = unix.AF_INET, 102
		r.Type = unix.FR_ACT_UNREACHABLE
		r.Src = prefixNet(netip.MustParsePrefix("10.77.0.1/32"))
		r.Mark = 2
		m := uint32(0xff)
		r.Mask = &m
		if err := h.RuleAdd(r); err != nil {
			return err
		}
		r = netlink.NewRule()
		r.Family, r.Priority, r.Table, r.Invert, r.Tos = unix.AF_INET, 5, unix.RT_TABLE_MAIN, true, 0x10
		r.Dst = prefixNet(netip.MustParsePrefix("192.0.2.0/24"))
		r.IifName, r.IPProto = "eth0", unix.IPPROTO_TCP
		r.Sport, r.Dport = netlink.NewRulePortRange(1000, 2000), netlink.NewRulePortRange(80, 80)
		r.SuppressPrefixlen = 0
		if err := h.RuleAdd(r); err != nil {
			return err
		}
		r = netlink.NewRule()
		r.Family, r.Priority, r.Goto = unix.AF_INET6, 6, 101
		r.OifName = "s0"
		if err := h.RuleAdd(r); err != nil {
			return err
		}
		return h.NeighAdd(&netlink.Neigh{LinkIndex: n.s0, IP: net.ParseIP("10.77.0.9"), HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 9}, State: netlink.NUD_PERMANENT})
	})
	s := n.collect(t)

	if len(s.DefaultRoutes(unix.AF_INET, 0)) != 1 || s.DefaultRoutes(unix.AF_INET, 0)[0].Gateway != peer4 {
		t.Errorf("v4 default: %+v", s.DefaultRoutes(unix.AF_INET, 0))
	}
	if d := s.DefaultRoutes(unix.AF_INET6, 0); len(d) != 1 || d[0].Gateway != peer6 || d[0].Dev != "s0" {
		t.Errorf("v6 default: %+v", d)
	}
	find := func(pred func(Route) bool) bool {
		for _, r := range s.Routes {
			if pred(r) {
				return true
			}
		}
		return false
	}
	if !find(func(r Route) bool {
		return r.Table == 100 && r.Dst.String() == "203.0.113.0/24" && r.Gateway == peer4 && r.Dev == "s0"
	}) {
		t.Errorf("table 100 route missing")
	}
	if !find(func(r Route) bool { return r.Type == "prohibit" && r.Dst.String() == "2001:db8:99::/48" }) {
		t.Errorf("prohibit route missing")
	}
	if !find(func(r Route) bool { return r.Table == unix.RT_TABLE_LOCAL && r.Type == "local" }) {
		t.Errorf("local table missing")
	}
	if s.LinkName(n.s0) != "s0" || s.LinkName(9999) != "if9999" {
		t.Errorf("LinkName: %q %q", s.LinkName(n.s0), s.LinkName(9999))
	}
	if a, ok := s.OnLink(peer6); !ok || a.Ifindex != n.s0 {
		t.Errorf("OnLink(%s) = %+v %v", peer6, a, ok)
	}
	if _, ok := s.OnLink(cli4); ok {
		t.Errorf("OnLink(%s) should be false", cli4)
	}
	var sawNeigh bool
	for _, nb := range s.Neighbors {
		if nb.IP.String() == "10.77.0.9" && nb.State == "PERMANENT" && nb.Dev == "s0" && nb.LLAddr.String() == "02:00:00:00:00:09" {
			sawNeigh = true
		}
	}
	if !sawNeigh {
		t.Errorf("static neighbour missing: %+v", s.Neighbors)
	}

	// Every rule must render exactly as `ip rule` prints it.
	for _, fam := range []string{"-4", "-6"} {
		out, err := n.ipRun(fam, "rule", "show")
		if err != nil {
			t.Fatalf("ip rule: %v %s", err, out)
		}
		var want []string
		for _, l := range strings.Split(out, "\n") {
			want = append(want, strings.TrimSpace(strings.Replace(l, ":\t", ": ", 1)))
		}
		var got []string
		for _, r := range s.Rules {
			if (r.Family == unix.AF_INET) == (fam == "-4") {
				got = append(got, r.Text)
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("rules %s:\n got: %q\nwant: %q", fam, got, want)
		}
	}
	var mk Rule
	for _, r := range s.Rules {
		if r.Priority == 102 {
			mk = r
		}
	}
	if mk.Action != "unreachable" || !mk.HasMark || mk.Mark != 2 || mk.Mask != 0xff || mk.Src.String() != "10.77.0.1/32" {
		t.Errorf("rule 102: %+v", mk)
	}
}

// TestNeighborRouterFlag: after traffic to a forwarding IPv6 peer, its
// neighbour entry carries NTF_ROUTER, and InferGateway picks it (signal 2);
// with the peer's MAC as hint, signal 1 picks it.
func TestNeighborRouterFlag(t *testing.T) {
	n := newTestNet(t)
	// Remove the default route so the guess cannot come from signal 3.
	n.srvNL(t, func(h *netlink.Handle) error {
		return h.RouteDel(&netlink.Route{LinkIndex: n.s0, Gw: peer6.AsSlice()})
	})
	// One TCP connect to a closed port on the peer: NS/NA, then RST.
	err := n.srv.Do(func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", "[fd77::2]:9")
		if err == nil {
			c.Close()
			return nil
		}
		if errors.Is(err, unix.ECONNREFUSED) {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	var router bool
	var s *State
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		s = n.collect(t)
		for _, nb := range s.Neighbors {
			if nb.IP == peer6 && nb.Router {
				router = true
			}
		}
		if router {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !router {
		t.Fatalf("no router-flagged neighbour %s: %+v", peer6, s.Neighbors)
	}
	g := s.InferGateway(unix.AF_INET6, "s0", nil)
	if !g.OK || g.Gateway != peer6 || g.Dev != "s0" || !strings.Contains(g.How, "router-flagged") {
		t.Errorf("InferGateway without hint: %+v", g)
	}
	g = s.InferGateway(unix.AF_INET6, "s0", []net.HardwareAddr{n.peerMAC})
	if !g.OK || g.Gateway != peer6 || !strings.Contains(g.How, "source MAC") {
		t.Errorf("InferGateway with hint: %+v", g)
	}
	// The guess must make a working route: add it and replay.
	n.srvNL(t, func(h *netlink.Handle) error {
		return h.RouteAdd(&netlink.Route{LinkIndex: n.s0, Gw: g.Gateway.AsSlice()})
	})
	if r := n.replay(t, q6()); !r.OK {
		t.Errorf("after adding the inferred default route: %s", r)
	}
}

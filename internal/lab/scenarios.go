package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
)

// Scenario is one reproducible fault (or a healthy baseline).
type Scenario struct {
	Name        string
	Description string
	// Expect is the cause the doctor should name; "" for healthy ones.
	Expect causes.ID
	// Family (4 or 6) is the family the background client uses.
	Family int

	// setup injects the fault after the warm-up, before the listener.
	setup func(*lab) error
	// listener is the server agent; nil means no listener at all.
	listener *listenerSpec
	// afterListen runs once the listener is up (SYN generator).
	afterListen func(context.Context, *lab) error
	// client overrides the background client's defaults.
	client *clientSpec
}

// Scenarios lists every scenario, sorted by name.
func Scenarios() []Scenario {
	s := scenarioTable()
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	return s
}

// Lookup finds a scenario by name; the error lists the valid names.
func Lookup(name string) (Scenario, error) {
	var names []string
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("unknown lab scenario %q (valid: %s)", name, strings.Join(names, ", "))
}

func dual() *listenerSpec { return &listenerSpec{} }

func scenarioTable() []Scenario {
	return []Scenario{
		{Name: "healthy", Family: 4, listener: dual(),
			Description: "working topology, dual-stack listener on 8080, background client on IPv4"},
		{Name: "healthy-v6", Family: 6, listener: dual(),
			Description: "working topology, background client on IPv6"},
		{Name: "default-route-at-risk", Family: 6, Expect: causes.DefaultRouteAtRisk, listener: dual(),
			Description: "radvd on the router gives the server its IPv6 default route; forwarding is then on with accept_ra=1: the route works but is no longer refreshed and the next forwarding write purges it (needs radvd)",
			setup:       setupRAAtRisk, afterListen: raAtRisk},
		{Name: "missing-default-route-v6", Family: 6, Expect: causes.NoRouteToPeer, listener: dual(),
			Description: "server lost its IPv6 default route (keeps on-link fd77:2::/64); SYN-ACKs to fd77:1::2 have no route",
			setup:       func(l *lab) error { return delDefault(l.hs, unix.AF_INET6) }},
		{Name: "missing-default-route-v4", Family: 4, Expect: causes.NoRouteToPeer, listener: dual(),
			Description: "server lost its IPv4 default route (keeps on-link 10.77.2.0/24); SYN-ACKs to 10.77.1.2 have no route",
			setup:       func(l *lab) error { return delDefault(l.hs, unix.AF_INET) }},

		// Other ways for the SYN-ACK route lookup to fail.
		{Name: "policy-rule-no-route", Family: 4, Expect: causes.NoRouteToPeer, listener: dual(),
			Description: "ip rule sends traffic from the server's addresses to table 100, which only knows the local subnet and ends in unreachable",
			setup:       setupPolicyRule},
		typedRoute("unreachable", unix.RTN_UNREACHABLE, 4),
		typedRoute("unreachable", unix.RTN_UNREACHABLE, 6),
		typedRoute("blackhole", unix.RTN_BLACKHOLE, 4),
		typedRoute("blackhole", unix.RTN_BLACKHOLE, 6),
		typedRoute("prohibit", unix.RTN_PROHIBIT, 4),
		typedRoute("prohibit", unix.RTN_PROHIBIT, 6),
		{Name: "fwmark-no-route", Family: 4, Expect: causes.NoRouteToPeer, listener: &listenerSpec{Mark: 1},
			Description: "listener sets SO_MARK 1; rule fwmark 1 lookup table 100, which has no route to the client",
			setup:       setupFwmark},

		// Queues.
		{Name: "accept-queue-overflow", Family: 4, Expect: causes.AcceptQueueOverflow,
			listener:    &listenerSpec{Backlog: 1, NoAccept: true},
			client:      &clientSpec{Hold: 16},
			Description: "listener with backlog 1 never calls accept(); the client holds its connections"},
		{Name: "backlog-capped", Family: 4, Expect: causes.BacklogCapped,
			listener:    &listenerSpec{Backlog: 1024},
			Description: "listen(1024) with net.core.somaxconn=128 in the server namespace: queue silently capped (works, warning only)",
			setup: func(l *lab) error {
				return setSysctls(l.srv, map[string]string{"net/core/somaxconn": "128"})
			}},
		{Name: "syn-queue-overflow", Family: 4, Expect: causes.SynQueueOverflow,
			listener:    &listenerSpec{Backlog: 4},
			Description: "tcp_syncookies=0, backlog 4, spoofed SYN bursts from 198.51.100.0/24 fill the SYN queue",
			setup: func(l *lab) error {
				return setSysctls(l.srv, map[string]string{"net/ipv4/tcp_syncookies": "0"})
			},
			afterListen: startSynGen},
		{Name: "syn-flood-cookies", Family: 4, Expect: causes.SynFloodCookies,
			listener:    &listenerSpec{Backlog: 4},
			Description: "tcp_syncookies=1, backlog 4, spoofed SYN bursts: the kernel answers with syncookies",
			setup: func(l *lab) error {
				return setSysctls(l.srv, map[string]string{"net/ipv4/tcp_syncookies": "1"})
			},
			afterListen: startSynGen},

		// Firewalls.
		{Name: "firewall-drop-syn", Family: 4, Expect: causes.FirewallDrop, listener: dual(),
			Description: "server nft input rule drops tcp dport 8080 SYNs (table inet synscope, with counter)",
			setup: func(l *lab) error {
				return addNftRules(l.srv, filterRule("input", nftables.ChainHookInput, matchTCPPort(true, Port, tcpSYN), drop()))
			}},
		{Name: "firewall-drop-synack", Family: 4, Expect: causes.FirewallDrop, listener: dual(),
			Description: "server nft output rule drops SYN-ACKs from port 8080: TCPTimeouts rise, TCPSynRetrans stays flat",
			setup: func(l *lab) error {
				return addNftRules(l.srv, filterRule("output", nftables.ChainHookOutput, matchTCPPort(false, Port, tcpSYNACK), drop()))
			}},
		{Name: "firewall-reject", Family: 4, Expect: causes.FirewallDrop, listener: dual(),
			Description: "server nft input rule rejects tcp dport 8080 SYNs with a TCP reset",
			setup: func(l *lab) error {
				return addNftRules(l.srv, filterRule("input", nftables.ChainHookInput, matchTCPPort(true, Port, tcpSYN),
					&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}))
			}},
		{Name: "rp-filter-strict", Family: 4, Expect: causes.RPFilterDrop, listener: dual(),
			Description: "server routes the client prefix out of a second link (s1) while SYNs arrive on s0, with rp_filter=1",
			setup:       setupRPFilter},

		{Name: "synack-egress-drop", Family: 4, Expect: causes.SynackEgressDrop, listener: dual(),
			Description: "tc (clsact egress, cls_bpf direct action) on the server's s0 shoots IPv4 SYN-ACKs from port 8080: TCPTimeouts rise, TCPSynRetrans stays flat",
			setup:       setupTCEgressDrop},
		{Name: "syn-backlog-last-quarter", Family: 4, Expect: causes.SynQueueOverflow,
			listener:    &listenerSpec{Backlog: 100},
			Description: "tcp_syncookies=0, tcp_max_syn_backlog=8, backlog 100, spoofed SYN bursts: the 'last quarter' rule drops SYNs from unproven peers with ListenDrops alone",
			setup: func(l *lab) error {
				return setSysctls(l.srv, map[string]string{"net/ipv4/tcp_syncookies": "0", "net/ipv4/tcp_max_syn_backlog": "8"})
			},
			afterListen: startSynGen},

		{Name: "paws-reject", Family: 4, Expect: causes.PAWSReject, listener: dual(),
			Description: "server closes first (TIME_WAIT on the server); a SYN on the same 4-tuple with a timestamp 60 s older, as from a second host behind the same NAT port, is PAWS-rejected",
			afterListen: func(ctx context.Context, l *lab) error {
				return l.startAgent(ctx, l.cli, agentSpec{Kind: "paws", PAWS: &pawsSpec{
					Dst: netip.AddrPortFrom(ServerV4, Port).String(), Interval: 200 * time.Millisecond, MaxRounds: 5 * 600}})
			}},

		// Nobody home.
		{Name: "no-listener", Family: 4, Expect: causes.NoListener,
			Description: "nothing listens on 8080: SYNs are answered with RST"},
		{Name: "listener-wrong-address", Family: 4, Expect: causes.NoListener,
			listener:    &listenerSpec{Addr: "127.0.0.1"},
			Description: "listener bound to 127.0.0.1:8080 only; SYNs to 10.77.2.2 get RST"},
		{Name: "listener-bound-device", Family: 4, Expect: causes.NoListener,
			listener:    &listenerSpec{BindDevice: "s1"},
			Description: "listener has SO_BINDTODEVICE s1 (a second link) while SYNs arrive on s0: RST",
			setup:       func(l *lab) error { return l.addSecondPath() }},

		// The SYN-ACK leaves but goes nowhere.
		{Name: "neighbor-unreachable-v4", Family: 4, Expect: causes.NeighborUnreachable, listener: dual(),
			Description: "server routes 10.77.1.0/24 via 10.77.2.99, which does not exist: ARP never resolves",
			setup: func(l *lab) error {
				return addRoute(l.hs, "s0", netip.MustParsePrefix("10.77.1.0/24"), netip.MustParseAddr("10.77.2.99"), true)
			}},
		{Name: "neighbor-unreachable-v6", Family: 6, Expect: causes.NeighborUnreachable, listener: dual(),
			Description: "server routes fd77:1::/64 via fd77:2::99, which does not exist: neighbour discovery never resolves",
			setup: func(l *lab) error {
				return addRoute(l.hs, "s0", netip.MustParsePrefix("fd77:1::/64"), netip.MustParseAddr("fd77:2::99"), false)
			}},
		{Name: "synack-unanswered", Family: 4, Expect: causes.SynackUnanswered, listener: dual(),
			Description: "client's nft input drops tcp sport 8080, so SYN-ACKs are never answered; server tcp_synack_retries=2",
			setup: func(l *lab) error {
				if err := setSysctls(l.srv, map[string]string{"net/ipv4/tcp_synack_retries": "2"}); err != nil {
					return err
				}
				return addNftRules(l.cli, filterRule("input", nftables.ChainHookInput, matchTCPPort(false, Port, 0), drop()))
			}},

		// Dropped before or at TCP.
		{Name: "conntrack-invalid", Family: 4, Expect: causes.ConntrackInvalid, listener: dual(),
			client:      &clientSpec{LocalPort: staleCtPort, Parallel: 1},
			Description: fmt.Sprintf("server nft drops ct state invalid; a stale ESTABLISHED conntrack entry for 10.77.1.2:%d makes the client's SYNs from that port INVALID (other source ports work)", staleCtPort),
			setup:       setupConntrackInvalid},
		{Name: "ipv6-disabled", Family: 6, Expect: causes.IPv6Disabled, listener: dual(),
			Description: "disable_ipv6=1 on the server's s0; the router keeps a static neighbour so v6 SYNs still arrive",
			setup:       setupIPv6Disabled},
		{Name: "tcp-minttl", Family: 4, Expect: causes.TCPReject,
			listener:    &listenerSpec{MinTTL: 255},
			Description: "listener sets IP_MINTTL 255; the client is one hop away so SYNs arrive with TTL 63"},
		{Name: "tcp-md5-mismatch", Family: 4, Expect: causes.TCPReject,
			listener:    &listenerSpec{MD5Key: "synscope-lab", MD5Peers: []string{ClientV4.String(), ClientV6.String()}},
			Description: "listener requires a TCP-MD5 signature from the client, which sends none"},

		// Beside nftables (issue 17): each names its rule or program.
		{Name: "iptables-legacy-drop-syn", Family: 4, Expect: causes.FirewallDrop, listener: dual(),
			Description: "server iptables-legacy (xtables, not nf_tables) rule -A INPUT -p tcp --dport 8080 --syn -j DROP (needs iptables-legacy)",
			setup:       xtablesLegacyDrop("iptables-legacy")},
		{Name: "ip6tables-legacy-drop-syn", Family: 6, Expect: causes.FirewallDrop, listener: dual(),
			Description: "server ip6tables-legacy rule -A INPUT -p tcp --dport 8080 --syn -j DROP; the client connects over IPv6 (needs ip6tables-legacy)",
			setup:       xtablesLegacyDrop("ip6tables-legacy")},
		{Name: "tc-ingress-drop-syn", Family: 4, Expect: causes.BPFDrop, listener: dual(),
			Description: "tc clsact ingress on the server's s0: cls_bpf direct-action program lab_syn_drop returns TC_ACT_SHOT for IPv4 SYNs to 8080",
			setup:       setupTCIngressDrop},
		{Name: "xdp-drop-syn", Family: 4, Expect: causes.BPFDrop, listener: dual(),
			Description: "XDP program lab_xdp_drop (veth native mode) on the server's s0 returns XDP_DROP for IPv4 SYNs to 8080: no capture or counter sees them",
			setup:       setupXDPDrop},
		{Name: "socket-filter-drop", Family: 4, Expect: causes.BPFDrop, listener: &listenerSpec{DropFilter: true},
			Description: "the listener attaches a classic socket filter (SO_ATTACH_FILTER) that returns 0: every SYN is dropped at the socket"},
		{Name: "cgroup-skb-drop", Family: 4, Expect: causes.BPFDrop, listener: dual(),
			Description: "the listener runs in its own cgroup v2 with a cgroup_skb ingress program lab_cg_deny returning 0 (as systemd's IPAddressDeny=any does)",
			setup:       setupCgroupDeny},
		{Name: "healthy-bpf-pass", Family: 4, listener: dual(),
			Description: "innocent programs: XDP lab_xdp_pass and tc ingress lab_tc_pass on s0, cgroup_skb ingress lab_cg_allow around the listener, all passing SYNs; doctor lists them and blames none",
			setup:       setupInnocentPrograms},

		{Name: "healthy-under-load", Family: 4, listener: &listenerSpec{Backlog: 4096},
			client:      &clientSpec{Interval: 5 * time.Millisecond, Parallel: 64, MaxAttempts: 200 * 600},
			Description: "about 200 short connections per second with TIME_WAIT churn; no real fault"},
	}
}

func typedRoute(kind string, typ int, family int) Scenario {
	dst := netip.MustParsePrefix("10.77.1.0/24")
	if family == 6 {
		dst = netip.MustParsePrefix("fd77:1::/64")
	}
	return Scenario{
		Name: fmt.Sprintf("%s-route-v%d", kind, family), Family: family, Expect: causes.NoRouteToPeer, listener: dual(),
		Description: fmt.Sprintf("server has a %s route to the client prefix %s", kind, dst),
		setup: func(l *lab) error {
			r := &netlink.Route{Dst: prefixNet(dst), Type: typ}
			if err := l.hs.RouteAdd(r); err != nil {
				return fmt.Errorf("%s route %s: %w", kind, dst, err)
			}
			return nil
		},
	}
}

func delDefault(h *netlink.Handle, family int) error {
	routes, err := h.RouteList(nil, family)
	if err != nil {
		return fmt.Errorf("listing routes: %w", err)
	}
	n := 0
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			r := r
			if err := h.RouteDel(&r); err != nil {
				return fmt.Errorf("deleting default route: %w", err)
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("no default route (family %d) to delete", family)
	}
	return nil
}

const faultTable = 100

// setupPolicyRule steers the server's own source addresses into a table
// that knows only the local subnet. An empty or non-matching table would
// fall through to main, so the table ends in an unreachable default, as
// policy-routing setups written for another uplink often do.
func setupPolicyRule(l *lab) error {
	if err := l.faultTable("s0"); err != nil {
		return err
	}
	for _, src := range []netip.Addr{ServerV4, ServerV6} {
		r := netlink.NewRule()
		r.Src = prefixNet(netip.PrefixFrom(src, src.BitLen()))
		r.Table = faultTable
		r.Priority = 100
		r.Family = unix.AF_INET
		if src.Is6() {
			r.Family = unix.AF_INET6
		}
		if err := l.hs.RuleAdd(r); err != nil {
			return fmt.Errorf("rule from %s lookup %d: %w", src, faultTable, err)
		}
	}
	return nil
}

// setupFwmark: rule fwmark 1 lookup 100; the listener sets SO_MARK 1.
func setupFwmark(l *lab) error {
	if err := l.faultTable("s0"); err != nil {
		return err
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		r := netlink.NewRule()
		r.Mark = 1
		r.Table = faultTable
		r.Priority = 100
		r.Family = fam
		if err := l.hs.RuleAdd(r); err != nil {
			return fmt.Errorf("rule fwmark 1 lookup %d: %w", faultTable, err)
		}
	}
	return nil
}

// faultTable fills table 100 with the on-link server subnets and an
// unreachable default, i.e. a table with no route to the client.
func (l *lab) faultTable(dev string) error {
	link, err := l.hs.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	for _, p := range []string{"10.77.2.0/24", "fd77:2::/64"} {
		r := &netlink.Route{Dst: prefixNet(netip.MustParsePrefix(p)), LinkIndex: link.Attrs().Index,
			Table: faultTable, Scope: netlink.SCOPE_LINK}
		if err := l.hs.RouteAdd(r); err != nil {
			return fmt.Errorf("table %d route %s: %w", faultTable, p, err)
		}
	}
	for _, p := range []string{"0.0.0.0/0", "::/0"} {
		r := &netlink.Route{Dst: prefixNet(netip.MustParsePrefix(p)), Table: faultTable, Type: unix.RTN_UNREACHABLE}
		if err := l.hs.RouteAdd(r); err != nil {
			return fmt.Errorf("table %d unreachable %s: %w", faultTable, p, err)
		}
	}
	return nil
}

// addSecondPath adds a second link router rs1 10.77.3.1/24 <-> server s1
// 10.77.3.2/24.
func (l *lab) addSecondPath() error {
	if err := addVeth(l.hr, "rs1", l.srv, "s1"); err != nil {
		return err
	}
	if err := addrsUp(l.hr, "rs1", "10.77.3.1/24"); err != nil {
		return err
	}
	return addrsUp(l.hs, "s1", "10.77.3.2/24")
}

// setupRPFilter makes the server's route back to the client leave via s1
// while the client's SYNs (routed by the router to 10.77.2.2 on rs0) arrive
// on s0; strict rp_filter drops them. The client is not on-link, so the
// rp_filter ARP gotcha of the reference does not apply.
func setupRPFilter(l *lab) error {
	if err := l.addSecondPath(); err != nil {
		return err
	}
	if err := addRoute(l.hs, "s1", netip.MustParsePrefix("10.77.1.0/24"), netip.MustParseAddr("10.77.3.1"), true); err != nil {
		return err
	}
	return setSysctls(l.srv, map[string]string{
		"net/ipv4/conf/all/rp_filter": "1",
		"net/ipv4/conf/s0/rp_filter":  "1",
	})
}

// setupIPv6Disabled pins the router's neighbour entry for the server (the
// server no longer answers neighbour solicitations) so v6 SYNs keep
// arriving and being discarded, then disables IPv6 on s0.
func setupIPv6Disabled(l *lab) error {
	s0, err := l.hs.LinkByName("s0")
	if err != nil {
		return fmt.Errorf("s0: %w", err)
	}
	rs0, err := l.hr.LinkByName("rs0")
	if err != nil {
		return fmt.Errorf("rs0: %w", err)
	}
	n := &netlink.Neigh{LinkIndex: rs0.Attrs().Index, Family: unix.AF_INET6, State: netlink.NUD_PERMANENT,
		IP: net.IP(ServerV6.AsSlice()), HardwareAddr: s0.Attrs().HardwareAddr}
	if err := l.hr.NeighSet(n); err != nil {
		return fmt.Errorf("static neighbour %s on rs0: %w", ServerV6, err)
	}
	return setSysctls(l.srv, map[string]string{"net/ipv6/conf/s0/disable_ipv6": "1"})
}

// startSynGen runs the bounded spoofed-SYN generator in the client
// namespace: 16 SYNs per second for at most ten minutes.
func startSynGen(ctx context.Context, l *lab) error {
	return l.startAgent(ctx, l.cli, agentSpec{Kind: "syngen", SynGen: &synGenSpec{
		Dst: ServerV4.String(), Port: Port, Burst: 16, Interval: time.Second, MaxPackets: 16 * 600,
	}})
}

// staleCtPort is the client source port whose flow has a stale conntrack
// entry in the conntrack-invalid scenario.
const staleCtPort = 40000

// setupConntrackInvalid reproduces a stale conntrack entry for the flow,
// left over from a connection conntrack tracked the other way round (a
// server-initiated flow from port 8080, a bad state sync after failover).
// The client's SYN then travels in the entry's REPLY direction, which the
// TCP state table calls invalid in ESTABLISHED, so the packet goes on with
// no conntrack and "ct state invalid drop" drops it. (A SYN hitting an
// ESTABLISHED entry in the ORIGINAL direction is only "ignored" and
// accepted on 6.18: measured.)
func setupConntrackInvalid(l *lab) error {
	if err := addNftRules(l.srv, filterRule("input", nftables.ChainHookInput, ctStateInvalid(), drop())); err != nil {
		return err
	}
	orig := netlink.IPTuple{SrcIP: net.IP(ServerV4.AsSlice()), DstIP: net.IP(ClientV4.AsSlice()),
		Protocol: unix.IPPROTO_TCP, SrcPort: Port, DstPort: staleCtPort}
	reply := netlink.IPTuple{SrcIP: orig.DstIP, DstIP: orig.SrcIP, Protocol: unix.IPPROTO_TCP, SrcPort: staleCtPort, DstPort: Port}
	flow := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, Forward: orig, Reverse: reply, TimeOut: 600,
		ProtoInfo: &netlink.ProtoInfoTCP{State: nl.TCP_CONNTRACK_ESTABLISHED}}
	if err := l.hs.ConntrackCreate(netlink.ConntrackTable, nl.FAMILY_V4, flow); err != nil {
		return fmt.Errorf("stale conntrack entry: %w", err)
	}
	return nil
}

// setupTCEgressDrop adds a clsact qdisc on s0 and an egress cls_bpf
// filter (direct action) that shoots IPv4 TCP segments from port 8080 with
// SYN and ACK set. The kernel here has no act_gact, so a tiny BPF program
// is the way to say "drop" from tc.
func setupTCEgressDrop(l *lab) error {
	link, err := l.hs.LinkByName("s0")
	if err != nil {
		return fmt.Errorf("s0: %w", err)
	}
	idx := link.Attrs().Index
	q := &netlink.GenericQdisc{QdiscType: "clsact", QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	if err := l.hs.QdiscAdd(q); err != nil {
		return fmt.Errorf("clsact on s0: %w", err)
	}
	prog, err := synackDropProg()
	if err != nil {
		return err
	}
	// The filter keeps its own reference to the program.
	defer prog.Close()
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.HANDLE_MIN_EGRESS,
			Handle: 1, Priority: 1, Protocol: unix.ETH_P_ALL},
		Fd: prog.FD(), Name: "synscope_lab_synack_drop", DirectAction: true,
	}
	if err := l.hs.FilterAdd(f); err != nil {
		return fmt.Errorf("tc egress filter on s0: %w", err)
	}
	return nil
}

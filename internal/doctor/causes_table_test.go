package doctor

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/dataplane"
	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sockets"
)

// inputRule is an inet filter input chain with one rule (handle 1).
func inputRule(exprs ...expr.Any) *firewall.Ruleset {
	hook, prio, pol := nftables.ChainHookInput, nftables.ChainPriorityFilter, nftables.ChainPolicyAccept
	return firewall.Build([]firewall.Table{{
		Table: &nftables.Table{Name: "filter", Family: nftables.TableFamilyINet},
		Chains: []firewall.Chain{{
			Chain: &nftables.Chain{Name: "input", Type: nftables.ChainTypeFilter, Hooknum: hook, Priority: prio, Policy: &pol},
			Rules: []*nftables.Rule{{Handle: 1, Exprs: exprs}},
		}},
	}})
}

var tcpDport8080 = []expr.Any{
	&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
	&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(8080)},
}

var ctInvalid = []expr.Any{
	&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
	&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
		Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitINVALID), Xor: []byte{0, 0, 0, 0}},
	&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
}

// unanswered adds SYNs from a client to the listener that got nothing.
func unanswered(e *Evidence, client string) {
	c := netip.MustParseAddrPort(client)
	srv := netip.MustParseAddrPort("10.77.2.2:8080")
	if c.Addr().Is6() {
		srv = netip.MustParseAddrPort("[fd77:2::2]:8080")
	}
	e.Capture.Flows = append(e.Capture.Flows, capture.Flow{Dir: capture.Inbound, Client: c, Server: srv, Ifindex: 2, ClientMAC: routerMAC, SYNs: 3})
}

// causeCases: for every cause in the catalog, recorded evidence of the
// fault on the lab's server and the finding doctor must put first.
var causeCases = []struct {
	name     string
	mutate   func(e *Evidence)
	cause    causes.ID
	severity report.Severity
}{
	{"seed case", noRouteV6, causes.NoRouteToPeer, report.Critical},
	{"accept queue full", func(e *Evidence) {
		e.Listeners[0].RecvQ, e.Listeners[0].SendQ, e.Listeners[0].Drops = 2, 1, 5
		e.CounterDeltas["TcpExtListenOverflows"], e.CounterDeltas["TcpExtListenDrops"] = 5, 5
	}, causes.AcceptQueueOverflow, report.Critical},
	{"SYN queue full, no cookies", func(e *Evidence) {
		e.Sysctl["net.ipv4.tcp_syncookies"] = "0"
		e.CounterDeltas["TcpExtTCPReqQFullDrop"], e.CounterDeltas["TcpExtListenDrops"] = 20, 20
	}, causes.SynQueueOverflow, report.Critical},
	{"cookies", func(e *Evidence) { e.CounterDeltas["TcpExtSyncookiesSent"] = 50 }, causes.SynFloodCookies, report.Warning},
	{"firewall drops the SYN", func(e *Evidence) {
		e.Firewall = inputRule(append(append([]expr.Any{}, tcpDport8080...), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})...)
		e.FirewallDeltas = map[string]uint64{e.Firewall.Rules[0].Key(): 6}
		unanswered(e, "10.77.1.2:40000")
	}, causes.FirewallDrop, report.Critical},
	{"strict rp_filter", func(e *Evidence) {
		e.Sysctl["net.ipv4.conf.s0.rp_filter"] = "1"
		e.CounterDeltas["TcpExtIPReversePathFilter"] = 5
	}, causes.RPFilterDrop, report.Critical},
	{"refused", func(e *Evidence) {
		e.Capture.Flows = append(e.Capture.Flows, capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort("10.77.1.2:40000"),
			Server: netip.MustParseAddrPort("10.77.2.2:9090"), Ifindex: 2, SYNs: 1, RSTs: 1})
	}, causes.NoListener, report.Critical},
	{"gateway FAILED", func(e *Evidence) {
		e.Routes.Routes = append(e.Routes.Routes, routes.Route{Family: unix.AF_INET, Table: 254, Type: "unicast", Gateway: netip.MustParseAddr("10.77.2.1"), Dev: "s0", Ifindex: 2})
		e.Routes.Neighbors = append(e.Routes.Neighbors, routes.Neighbor{Ifindex: 2, Dev: "s0", IP: netip.MustParseAddr("10.77.2.1"), State: "FAILED"})
		unanswered(e, "10.77.1.2:40000")
		f := &e.Capture.Flows[len(e.Capture.Flows)-1]
		e.Replays = append(e.Replays, Replay{Peer: Peer{Addr: f.Client.Addr(), Port: 40000, Source: FromCapture, Flow: f, Flows: 1, SYNs: 3},
			Listener: &e.Listeners[0], Result: routes.Result{OK: true, Gateway: netip.MustParseAddr("10.77.2.1"), Dev: "s0",
				Query: routes.Query{Src: f.Server.Addr(), Dst: f.Client.Addr(), Sport: 8080, Dport: 40000}}})
	}, causes.NeighborUnreachable, report.Critical},
	{"conntrack table full", func(e *Evidence) {
		e.ConntrackStart = &counters.Conntrack{Available: true, Count: 1000, Max: 1000}
		e.Conntrack = &counters.Conntrack{Available: true, Count: 1000, Max: 1000, Drop: 40}
	}, causes.ConntrackFull, report.Critical},
	{"ct state invalid drop", func(e *Evidence) {
		e.Firewall = inputRule(append(append([]expr.Any{}, ctInvalid...), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})...)
		e.FirewallDeltas = map[string]uint64{e.Firewall.Rules[0].Key(): 6}
		unanswered(e, "10.77.1.2:40000")
	}, causes.ConntrackInvalid, report.Critical},
	{"IPv6 disabled on s0", func(e *Evidence) {
		e.Sysctl["net.ipv6.conf.s0.disable_ipv6"] = "1"
		unanswered(e, "[fd77:1::2]:40000")
	}, causes.IPv6Disabled, report.Critical},
	{"MINTTL", func(e *Evidence) {
		e.CounterDeltas["TcpExtTCPMinTTLDrop"], e.CounterDeltas["TcpExtListenDrops"] = 5, 5
	}, causes.TCPReject, report.Critical},
	{"SYN-ACKs retransmitted, never ACKed", func(e *Evidence) {
		e.CounterDeltas["TcpExtTCPSynRetrans"] = 6
		for i := 0; i < 3; i++ {
			e.SynRecv = append(e.SynRecv, sockets.Socket{Family: unix.AF_INET, State: 3, Retrans: 2,
				Local: netip.MustParseAddrPort("10.77.2.2:8080"), Remote: netip.AddrPortFrom(netip.MustParseAddr("10.77.1.2"), uint16(40000+i))})
		}
	}, causes.SynackUnanswered, report.Critical},
	{"backlog capped", func(e *Evidence) {
		e.Sysctl["net.core.somaxconn"] = "128"
		e.Listeners[0].SendQ, e.ListenersStart[0].SendQ = 128, 128
	}, causes.BacklogCapped, report.Warning},
	{"SYN-ACK dropped on egress", func(e *Evidence) {
		e.CounterDeltas["TcpExtTCPTimeouts"] = 4
		e.SynRecv = append(e.SynRecv, sockets.Socket{Family: unix.AF_INET, State: 3, Local: netip.MustParseAddrPort("10.77.2.2:8080"), Remote: netip.MustParseAddrPort("10.77.1.2:40000")})
		e.TC = []firewall.TCFilter{{Dev: "s0", Ifindex: 2, Direction: "egress", Kind: "bpf", Priority: 1, Text: "bpf egress pref 1"}}
	}, causes.SynackEgressDrop, report.Critical},
	{"PAWS", func(e *Evidence) { e.CounterDeltas["TcpExtPAWSTimewait"] = 3 }, causes.PAWSReject, report.Warning},
	{"ListenDrops alone", func(e *Evidence) { e.CounterDeltas["TcpExtListenDrops"] = 7 }, causes.UnexplainedDrops, report.Warning},
	{"tc program drops the SYN", func(e *Evidence) {
		e.Dataplane = &dataplane.Inventory{Programs: []dataplane.Program{tcProg(dataplane.Drop)}}
		unanswered(e, "10.77.1.2:40000")
	}, causes.BPFDrop, report.Critical},
	{"port scan", func(e *Evidence) { halfOpenScan(e, "10.77.1.9") }, causes.PortScan, report.Info},
	{"RA default route at risk", func(e *Evidence) {
		e.Routes.Routes = append(e.Routes.Routes, routes.Route{Family: unix.AF_INET6, Table: 254, Type: "unicast", Protocol: "ra",
			Gateway: netip.MustParseAddr("fe80::1"), Dev: "s0", Ifindex: 2, HasExpiry: true, Expires: 25e9})
		e.Sysctl["net.ipv6.conf.s0.forwarding"], e.Sysctl["net.ipv6.conf.s0.accept_ra"] = "1", "1"
	}, causes.DefaultRouteAtRisk, report.Warning},
}

// TestEveryCauseHasARule: each catalog cause is produced first, with its
// severity, from evidence of its fault, and no cause lacks a case.
func TestEveryCauseHasARule(t *testing.T) {
	covered := map[causes.ID]bool{}
	for _, c := range causeCases {
		t.Run(c.name, func(t *testing.T) {
			e := server()
			c.mutate(e)
			rep := &report.Report{Findings: Diagnose(e)}
			rep.Sort()
			if len(rep.Findings) == 0 {
				t.Fatalf("no finding, want %s", c.cause)
			}
			top := rep.Findings[0]
			if top.Cause != c.cause || top.Severity != c.severity {
				t.Fatalf("top finding %s/%s (%s), want %s/%s", top.Cause, top.Severity, top.Summary, c.cause, c.severity)
			}
			if top.Summary == "" || top.Why == "" || top.Fix == "" || len(top.Evidence) == 0 {
				t.Fatalf("incomplete finding: %+v", top)
			}
			covered[c.cause] = true
		})
	}
	for _, c := range causes.All() {
		if !covered[c.ID] {
			t.Errorf("catalog cause %s has no rule case", c.ID)
		}
	}
}

// TestNoListenerNotConfirmedWithoutSockets: a refused SYN with the socket
// table unread is no-listener "likely", never "confirmed" on evidence that
// was not collected.
func TestNoListenerNotConfirmedWithoutSockets(t *testing.T) {
	e := server()
	e.Listeners, e.ListenersStart = nil, nil
	e.unchecked("listeners", "sock_diag: permission denied")
	e.Capture.Flows = append(e.Capture.Flows, capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort("10.77.1.2:40000"),
		Server: netip.MustParseAddrPort("10.77.2.2:8080"), Ifindex: 2, SYNs: 1, RSTs: 1})
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.NoListener || fs[0].Confidence != report.Likely {
		t.Fatalf("got %+v", fs)
	}
	for _, ev := range fs[0].Evidence {
		if ev.Source == "sockets" {
			t.Errorf("evidence claims a socket reading that did not happen: %s", ev.Text)
		}
	}
}

// TestCarrierLostRisk: a default route whose device lost carrier is a
// warning while lookups still use it, and not at risk where the namespace
// ignores link-down routes (lookups skip it: it is gone, not at risk).
func TestCarrierLostRisk(t *testing.T) {
	e := server()
	e.Routes.Routes = append(e.Routes.Routes, routes.Route{Family: unix.AF_INET, Table: 254, Type: "unicast",
		Gateway: netip.MustParseAddr("10.77.2.1"), Dev: "s0", Ifindex: 2, Linkdown: true})
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.DefaultRouteAtRisk || fs[0].Evidence[0].Data["risk"] != "carrier-lost" {
		t.Fatalf("got %+v", fs)
	}
	e.Sysctl["net.ipv4.conf.all.ignore_routes_with_linkdown"] = "1"
	if fs := Diagnose(e); len(fs) != 0 {
		t.Fatalf("link-down route ignored by lookups, yet %+v", fs)
	}
}

// tcProg is a tc ingress program on s0 whose test run on the lab client's
// SYN gave v.
func tcProg(v dataplane.Verdict) dataplane.Program {
	return dataplane.Program{Hook: dataplane.HookTCIngress, Dev: "s0", Pref: 1, ID: 7, Name: "edge_filter", DirectAction: true,
		Tests: []dataplane.TestRun{{Client: netip.MustParseAddr("10.77.1.2"), Server: netip.MustParseAddrPort("10.77.2.2:8080"), Verdict: v, Action: string(v)}}}
}

// TestInnocentProgramNotBlamed: a program present where SYNs are lost is
// not a finding unless its own verdict drops them; an egress program's
// SYN-ACK drop is left to synack-egress-drop.
func TestInnocentProgramNotBlamed(t *testing.T) {
	e := server()
	unanswered(e, "10.77.1.2:40000")
	egress := tcProg(dataplane.Drop)
	egress.Hook = dataplane.HookTCEgress
	e.Dataplane = &dataplane.Inventory{Programs: []dataplane.Program{tcProg(dataplane.Pass), egress}}
	for _, f := range Diagnose(e) {
		if f.Cause == causes.BPFDrop {
			t.Fatalf("innocent program blamed: %s", f.Summary)
		}
	}
	e.Dataplane.Programs[0] = tcProg(dataplane.Drop)
	fs := Diagnose(e)
	if len(fs) == 0 || fs[0].Cause != causes.BPFDrop || fs[0].Confidence != report.Confirmed || !strings.Contains(fs[0].Fix, "tc filter del dev s0 ingress pref 1") {
		t.Fatalf("got %+v", fs)
	}
}

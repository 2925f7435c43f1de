package doctor

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sockets"
)

// only returns the findings of one cause.
func only(fs []report.Finding, id causes.ID) []report.Finding {
	var out []report.Finding
	for _, f := range fs {
		if f.Cause == id {
			out = append(out, f)
		}
	}
	return out
}

// TestAcceptQueueBoundary: the kernel's queue is full when it holds more
// than the backlog (sk_acceptq_is_full: ack_backlog > max_ack_backlog); a
// queue at its backlog with the listener's drops rising but no
// ListenOverflows is no accept-queue finding, and Confirmed needs all
// three signals.
func TestAcceptQueueBoundary(t *testing.T) {
	for _, c := range []struct {
		name         string
		recvQ, sendQ uint32
		dd, lo       int64
		want         report.Confidence // "" = no finding
	}{
		{"at backlog, drops, no overflows", 4, 4, 3, 0, ""},
		{"at backlog, drops and overflows", 4, 4, 3, 3, report.Likely},
		{"over, drops and overflows", 5, 4, 3, 3, report.Confirmed},
		{"over, drops, no overflows", 5, 4, 3, 0, report.Likely},
		{"over, overflows, no listener drops", 5, 4, 0, 3, report.Likely},
		{"over, nothing dropped", 5, 4, 0, 0, ""},
	} {
		e := server()
		e.Listeners[0].RecvQ, e.Listeners[0].SendQ, e.Listeners[0].Drops = c.recvQ, c.sendQ, uint32(c.dd)
		e.CounterDeltas["TcpExtListenOverflows"], e.CounterDeltas["TcpExtListenDrops"] = c.lo, c.lo
		fs := only(Diagnose(e), causes.AcceptQueueOverflow)
		switch {
		case c.want == "" && len(fs) != 0:
			t.Errorf("%s: %+v", c.name, fs)
		case c.want != "" && (len(fs) != 1 || fs[0].Confidence != c.want):
			t.Errorf("%s: want %s, got %+v", c.name, c.want, fs)
		}
	}
}

// TestLastQuarterBoundary: with syncookies off, tcp_conn_request drops
// SYNs from unproven peers once max - qlen < max>>2; doctor allows one
// request of slack for the queue read after the window: 512 slots flag
// from 384 requests, not 383.
func TestLastQuarterBoundary(t *testing.T) {
	for n, want := range map[int]bool{383: false, 384: true, 385: true} {
		e := server()
		e.Sysctl["net.ipv4.tcp_syncookies"] = "0"
		e.Listeners[0].Drops = 9
		e.CounterDeltas["TcpExtListenDrops"] = 9
		for i := 0; i < n; i++ {
			e.SynRecv = append(e.SynRecv, sockets.Socket{Family: unix.AF_INET, State: 3, Local: netip.MustParseAddrPort("10.77.2.2:8080"),
				Remote: netip.AddrPortFrom(netip.MustParseAddr("10.77.1.2"), uint16(1000+i))})
		}
		fs := Diagnose(e)
		q, u := only(fs, causes.SynQueueOverflow), only(fs, causes.UnexplainedDrops)
		if want && (len(q) != 1 || q[0].Drops != 9 || len(u) != 0) {
			t.Errorf("%d requests: want syn-queue-overflow claiming the 9 drops, got %+v", n, fs)
		}
		if !want && (len(q) != 0 || len(u) != 1 || u[0].Drops != 9) {
			t.Errorf("%d requests: want unexplained 9, got %+v", n, fs)
		}
	}
}

// TestRPFilterLooseIsNotStrict: rp_filter=2 (loose) passes asymmetric
// traffic; only 1 is named as strict and changed by the fix.
func TestRPFilterLooseIsNotStrict(t *testing.T) {
	e := server()
	e.Sysctl["net.ipv4.conf.s0.rp_filter"] = "2"
	e.Sysctl["net.ipv4.conf.all.rp_filter"] = "1"
	e.CounterDeltas["TcpExtIPReversePathFilter"] = 5
	fs := only(Diagnose(e), causes.RPFilterDrop)
	if len(fs) != 1 {
		t.Fatalf("got %+v", fs)
	}
	all := evidenceText(fs[0])
	if strings.Contains(all, "s0.rp_filter = 1") || !strings.Contains(all, "net.ipv4.conf.all.rp_filter = 1 (strict)") ||
		strings.Contains(fs[0].Fix, "s0.rp_filter") || !strings.Contains(fs[0].Fix, "net.ipv4.conf.all.rp_filter=2") {
		t.Fatalf("loose s0 treated as strict, or strict all missed: %s | fix %s", all, fs[0].Fix)
	}
}

// TestNoRouteNeedsBothCounters: a failed replay with captured SYNs is
// Confirmed only when ListenDrops and OutNoRoutes both rose; one alone
// leaves it Likely, and no replay plus one counter is no no-route finding.
func TestNoRouteNeedsBothCounters(t *testing.T) {
	for _, c := range []struct {
		ld, nr int64
		want   report.Confidence
	}{{10, 10, report.Confirmed}, {10, 0, report.Likely}, {0, 10, report.Likely}} {
		e := server()
		noRouteV6(e)
		e.CounterDeltas["TcpExtListenDrops"], e.CounterDeltas["Ip6OutNoRoutes"] = c.ld, c.nr
		fs := only(Diagnose(e), causes.NoRouteToPeer)
		if len(fs) != 1 || fs[0].Confidence != c.want {
			t.Errorf("ListenDrops %d, Ip6OutNoRoutes %d: want %s, got %+v", c.ld, c.nr, c.want, fs)
		}
	}
	for _, d := range []counters.Delta{{"TcpExtListenDrops": 5}, {"Ip6OutNoRoutes": 5}, {"IpOutNoRoutes": 5}} {
		e := server()
		e.CounterDeltas = d
		if fs := only(Diagnose(e), causes.NoRouteToPeer); len(fs) != 0 {
			t.Errorf("%v alone: %+v", d, fs)
		}
	}
}

// TestTypedV6RouteClaimsListenDrops: an IPv6 unreachable route fails the
// SYN-ACK's lookup moving ListenDrops only (no Ip6OutNoRoutes): the
// no-route finding takes those drops and nothing is left unexplained.
func TestTypedV6RouteClaimsListenDrops(t *testing.T) {
	e := server()
	noRouteV6(e)
	e.CounterDeltas["Ip6OutNoRoutes"] = 0
	e.Routes.Routes = append(e.Routes.Routes, routes.Route{Family: unix.AF_INET6, Table: 254, Type: "unreachable", Dst: netip.MustParsePrefix("fd77:1::/64")})
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.NoRouteToPeer || fs[0].Drops != 10 || fs[0].Confidence != report.Confirmed {
		t.Fatalf("got %+v", fs)
	}
}

// TestConntrackThreshold: a table above 90% is a warning, below is
// nothing; drops make it critical.
func TestConntrackThreshold(t *testing.T) {
	for count, want := range map[uint64]report.Severity{890: "", 899: "", 900: report.Warning, 910: report.Warning} {
		e := server()
		e.ConntrackStart = &counters.Conntrack{Available: true, Count: count, Max: 1000}
		e.Conntrack = &counters.Conntrack{Available: true, Count: count, Max: 1000}
		fs := only(Diagnose(e), causes.ConntrackFull)
		if (want == "") != (len(fs) == 0) || (len(fs) == 1 && fs[0].Severity != want) {
			t.Errorf("%d/1000: want %q, got %+v", count, want, fs)
		}
	}
}

// TestMinTTLEvidenceOnlyForMinTTL: the SYN's TTL is evidence for a
// MINTTL drop, not for the other TCP checks.
func TestMinTTLEvidenceOnlyForMinTTL(t *testing.T) {
	for counter, want := range map[string]bool{"TcpExtTCPMinTTLDrop": true, "TcpExtTCPMD5NotFound": false, "TcpInCsumErrors": false} {
		e := server()
		e.CounterDeltas[counter] = 3
		e.Capture.Flows = append(e.Capture.Flows, capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort("10.77.1.2:40000"),
			Server: netip.MustParseAddrPort("10.77.2.2:8080"), SYNs: 3, TTL: 7})
		fs := only(Diagnose(e), causes.TCPReject)
		if len(fs) != 1 || strings.Contains(evidenceText(fs[0]), "arrived with TTL 7") != want {
			t.Errorf("%s: TTL evidence want %v, got %+v", counter, want, fs)
		}
	}
}

// TestListenerForDualStack: a v4 SYN lands on an exact v4 listener first,
// else on a [::] listener (dual-stack), else on nothing.
func TestListenerForDualStack(t *testing.T) {
	dual := sockets.Socket{Family: unix.AF_INET6, Local: netip.MustParseAddrPort("[::]:8080"), Inode: 1}
	exact := sockets.Socket{Family: unix.AF_INET, Local: netip.MustParseAddrPort("10.77.2.2:8080"), Inode: 2}
	v6only := sockets.Socket{Family: unix.AF_INET6, Local: netip.MustParseAddrPort("[fd77:2::2]:8080"), Inode: 3}
	r := &run{ev: &Evidence{Listeners: []sockets.Socket{dual}}}
	if l := r.listenerFor(netip.MustParseAddrPort("10.77.2.2:8080")); l == nil || l.Inode != 1 {
		t.Fatalf("v4 SYN to a dual-stack [::] listener: %+v", l)
	}
	r.ev.Listeners = []sockets.Socket{dual, exact}
	if l := r.listenerFor(netip.MustParseAddrPort("10.77.2.2:8080")); l == nil || l.Inode != 2 {
		t.Fatalf("exact address first: %+v", l)
	}
	r.ev.Listeners = []sockets.Socket{v6only}
	if l := r.listenerFor(netip.MustParseAddrPort("10.77.2.2:8080")); l != nil {
		t.Fatalf("v4 SYN matched a v6 address: %+v", l)
	}
	if l := r.listenerFor(netip.MustParseAddrPort("10.77.2.2:9090")); l != nil {
		t.Fatalf("other port: %+v", l)
	}
}

// TestDropsSplitOverFindings: when a cause gives several findings (two
// full listeners, two routes failing), their drops add up to the
// catalog's attribution, never more, never less.
func TestDropsSplitOverFindings(t *testing.T) {
	e := server()
	second := e.Listeners[0]
	second.Local, second.Inode = netip.MustParseAddrPort("[::]:9090"), 8
	e.Listeners = append(e.Listeners, second)
	e.ListenersStart = append(e.ListenersStart, second)
	for i := range e.Listeners {
		e.Listeners[i].RecvQ, e.Listeners[i].SendQ, e.Listeners[i].Drops = 3, 2, 1
	}
	e.CounterDeltas["TcpExtListenOverflows"], e.CounterDeltas["TcpExtListenDrops"] = 5, 5
	fs := only(Diagnose(e), causes.AcceptQueueOverflow)
	if len(fs) != 2 || fs[0].Drops+fs[1].Drops != 5 {
		t.Fatalf("two full listeners, 5 overflows: %+v", fs)
	}

	e = server()
	noRouteV6(e)
	flow := capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort("10.77.1.2:40000"), Server: netip.MustParseAddrPort("10.77.2.2:8080"), Ifindex: 2, SYNs: 2}
	e.Capture.Flows = append(e.Capture.Flows, flow)
	e.CounterDeltas["IpOutNoRoutes"] = 4
	e.CounterDeltas["TcpExtListenDrops"] += 4
	e.Replays = append(e.Replays, Replay{Peer: Peer{Addr: flow.Client.Addr(), Port: 40000, Source: FromCapture, Flow: &e.Capture.Flows[len(e.Capture.Flows)-1], Flows: 1, SYNs: 2},
		Listener: &e.Listeners[0], Result: routes.Result{Query: routes.Query{Src: flow.Server.Addr(), Dst: flow.Client.Addr(), Sport: 8080, Dport: 40000},
			Errno: unix.ENETUNREACH, Err: "network is unreachable"}})
	fs = only(Diagnose(e), causes.NoRouteToPeer)
	if len(fs) != 2 || fs[0].Drops+fs[1].Drops != 14 {
		t.Fatalf("v4 and v6 default routes missing, 14 drops: %+v", fs)
	}
}

// TestChecksumWording: TcpInCsumErrors counts every bad segment, so its
// finding speaks of segments, not of SYNs.
func TestChecksumWording(t *testing.T) {
	for counter, want := range map[string]string{"TcpInCsumErrors": "3 TCP segments (SYNs among them)", "TcpExtTCPMD5Failure": "3 SYNs dropped by TCP"} {
		e := server()
		e.CounterDeltas[counter] = 3
		fs := only(Diagnose(e), causes.TCPReject)
		if len(fs) != 1 || !strings.HasPrefix(fs[0].Summary, want) {
			t.Errorf("%s: want %q, got %+v", counter, want, fs)
		}
	}
}

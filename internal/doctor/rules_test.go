package doctor

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/netmgr"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sockets"
)

var routerMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}

// server builds the evidence of a healthy dual-stack server on s0 with a
// listener on [::]:8080, as the lab's server namespace looks.
func server() *Evidence {
	l := sockets.Socket{Family: unix.AF_INET6, State: 10, Local: netip.MustParseAddrPort("[::]:8080"), SendQ: 4096, Inode: 7}
	return &Evidence{
		Target:         &netns.Target{Name: "srv"},
		Window:         2 * time.Second,
		Counters:       &counters.Snapshot{Values: map[string]uint64{}},
		CounterDeltas:  counters.Delta{"TcpPassiveOpens": 40, "TcpExtTCPSynRetrans": 0},
		ListenersStart: []sockets.Socket{l},
		Listeners:      []sockets.Socket{l},
		Capture:        &capture.Result{},
		Sysctl:         map[string]string{"net.core.somaxconn": "4096", "net.ipv4.tcp_syncookies": "1", "net.ipv4.tcp_max_syn_backlog": "512"},
		Routes: &routes.State{
			Links: []routes.Link{{Index: 1, Name: "lo", Up: true}, {Index: 2, Name: "s0", Up: true}},
			Addrs: []routes.Addr{{Ifindex: 2, Prefix: netip.MustParsePrefix("10.77.2.2/24")}, {Ifindex: 2, Prefix: netip.MustParsePrefix("fd77:2::2/64")}},
			Routes: []routes.Route{
				{Family: unix.AF_INET, Table: 254, Type: "unicast", Dst: netip.MustParsePrefix("10.77.2.0/24"), Dev: "s0", Ifindex: 2},
				{Family: unix.AF_INET6, Table: 254, Type: "unicast", Dst: netip.MustParsePrefix("fd77:2::/64"), Dev: "s0", Ifindex: 2},
			},
			Neighbors: []routes.Neighbor{
				{Ifindex: 2, Dev: "s0", IP: netip.MustParseAddr("fd77:2::1"), LLAddr: routerMAC, State: "STALE", Router: true},
			},
		},
	}
}

func TestHealthyHasNoFindings(t *testing.T) {
	if fs := Diagnose(server()); len(fs) != 0 {
		t.Fatalf("healthy evidence gave findings: %+v", fs)
	}
}

// noRouteV6 is the seed case: the default route is gone, SYNs from
// fd77:1::2 arrive unanswered and the replayed lookup fails.
func noRouteV6(e *Evidence) {
	flow := capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort("[fd77:1::2]:40000"),
		Server: netip.MustParseAddrPort("[fd77:2::2]:8080"), Ifindex: 2, ClientMAC: routerMAC, SYNs: 2}
	e.Capture.Flows = append(e.Capture.Flows, flow)
	e.CounterDeltas["TcpExtListenDrops"] += 10
	e.CounterDeltas["Ip6OutNoRoutes"] += 10
	e.Replays = append(e.Replays, Replay{
		Peer:     Peer{Addr: flow.Client.Addr(), Port: 40000, Source: FromCapture, Flow: &e.Capture.Flows[len(e.Capture.Flows)-1], Flows: 1, SYNs: 2},
		Listener: &e.Listeners[0],
		Result: routes.Result{Query: routes.Query{Src: flow.Server.Addr(), Dst: flow.Client.Addr(), Sport: 8080, Dport: 40000},
			Errno: unix.ENETUNREACH, Err: "network is unreachable"},
	})
}

func TestNoRouteSeedCase(t *testing.T) {
	e := server()
	noRouteV6(e)
	fs := Diagnose(e)
	if len(fs) != 1 {
		t.Fatalf("want one finding, got %+v", fs)
	}
	f := fs[0]
	if f.Cause != causes.NoRouteToPeer || f.Severity != report.Critical || f.Confidence != report.Confirmed {
		t.Fatalf("got %s/%s/%s", f.Cause, f.Severity, f.Confidence)
	}
	if f.Fix != "ip -n srv -6 route add default via fd77:2::1 dev s0" {
		t.Fatalf("fix %q", f.Fix)
	}
	var ev []string
	for _, x := range f.Evidence {
		ev = append(ev, x.Text)
	}
	all := strings.Join(ev, "\n")
	for _, want := range []string{"TcpExtListenDrops +10", "Ip6OutNoRoutes +10", "from fd77:2::2 port 8080 to fd77:1::2 port 40000", "no IPv6 default route"} {
		if !strings.Contains(all, want) {
			t.Errorf("evidence lacks %q:\n%s", want, all)
		}
	}
}

func TestNoRouteWithoutGatewayPrintsPlaceholder(t *testing.T) {
	e := server()
	e.Routes.Neighbors = nil
	noRouteV6(e)
	e.Capture.Flows[0].ClientMAC = nil
	f := Diagnose(e)[0]
	if !strings.Contains(f.Fix, "<gateway>") || !strings.Contains(f.Fix, "dev s0") {
		t.Fatalf("fix %q: want a placeholder gateway on s0", f.Fix)
	}
}

func TestAcceptQueueFull(t *testing.T) {
	e := server()
	e.Listeners[0].RecvQ, e.Listeners[0].SendQ, e.Listeners[0].Drops = 2, 1, 5
	e.ListenersStart[0].SendQ = 1
	e.CounterDeltas["TcpExtListenOverflows"] = 5
	e.CounterDeltas["TcpExtListenDrops"] = 5
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.AcceptQueueOverflow || fs[0].Confidence != report.Confirmed {
		t.Fatalf("got %+v", fs)
	}
}

// Several causes at once: every one is reported and the one explaining
// the most drops comes first.
func TestRankingBySeverityThenDrops(t *testing.T) {
	e := server()
	noRouteV6(e) // 10 drops
	// 30 more route failures; MINTTL drops happen in tcp_v4_rcv before
	// the listener and never move ListenDrops (catalog attribution).
	e.CounterDeltas["TcpExtListenDrops"] += 30
	e.CounterDeltas["Ip6OutNoRoutes"] += 30
	e.CounterDeltas["TcpExtTCPMinTTLDrop"] = 30
	e.Sysctl["net.core.somaxconn"] = "128"
	e.Listeners[0].SendQ = 128
	r := &report.Report{Findings: Diagnose(e)}
	r.Sort()
	var got []causes.ID
	for _, f := range r.Findings {
		got = append(got, f.Cause)
	}
	want := []causes.ID{causes.NoRouteToPeer, causes.TCPReject, causes.BacklogCapped}
	// no-route explains ListenDrops (40) as a whole; tcp-reject 30.
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if r.Findings[0].Drops != 40 || r.Findings[1].Drops != 30 {
		t.Fatalf("drops %d, %d; want 40, 30", r.Findings[0].Drops, r.Findings[1].Drops)
	}
}

func TestListenDropsAloneNarrowsDown(t *testing.T) {
	e := server()
	e.CounterDeltas["TcpExtListenDrops"] = 7
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.UnexplainedDrops || fs[0].Severity != report.Warning {
		t.Fatalf("got %+v", fs)
	}
	if !strings.Contains(fs[0].Summary, "LSM") || !strings.Contains(evidenceOf(fs[0]), "ruled out") {
		t.Fatalf("summary should list remaining candidates and what was ruled out: %+v", fs[0])
	}
}

func TestLastQuarter(t *testing.T) {
	e := server()
	e.Sysctl["net.ipv4.tcp_syncookies"] = "0"
	e.Sysctl["net.ipv4.tcp_max_syn_backlog"] = "8"
	e.CounterDeltas["TcpExtListenDrops"] = 12
	e.Listeners[0].Drops = 12
	for i := 0; i < 7; i++ {
		e.SynRecv = append(e.SynRecv, sockets.Socket{State: 3, Local: netip.MustParseAddrPort("10.77.2.2:8080"),
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 1000), Retrans: 1})
	}
	e.CounterDeltas["TcpExtTCPSynRetrans"] = 7
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.SynQueueOverflow || !strings.Contains(fs[0].Summary, "last quarter") {
		t.Fatalf("got %+v", fs)
	}
}

func TestRefusedNamesTheBinding(t *testing.T) {
	e := server()
	e.Listeners[0].Local = netip.MustParseAddrPort("127.0.0.1:8080")
	e.Listeners[0].Family = unix.AF_INET
	e.Capture.Flows = []capture.Flow{{Dir: capture.Inbound, Client: netip.MustParseAddrPort("10.77.1.2:5000"),
		Server: netip.MustParseAddrPort("10.77.2.2:8080"), Ifindex: 2, SYNs: 1, RSTs: 1}}
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.NoListener || !strings.Contains(fs[0].Summary, "bound to 127.0.0.1") {
		t.Fatalf("got %+v", fs)
	}
}

func TestSynackUnansweredNeedsRetransmits(t *testing.T) {
	e := server()
	// A fresh request socket with no retransmit is a handshake in flight.
	e.SynRecv = []sockets.Socket{{State: 3, Local: netip.MustParseAddrPort("10.77.2.2:8080"), Remote: netip.MustParseAddrPort("10.77.1.2:5000")}}
	if fs := Diagnose(e); len(fs) != 0 {
		t.Fatalf("in-flight handshake reported: %+v", fs)
	}
	// One duplicate SYN under load: one SYN-ACK re-sent, benign.
	e.SynRecv[0].Retrans = 1
	e.CounterDeltas["TcpExtTCPSynRetrans"] = 1
	if fs := Diagnose(e); len(fs) != 0 {
		t.Fatalf("a single re-sent SYN-ACK reported: %+v", fs)
	}
	e.SynRecv[0].Retrans = 2
	e.CounterDeltas["TcpExtTCPSynRetrans"] = 2
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.SynackUnanswered || fs[0].Confidence != report.Likely {
		t.Fatalf("got %+v", fs)
	}
	// SYN-ACKs seen leaving, and the client resending its SYN: the
	// SYN-ACK is lost on the way to the client.
	e.Capture.Flows = []capture.Flow{{Dir: capture.Inbound, Client: netip.MustParseAddrPort("10.77.1.2:5000"),
		Server: netip.MustParseAddrPort("10.77.2.2:8080"), Ifindex: 2, SYNs: 2, SYNACKs: 3}}
	fs = Diagnose(e)
	if len(fs) != 1 || fs[0].Confidence != report.Confirmed || !strings.Contains(fs[0].Summary, "never reach the client") {
		t.Fatalf("got %+v", fs)
	}
}

func evidenceOf(f report.Finding) string {
	var b strings.Builder
	for _, e := range f.Evidence {
		b.WriteString(e.Text + "\n")
	}
	return b.String()
}

// TestNoRouteExpiredInPlaceReplaces: the RA default route expired in
// place is still listed, so `route add` of a default route would fail
// with "File exists": the printed fix replaces it (TestNoRouteSeedCase is
// the control: nothing listed, the fix adds).
func TestNoRouteExpiredInPlaceReplaces(t *testing.T) {
	e := server()
	noRouteV6(e)
	e.Routes.Routes = append(e.Routes.Routes, routes.Route{Family: unix.AF_INET6, Table: 254, Type: "unicast", Protocol: "ra",
		Gateway: netip.MustParseAddr("fe80::1"), Dev: "s0", Ifindex: 2, HasExpiry: true, Expires: -7e9})
	fs := Diagnose(e)
	if len(fs) == 0 || fs[0].Cause != causes.NoRouteToPeer {
		t.Fatalf("want no-route-to-peer first, got %+v", fs)
	}
	if want := "ip -n srv -6 route replace default via fd77:2::1 dev s0"; !strings.HasSuffix(fs[0].Fix, want) {
		t.Fatalf("fix %q, want it to end with %q", fs[0].Fix, want)
	}
}

// TestNoRouteNamesOwner: a device owned by a running systemd-networkd is
// named in the evidence and in the report's default routes, and the fix
// asks networkd first with the ip command as the fallback; networkd that
// does not manage the device, or managers not read, leave the plain fix.
func TestNoRouteNamesOwner(t *testing.T) {
	nd := netmgr.Owner{Name: netmgr.Networkd, Running: true, Manages: true, State: "configured",
		How: "systemd-networkd runs in the namespace as pid 7; its state of the device: ADMIN_STATE=configured NETWORK_FILE=/x"}
	e := server()
	noRouteV6(e)
	e.Managers = map[int]netmgr.Owner{2: nd}
	f := Diagnose(e)[0]
	want := "# s0 is managed by systemd-networkd (configured); where systemd-networkd can be asked (inside that system), prefer: networkctl reconfigure s0\n" +
		"ip -n srv -6 route add default via fd77:2::1 dev s0"
	if f.Fix != want {
		t.Errorf("fix in a named namespace:\n%s\nwant:\n%s", f.Fix, want)
	}
	e.Target = &netns.Target{Current: true}
	want = "# s0 is managed by systemd-networkd (configured): ask it to put its configuration back; the ip command runs if it cannot be asked\n" +
		"networkctl reconfigure s0 || ip -6 route add default via fd77:2::1 dev s0"
	if f := Diagnose(e)[0]; f.Fix != want {
		t.Errorf("fix in the caller's namespace:\n%s\nwant:\n%s", f.Fix, want)
	}
	found := false
	for _, x := range f.Evidence {
		found = found || (x.Source == sourceManagers && strings.HasPrefix(x.Text, "s0 is managed by systemd-networkd (configured): "))
	}
	if !found {
		t.Errorf("no evidence naming networkd: %+v", f.Evidence)
	}
	e.Routes.Routes = append(e.Routes.Routes, routes.Route{Family: unix.AF_INET, Table: 254, Type: "unicast", Dev: "s0", Ifindex: 2,
		Gateway: netip.MustParseAddr("10.77.2.1")})
	if ds := summariseDefaults(e); len(ds) != 1 || ds[0].Manager != "s0 is managed by systemd-networkd (configured)" {
		t.Errorf("report default routes: %+v", ds)
	}

	idle := nd
	idle.Manages, idle.State = false, "unmanaged"
	for name, m := range map[string]map[int]netmgr.Owner{"not managing": {2: idle}, "none": {}, "not read": nil} {
		e := server()
		noRouteV6(e)
		e.Managers = m
		if f := Diagnose(e)[0]; f.Fix != "ip -n srv -6 route add default via fd77:2::1 dev s0" {
			t.Errorf("%s: fix %q, want the ip command alone", name, f.Fix)
		}
	}
}

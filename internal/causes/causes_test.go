package causes

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
)

func TestCatalogIDs(t *testing.T) {
	kebab := regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	seen := map[ID]bool{}
	for _, c := range All() {
		if !kebab.MatchString(string(c.ID)) {
			t.Errorf("%q is not kebab-case", c.ID)
		}
		if seen[c.ID] {
			t.Errorf("duplicate id %q", c.ID)
		}
		seen[c.ID] = true
		if c.Title == "" || c.Mechanism == "" || c.Confirm == "" || c.Fix == "" || len(c.Counters) == 0 {
			t.Errorf("%s: incomplete entry", c.ID)
		}
	}
	// The IDs the issues name; renaming one breaks every consumer.
	for _, id := range []ID{"no-route-to-peer", "accept-queue-overflow", "syn-queue-overflow",
		"syn-flood-cookies", "firewall-drop", "rp-filter-drop", "no-listener",
		"neighbor-unreachable", "conntrack-full", "ipv6-disabled", "tcp-reject",
		"synack-unanswered", "backlog-capped"} {
		if !seen[id] {
			t.Errorf("catalog lacks %q", id)
		}
	}
}

// TestAttribute pins the kernel facts AttributeDrops follows (every mode
// reports its split): ListenDrop causes' counters are sub-counts of
// ListenDrops, exact before shared, capped at what ListenDrops holds;
// drops before the listener are taken whole and leave ListenDrops to
// unexplained-listen-drops.
func TestAttribute(t *testing.T) {
	for _, c := range []struct {
		deltas map[string]int64
		want   map[ID]uint64
	}{
		{map[string]int64{"TcpExtListenDrops": 10, "TcpExtTCPReqQFullDrop": 3}, map[ID]uint64{SynQueueOverflow: 3, UnexplainedDrops: 7}},
		{map[string]int64{"TcpExtListenDrops": 10, "TcpExtTCPMinTTLDrop": 10}, map[ID]uint64{TCPReject: 10, UnexplainedDrops: 10}},
		{map[string]int64{"TcpExtListenDrops": 10, "TcpInCsumErrors": 10}, map[ID]uint64{TCPReject: 10, UnexplainedDrops: 10}},
		{map[string]int64{"TcpExtTCPMinTTLDrop": 4}, map[ID]uint64{TCPReject: 4}},
		{map[string]int64{"TcpExtTCPMD5NotFound": 1, "TcpExtTCPMD5Unexpected": 1, "TcpExtTCPMD5Failure": 1, "TcpExtTCPAORequired": 1, "TcpExtTCPAOBad": 1, "TcpExtTCPAOKeyNotFound": 1}, map[ID]uint64{TCPReject: 6}},
		{map[string]int64{"TcpExtListenDrops": 5, "TcpExtListenOverflows": 8}, map[ID]uint64{AcceptQueueOverflow: 5}},
		{map[string]int64{"TcpExtListenDrops": 6, "TcpExtListenOverflows": 4, "IpOutNoRoutes": 9}, map[ID]uint64{AcceptQueueOverflow: 4, NoRouteToPeer: 2}},
		{map[string]int64{"TcpExtListenDrops": 20, "IpOutNoRoutes": 4, "Ip6OutNoRoutes": 10}, map[ID]uint64{NoRouteToPeer: 14, UnexplainedDrops: 6}},
		{map[string]int64{"IpOutNoRoutes": 4}, map[ID]uint64{}},
		{map[string]int64{"TcpExtListenDrops": -3, "TcpExtIPReversePathFilter": 2, "TcpExtPAWSTimewait": 1}, map[ID]uint64{RPFilterDrop: 2, PAWSReject: 1}},
	} {
		got := AttributeDrops(func(n string) int64 { return c.deltas[n] })
		if len(got) != len(c.want) {
			t.Errorf("%v: got %v, want %v", c.deltas, got, c.want)
			continue
		}
		for id, n := range c.want {
			if got[id] != n {
				t.Errorf("%v: got %v, want %v", c.deltas, got, c.want)
			}
		}
	}
	a := Attribute(func(n string) int64 {
		return map[string]int64{"TcpExtListenDrops": 3, "TcpExtListenOverflows": 1, "TcpInCsumErrors": 2}[n]
	})
	if a.ByCounter["TcpExtListenOverflows"] != 1 || a.ByCounter["TcpInCsumErrors"] != 2 || a.ByCounter[ListenDropsCounter] != 2 {
		t.Errorf("by counter: %v", a.ByCounter)
	}
}

// TestRouteTypeErrnos: the errno each failing route type returns
// (fib_props in net/ipv4/fib_semantics.c: blackhole -EINVAL, unreachable
// -EHOSTUNREACH, prohibit -EACCES, throw -EAGAIN), both ways.
func TestRouteTypeErrnos(t *testing.T) {
	for typ, want := range map[string]syscall.Errno{"unreachable": syscall.EHOSTUNREACH, "blackhole": syscall.EINVAL, "prohibit": syscall.EACCES, "throw": syscall.EAGAIN} {
		if got, ok := RouteTypeErrno(typ); !ok || got != want {
			t.Errorf("RouteTypeErrno(%s) = %v %v, want %v", typ, got, ok, want)
		}
		if got, ok := ErrnoRouteType(want); !ok || got != typ {
			t.Errorf("ErrnoRouteType(%v) = %q %v, want %s", want, got, ok, typ)
		}
	}
	if _, ok := ErrnoRouteType(syscall.ENETUNREACH); ok {
		t.Error("ENETUNREACH names no route type")
	}
}

// TestTracepoints: the tcp-reject tracepoints resolve to their own cause
// and text; an unknown one to nothing.
func TestTracepoints(t *testing.T) {
	tps := Tracepoints(TCPReject)
	if len(tps) != 7 || tps[0].Name != "tcp_bad_csum" {
		t.Fatalf("tracepoints %v", tps)
	}
	for _, tp := range tps {
		if id, text := TracepointText(tp.Name); id != TCPReject || text != tp.Text || text == tp.Name || text == "" {
			t.Errorf("TracepointText(%s) = %s %q", tp.Name, id, text)
		}
	}
	if id, text := TracepointText("tcp_bad_csum"); id != TCPReject || text != "TCP checksum wrong" {
		t.Errorf("tcp_bad_csum: %s %q", id, text)
	}
	if id, text := TracepointText("kfree_skb"); id != "" || text != "" {
		t.Errorf("kfree_skb: %s %q", id, text)
	}
}

// TestDropSites pins how a free site (before 5.17, where kfree_skb has no
// reason) names a cause: only where the site tells it apart, never a
// candidate; each entry is complete and no site both names a cause
// unconditionally and lists candidates.
func TestDropSites(t *testing.T) {
	for _, c := range catalog {
		for _, s := range c.DropSites {
			if s.Func == "" || s.What == "" || strings.Contains(s.Func, ".") || (s.WithRST && s.Candidate) {
				t.Errorf("%s: drop site %+v", c.ID, s)
			}
		}
	}
	for _, c := range []struct {
		fn    string
		rst   bool
		named ID
		cands []ID
	}{
		{"nf_hook_slow", false, FirewallDrop, nil},
		{"nf_hook_slow", true, FirewallDrop, nil},
		{"tcp_v4_rcv", true, NoListener, nil},
		{"tcp_v6_rcv.cold", true, NoListener, nil},
		{"tcp_v4_rcv", false, "", []ID{TCPReject, PAWSReject, BPFDrop}},
		{"ip_rcv_finish_core.constprop.0", false, "", []ID{RPFilterDrop}},
		{"ip6_rcv_core", false, "", []ID{IPv6Disabled}},
		{"__netif_receive_skb_core", false, "", []ID{BPFDrop}},
		{"tcp_conn_request", false, "", nil},
	} {
		named, site, cands := ForDropSite(c.fn, c.rst)
		var got []ID
		for _, m := range cands {
			got = append(got, m.Cause)
		}
		if named != c.named || fmt.Sprint(got) != fmt.Sprint(c.cands) {
			t.Errorf("ForDropSite(%s, rst=%v) = %q %v, want %q %v", c.fn, c.rst, named, got, c.named, c.cands)
		}
		if named != "" && site.What == "" {
			t.Errorf("%s: named %s without a text", c.fn, named)
		}
	}
	funcs := DropSiteFuncs()
	if len(funcs) != 6 || !sort.StringsAreSorted(funcs) {
		t.Errorf("DropSiteFuncs: %v", funcs)
	}
}

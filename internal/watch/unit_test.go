package watch

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/counters"
)

func TestAttribute(t *testing.T) {
	now := time.Unix(1000, 0)
	ra := Route{Family: 6, Table: 254, Type: rtnUnicast, Protocol: protoRA, Ifindex: 2, HasExpiry: true, ExpiresAt: now.Add(time.Hour)}
	st := Route{Family: 4, Table: 254, Type: rtnUnicast, Protocol: 4, Ifindex: 2}
	up := Link{Index: 2, Up: true, Carrier: true}
	recent := func(k hapKind, idx, fam int) []happening {
		return []happening{{At: now, Kind: k, Ifindex: idx, Family: fam}}
	}
	for _, tc := range []struct {
		name string
		in   lossInput
		want Reason
	}{
		{"process", lossInput{Route: st, PortID: 42, Process: "ip[42]", Link: up, LinkKnown: true}, ReasonDeletedByProcess},
		{"program", lossInput{Route: st, PortID: 42, Link: up, LinkKnown: true}, ReasonDeletedByProgram},
		{"forwarding all", lossInput{Route: ra, Link: up, LinkKnown: true, Recent: recent(hapForwardingOn, netconfIfindexAll, 6)}, ReasonForwardingEnabled},
		{"forwarding dev", lossInput{Route: ra, Link: up, LinkKnown: true, Recent: recent(hapForwardingOn, 2, 6)}, ReasonForwardingEnabled},
		{"forwarding other dev", lossInput{Route: ra, Link: up, LinkKnown: true, Recent: recent(hapForwardingOn, 3, 6)}, ReasonUnknown},
		{"forwarding v4 not RA", lossInput{Route: st, Link: up, LinkKnown: true, Recent: recent(hapForwardingOn, netconfIfindexAll, 4)}, ReasonUnknown},
		{"link deleted", lossInput{Route: st}, ReasonLinkDeleted},
		{"link down now", lossInput{Route: st, Link: Link{Index: 2}, LinkKnown: true}, ReasonLinkDown},
		{"link down event", lossInput{Route: st, Link: up, LinkKnown: true, Recent: recent(hapLinkDown, 2, 0)}, ReasonLinkDown},
		{"carrier", lossInput{Route: st, Link: Link{Index: 2, Up: true}, LinkKnown: true}, ReasonCarrierLost},
		{"address", lossInput{Route: st, Link: up, LinkKnown: true, Recent: recent(hapAddrRemoved, 2, 4)}, ReasonAddressRemoved},
		{"address other dev", lossInput{Route: st, Link: up, LinkKnown: true, Recent: recent(hapAddrRemoved, 3, 4)}, ReasonUnknown},
		{"expired", lossInput{Route: Route{Family: 6, Type: rtnUnicast, Ifindex: 2, HasExpiry: true, ExpiresAt: now}, Link: up, LinkKnown: true}, ReasonRAExpired},
		{"not yet expired", lossInput{Route: ra, Link: up, LinkKnown: true}, ReasonUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Now = now
			if got, _ := attribute(tc.in); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestReconcile(t *testing.T) {
	now := time.Unix(1000, 0)
	no := func(int, int) bool { return false }
	a := Route{Family: 4, Table: 254, Type: rtnUnicast, Gateway: netip.MustParseAddr("10.0.0.1"), Ifindex: 2}
	b := Route{Family: 6, Table: 254, Type: rtnUnicast, Gateway: netip.MustParseAddr("fe80::1"), Ifindex: 2, HasExpiry: true, ExpiresAt: now.Add(time.Second)}
	j := judged{}
	lost, added := j.reconcile(routeSet{a.key(): a, b.key(): b}, now, no)
	if len(lost) != 0 || len(added) != 2 {
		t.Fatalf("initial: lost %v added %v", lost, added)
	}
	// Same set, later than b's expiry: b is lost in place, once.
	later := now.Add(2 * time.Second)
	lost, added = j.reconcile(routeSet{a.key(): a, b.key(): b}, later, no)
	if len(lost) != 1 || lost[0].Family != 6 || len(added) != 0 {
		t.Fatalf("expiry: lost %v added %v", lost, added)
	}
	lost, _ = j.reconcile(routeSet{a.key(): a, b.key(): b}, later, no)
	if len(lost) != 0 {
		t.Fatalf("expired route lost twice: %v", lost)
	}
	// a deleted; linkdown ignored makes a new linkdown route unusable.
	c := a
	c.Metric, c.Flags = 5, rtnhLinkdown
	lost, added = j.reconcile(routeSet{c.key(): c}, later, func(int, int) bool { return true })
	if len(lost) != 1 || lost[0].key() != a.key() || len(added) != 0 {
		t.Fatalf("delete: lost %v added %v", lost, added)
	}
	if pres := (routeSet{c.key(): c}).present(later, func(int, int) bool { return true }); pres[famTable{4, 254}] {
		t.Fatal("a link-down route counts as present where linkdown routes are ignored")
	}
}

func TestAttributeDrops(t *testing.T) {
	got := attributeDrops(counters.Delta{
		"TcpExtListenDrops": 20, "TcpExtListenOverflows": 5, "TcpExtTCPReqQFullDrop": 3,
		"Ip6OutNoRoutes": 10, "IpOutNoRoutes": 4, "TcpExtIPReversePathFilter": 2,
	})
	want := map[causes.ID]uint64{causes.AcceptQueueOverflow: 5, causes.SynQueueOverflow: 3, causes.NoRouteToPeer: 12, causes.RPFilterDrop: 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	got = attributeDrops(counters.Delta{"TcpExtListenDrops": 7, "TcpExtListenOverflows": 2})
	if got[causes.UnexplainedDrops] != 5 || got[causes.AcceptQueueOverflow] != 2 {
		t.Fatalf("got %v", got)
	}
	for id := range got {
		if _, ok := causes.Lookup(id); !ok {
			t.Errorf("%s is not a catalog cause", id)
		}
	}
}

func TestParseNetlinkTable(t *testing.T) {
	tab := "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n" +
		"0000000000000000 0   4169485011 00000000 0        0        0     2        0        123456\n" +
		"0000000000000000 4   77         00000000 0        0        0     2        0        999\n"
	if ino, ok := parseNetlinkTable([]byte(tab), 4169485011); !ok || ino != 123456 {
		t.Fatalf("got %d %v", ino, ok)
	}
	if _, ok := parseNetlinkTable([]byte(tab), 77); ok {
		t.Fatal("matched a socket of another netlink protocol")
	}
}

// TestListenerCardinality: 10,000 listeners, hostile-looking or not, give
// at most MaxListeners+1 series per metric.
func TestListenerCardinality(t *testing.T) {
	m := NewMetrics()
	var ls []listenerSample
	for i := 0; i < 10000; i++ {
		ls = append(ls, listenerSample{name: fmt.Sprintf("10.0.%d.%d:80", i/256, i%256), drops: float64(i % 97), accept: 1, limit: 128})
	}
	m.setListeners("ns\x1b[2J", ls)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"synscope_listener_accept_queue": MaxListeners + 1, "synscope_listener_backlog": MaxListeners + 1,
		"synscope_listener_drops_total": MaxListeners, "synscope_listener_other_drops": 1}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "synscope_listener_") && len(mf.GetMetric()) != want[mf.GetName()] {
			t.Errorf("%s has %d series, want %d", mf.GetName(), len(mf.GetMetric()), want[mf.GetName()])
		}
	}
	var other float64
	for _, l := range m.listeners["ns\x1b[2J"] {
		if l.name == OtherListener {
			other = l.accept
		}
	}
	if other != 10000-MaxListeners {
		t.Errorf("other aggregates %v accept-queue entries, want %d", other, 10000-MaxListeners)
	}
}

// TestListenerOtherDrops (review finding 12): the drops of the listeners
// beyond the top MaxListeners are summed into a gauge, which may go down
// when its members change; no counter series carries them.
func TestListenerOtherDrops(t *testing.T) {
	m := NewMetrics()
	mk := func(extra float64) []listenerSample {
		var ls []listenerSample
		for i := 0; i < MaxListeners; i++ {
			ls = append(ls, listenerSample{name: fmt.Sprintf("10.0.0.%d:80", i), drops: 1000})
		}
		// Beyond the top: 7 + 5 + extra.
		ls = append(ls, listenerSample{name: "10.0.1.1:80", drops: 7}, listenerSample{name: "10.0.1.2:80", drops: 5},
			listenerSample{name: "10.0.1.3:80", drops: extra})
		return ls
	}
	read := func() (other float64, counterOther bool, mtype string) {
		mfs, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				for _, lp := range mt.GetLabel() {
					if lp.GetName() == "listener" && lp.GetValue() == OtherListener && mf.GetName() == "synscope_listener_drops_total" {
						counterOther = true
					}
				}
				if mf.GetName() == "synscope_listener_other_drops" {
					other, mtype = metricValue(mt), mf.GetType().String()
				}
			}
		}
		return other, counterOther, mtype
	}
	m.setListeners("n", mk(30))
	if v, c, typ := read(); v != 42 || c || typ != "GAUGE" {
		t.Fatalf("other drops %v (%s), other in the counter %v; want 42 as a GAUGE, not in the counter", v, typ, c)
	}
	// The listener with 30 drops closed: the sum goes down, as a gauge may.
	m.setListeners("n", mk(0))
	if v, _, _ := read(); v != 12 {
		t.Fatalf("other drops %v after a member left, want 12", v)
	}
}

// TestHandlerReadOnly: only GET on /metrics, / and /healthz.
func TestHandlerReadOnly(t *testing.T) {
	m := NewMetrics()
	m.initNetns("x", false)
	srv := httptest.NewServer(Handler(m))
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/metrics", 200}, {"GET", "/healthz", 200}, {"GET", "/", 200},
		{"POST", "/metrics", 405}, {"PUT", "/", 405}, {"DELETE", "/healthz", 405}, {"GET", "/debug/pprof/", 404},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for _, r := range Reasons {
		want := fmt.Sprintf(`synscope_default_route_losses_total{family="ipv6",netns="x",reason="%s"} 0`, r)
		if !strings.Contains(body, want) {
			t.Errorf("missing initialised series %s", want)
		}
	}
}

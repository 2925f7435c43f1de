package probe

import (
	"net/netip"
	"testing"

	"github.com/synscope/synscope/internal/routes"
	"golang.org/x/sys/unix"
)

func TestRuleSelects(t *testing.T) {
	f := flowTuple{src: netip.MustParseAddr("10.0.0.2"), dst: netip.MustParseAddr("10.9.0.1"), dport: 8448, uid: 1000}
	for _, c := range []struct {
		name string
		r    routes.Rule
		want bool
	}{
		{"all", routes.Rule{}, true},
		{"dport", routes.Rule{IPProto: 6, HasDport: true, Dport: [2]uint16{8448, 8448}}, true},
		{"other dport", routes.Rule{IPProto: 6, HasDport: true, Dport: [2]uint16{8449, 9000}}, false},
		{"udp", routes.Rule{IPProto: 17}, false},
		{"uid in", routes.Rule{HasUID: true, UIDStart: 1000, UIDEnd: 1000}, true},
		{"uid out", routes.Rule{HasUID: true, UIDStart: 0, UIDEnd: 999}, false},
		{"iif lo", routes.Rule{IifName: "lo"}, true},
		{"iif eth0", routes.Rule{IifName: "eth0"}, false},
		{"to other", routes.Rule{Dst: netip.MustParsePrefix("10.8.0.0/16")}, false},
		{"not to other", routes.Rule{Dst: netip.MustParsePrefix("10.8.0.0/16"), Invert: true}, true},
		{"sport undecided", routes.Rule{HasSport: true, Sport: [2]uint16{1, 65535}}, false},
		{"fwmark", routes.Rule{HasMark: true, Mark: 1}, false},
	} {
		if got := ruleSelects(c.r, f); got != c.want {
			t.Errorf("%s: got %v", c.name, got)
		}
	}
}

func TestFindBlocker(t *testing.T) {
	f := flowTuple{dst: netip.MustParseAddr("10.9.0.1"), dport: 8448}
	st := &routes.State{
		Rules: []routes.Rule{
			{Family: unix.AF_INET, Priority: 0, Table: 255, Action: "lookup"},
			{Family: unix.AF_INET, Priority: 100, Action: "prohibit", IPProto: 6, HasDport: true, Dport: [2]uint16{8448, 8448}, Text: "100: from all ipproto tcp dport 8448 prohibit"},
			{Family: unix.AF_INET, Priority: 32766, Table: 254, Action: "lookup"},
		},
		Routes: []routes.Route{{Family: unix.AF_INET, Table: 254, Type: "unicast"}},
	}
	b, ok := findBlocker(st, unix.AF_INET, f)
	if !ok || b.Kind != "rule" || b.Priority != 100 {
		t.Fatalf("got %+v %v", b, ok)
	}
	// Another port: the main table's default route serves it.
	f.dport = 80
	if b, ok := findBlocker(st, unix.AF_INET, f); ok {
		t.Fatalf("port 80 blocked by %+v", b)
	}
	// A goto past the rule skips it.
	f.dport = 8448
	st.Rules = append(st.Rules, routes.Rule{Family: unix.AF_INET, Priority: 50, Action: "goto", Goto: 200})
	if b, ok := findBlocker(st, unix.AF_INET, f); ok {
		t.Fatalf("goto skipped nothing: %+v", b)
	}
	// A blackhole route in main, more specific than the default.
	st.Rules = st.Rules[:3]
	st.Rules[1].Action = "lookup"
	st.Rules[1].Table = 254
	st.Routes = append(st.Routes, routes.Route{Family: unix.AF_INET, Table: 254, Type: "blackhole", Dst: netip.MustParsePrefix("10.9.0.0/16")})
	b, ok = findBlocker(st, unix.AF_INET, f)
	if !ok || b.Kind != "route" || b.RouteType != "blackhole" || b.routeDst != "10.9.0.0/16" {
		t.Fatalf("got %+v %v", b, ok)
	}
}

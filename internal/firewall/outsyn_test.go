package firewall

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/google/nftables/expr"
)

// TestDroppersOutSYN: a client's own SYN is judged in output/postrouting as
// a SYN in conntrack state new; input rules and SYN-ACK rules do not hit it.
func TestDroppersOutSYN(t *testing.T) {
	out := Packet{Dir: OutSYN, Local: netip.MustParseAddr("10.0.0.2"), Remote: netip.MustParseAddr("10.0.1.2"), RemotePort: 8080, Oif: "eth0"}
	synDrop := cat(tcpDport(8080), flags(0x12, expr.CmpOpEq, 0x02), counter(0), drop)
	for _, tc := range []struct {
		name   string
		tables []rawTable
		want   []string
	}{
		{"output syn drop", []rawTable{buildTest(inet, "f", chainSpec{name: "out", hook: "output", rules: [][]expr.Any{synDrop}})}, []string{"inet/f/out/1"}},
		{"postrouting drop", []rawTable{buildTest(inet, "f", chainSpec{name: "post", hook: "postrouting", rules: [][]expr.Any{synDrop}})}, []string{"inet/f/post/1"}},
		{"input rule ignored", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{synDrop}})}, nil},
		{"syn-ack rule ignored", []rawTable{buildTest(inet, "f", chainSpec{name: "out", hook: "output", rules: [][]expr.Any{
			cat(tcpSport(8080), flags(0x12, expr.CmpOpEq, 0x12), drop)}})}, nil},
		{"established accept does not pass a new syn", []rawTable{buildTest(inet, "f", chainSpec{name: "out", hook: "output", policyDrop: true, rules: [][]expr.Any{
			cat(ctState(6, expr.CmpOpNeq), accept)}})}, []string{"inet/f/out/0"}},
		{"new accept passes", []rawTable{buildTest(inet, "f", chainSpec{name: "out", hook: "output", policyDrop: true, rules: [][]expr.Any{
			cat(ctState(8, expr.CmpOpNeq), accept)}})}, nil},
		{"other port", []rawTable{buildTest(inet, "f", chainSpec{name: "out", hook: "output", rules: [][]expr.Any{cat(tcpDport(22), drop)}})}, nil},
	} {
		if got := droppers(build(tc.tables), out); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if OutSYN.String() != "out-syn" {
		t.Fatal(OutSYN.String())
	}
}

package firewall

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// benchRuleset is ~1,000 rules of the shapes Droppers understands, spread
// over an input and an output chain plus a jump target, with a named set.
func benchRuleset() string {
	var b strings.Builder
	b.WriteString("table inet bench {\n set ports { type inet_service; flags interval; elements = { 1-99, 200-299 } }\n")
	b.WriteString(" chain input {\n  type filter hook input priority 0; policy accept;\n")
	for i := 0; i < 400; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  tcp dport %d tcp flags syn counter drop\n", 10000+i)
		case 1:
			fmt.Fprintf(&b, "  ip saddr 10.%d.0.0/16 tcp dport { %d, %d } counter reject with tcp reset\n", i%250, 20000+i, 30000+i)
		case 2:
			fmt.Fprintf(&b, "  iifname \"veth%d\" ct state new tcp dport %d-%d counter accept\n", i, 40000+i, 40010+i)
		case 3:
			fmt.Fprintf(&b, "  tcp dport @ports ip6 saddr fd00:%x::/32 counter jump sub\n", i)
		}
	}
	b.WriteString(" }\n chain sub {\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, "  tcp sport %d counter drop\n", 1024+i)
	}
	b.WriteString(" }\n chain output {\n  type filter hook output priority 0; policy accept;\n")
	for i := 0; i < 400; i++ {
		fmt.Fprintf(&b, "  tcp sport %d tcp flags syn,ack / syn,ack counter drop\n", 10000+i)
	}
	b.WriteString(" }\n}\n")
	return b.String()
}

func BenchmarkInspect(b *testing.B) {
	ns := kernelNS(b, benchRuleset())
	rs, err := Inspect(ns.FD())
	if err != nil {
		b.Fatalf("Inspect: %v", err)
	}
	if len(rs.Rules) != 1000 {
		b.Fatalf("got %d rules, want 1000", len(rs.Rules))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Inspect(ns.FD()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDroppers(b *testing.B) {
	ns := kernelNS(b, benchRuleset())
	rs, err := Inspect(ns.FD())
	if err != nil {
		b.Fatalf("Inspect: %v", err)
	}
	p := Packet{Family: 4, Dir: In, LocalPort: 65000, Local: netip.MustParseAddr("127.0.0.1"), Remote: netip.MustParseAddr("127.0.0.1")}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rs.Droppers(p)
	}
}

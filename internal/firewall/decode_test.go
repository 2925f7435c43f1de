package firewall

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/fixcmd"
)

// The expression lists below are the ones the kernel returns for the nft
// statements in the comments (as printed by `nft --debug=netlink` 1.0.6 on
// Linux 6.18, see testdata/debug-netlink.txt).

const r1 = unix.NFT_REG_1

func ex(e ...expr.Any) []expr.Any { return e }

func metaL4(p byte) []expr.Any {
	return ex(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r1}, &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{p}})
}

func nfproto(p byte) []expr.Any {
	return ex(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: r1}, &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{p}})
}

func thLoad(off, n uint32) *expr.Payload {
	return &expr.Payload{DestRegister: r1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: n}
}

func nhLoad(off, n uint32) *expr.Payload {
	return &expr.Payload{DestRegister: r1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

func port(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

func tcpDport(p uint16) []expr.Any {
	return append(metaL4(6), thLoad(2, 2), &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: port(p)})
}

func tcpSport(p uint16) []expr.Any {
	return append(metaL4(6), thLoad(0, 2), &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: port(p)})
}

// flags loads the TCP flags byte, masks it and compares.
func flags(mask byte, op expr.CmpOp, v byte) []expr.Any {
	return ex(thLoad(13, 1),
		&expr.Bitwise{SourceRegister: r1, DestRegister: r1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		&expr.Cmp{Op: op, Register: r1, Data: []byte{v}})
}

func ctState(mask uint32, op expr.CmpOp) []expr.Any {
	return ex(&expr.Ct{Key: expr.CtKeySTATE, Register: r1},
		&expr.Bitwise{SourceRegister: r1, DestRegister: r1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: r1, Data: make([]byte, 4)})
}

func counter(p uint64) []expr.Any { return ex(&expr.Counter{Packets: p, Bytes: p * 60}) }
func verdict(k expr.VerdictKind, chain string) []expr.Any {
	return ex(&expr.Verdict{Kind: k, Chain: chain})
}

var (
	drop   = verdict(expr.VerdictDrop, "")
	accept = verdict(expr.VerdictAccept, "")
)

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func ifname(meta expr.MetaKey, data []byte) []expr.Any {
	return ex(&expr.Meta{Key: meta, Register: r1}, &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: data})
}

// portSet is how nft stores the interval set { 3000-3005, 4000 }: start
// keys and end keys one past each range, the first end marking 0.
func portSet(name string) rawSet {
	el := func(p uint16, end bool) nftables.SetElement {
		return nftables.SetElement{Key: port(p), IntervalEnd: end}
	}
	return rawSet{
		set:   &nftables.Set{Name: name, Anonymous: true, Constant: true, Interval: true},
		elems: []nftables.SetElement{el(4001, true), el(4000, false), el(3006, true), el(3000, false), el(0, true)},
	}
}

func plainSet(name string, ports ...uint16) rawSet {
	s := rawSet{set: &nftables.Set{Name: name, Anonymous: true, Constant: true}}
	for _, p := range ports {
		s.elems = append(s.elems, nftables.SetElement{Key: port(p)})
	}
	return s
}

func decodeOne(t *testing.T, fam nftables.TableFamily, e []expr.Any, sets ...rawSet) Rule {
	t.Helper()
	rs := build([]rawTable{{
		table:  &nftables.Table{Name: "t", Family: fam},
		sets:   sets,
		chains: []rawChain{{chain: &nftables.Chain{Name: "c"}, rules: []*nftables.Rule{{Handle: 7, Exprs: e}}}},
	}})
	return rs.Rules[0]
}

func TestDecodeShapes(t *testing.T) {
	inet, ip4, ip6 := nftables.TableFamilyINet, nftables.TableFamilyIPv4, nftables.TableFamilyIPv6
	setLookup := func(name string) []expr.Any {
		return ex(&expr.Lookup{SourceRegister: r1, SetName: name})
	}
	for _, tc := range []struct {
		name string
		fam  nftables.TableFamily
		e    []expr.Any
		sets []rawSet
		text string
		want Rule // only the summary fields are compared
	}{
		{"dport flags syn", inet, cat(tcpDport(8080), flags(0x02, expr.CmpOpNeq, 0), counter(3), drop), nil,
			"tcp dport 8080 tcp flags syn counter packets 3 bytes 180 drop",
			Rule{Verdict: "drop", L4Proto: "tcp", DPorts: []PortRange{{8080, 8080}}, SYNACK: true, HasCounter: true, Packets: 3, Bytes: 180}},
		{"anon set syn/fsra reject", inet, cat(metaL4(6), ex(thLoad(2, 2)), setLookup("__set0"), flags(0x17, expr.CmpOpEq, 0x02),
			ex(&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})), []rawSet{plainSet("__set0", 443, 80)},
			"tcp dport { 80, 443 } tcp flags syn / fin,syn,rst,ack reject with tcp reset",
			Rule{Verdict: "reject", L4Proto: "tcp", DPorts: []PortRange{{80, 80}, {443, 443}}, SYNOnly: true}},
		{"interval set", inet, cat(metaL4(6), ex(thLoad(2, 2)), setLookup("__set1"), drop), []rawSet{portSet("__set1")},
			"tcp dport { 3000-3005, 4000 } drop",
			Rule{Verdict: "drop", L4Proto: "tcp", DPorts: []PortRange{{3000, 3005}, {4000, 4000}}}},
		{"named set", inet, cat(metaL4(6), ex(thLoad(2, 2)), setLookup("web"), drop),
			[]rawSet{{set: &nftables.Set{Name: "web"}, elems: []nftables.SetElement{{Key: port(80)}}}},
			"tcp dport @web drop",
			Rule{Verdict: "drop", L4Proto: "tcp", DPorts: []PortRange{{80, 80}}}},
		{"cmp range syn&ack==syn", inet, cat(metaL4(6), ex(thLoad(2, 2),
			&expr.Cmp{Op: expr.CmpOpGte, Register: r1, Data: port(1000)}, &expr.Cmp{Op: expr.CmpOpLte, Register: r1, Data: port(2000)}),
			flags(0x12, expr.CmpOpEq, 0x02), drop), nil,
			"tcp dport 1000-2000 tcp flags syn / syn,ack drop",
			Rule{Verdict: "drop", L4Proto: "tcp", DPorts: []PortRange{{1000, 2000}}, SYNOnly: true}},
		{"range expr", inet, cat(metaL4(6), ex(thLoad(2, 2), &expr.Range{Op: expr.CmpOpEq, Register: r1, FromData: port(5000), ToData: port(5010)}), drop), nil,
			"tcp dport 5000-5010 drop",
			Rule{Verdict: "drop", L4Proto: "tcp", DPorts: []PortRange{{5000, 5010}}}},
		{"sport", inet, cat(tcpSport(8080), flags(0x12, expr.CmpOpEq, 0x12), drop), nil,
			"tcp sport 8080 tcp flags syn,ack / syn,ack drop",
			Rule{Verdict: "drop", L4Proto: "tcp", SPorts: []PortRange{{8080, 8080}}, SYNACK: true}},
		{"flags == syn", inet, cat(metaL4(6), ex(thLoad(13, 1), &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{2}}), drop), nil,
			"tcp flags == syn drop",
			Rule{Verdict: "drop", L4Proto: "tcp", SYNOnly: true}},
		{"ct state invalid", inet, cat(ctState(1, expr.CmpOpNeq), drop), nil,
			"ct state invalid drop", Rule{Verdict: "drop", CtStates: []string{"invalid"}}},
		{"ct state new,established", inet, cat(ctState(10, expr.CmpOpNeq), accept), nil,
			"ct state established,new accept", Rule{Verdict: "accept", CtStates: []string{"established", "new"}}},
		{"ct state != established", inet, cat(ctState(2, expr.CmpOpEq), accept), nil,
			"ct state != established accept", Rule{Verdict: "accept"}},
		{"ip saddr/8 daddr iifname eth*", inet, cat(nfproto(2), ex(nhLoad(12, 1), &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{10}},
			nhLoad(16, 4), &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{127, 0, 0, 1}}),
			ifname(expr.MetaKeyIIFNAME, []byte("eth")), drop), nil,
			`ip saddr 10.0.0.0/8 ip daddr 127.0.0.1 iifname "eth*" drop`,
			Rule{Verdict: "drop", Saddrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Daddrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, IIf: "eth*"}},
		{"ip6 saddr/10 oifname", inet, cat(nfproto(10), ex(nhLoad(8, 16),
			&expr.Bitwise{SourceRegister: r1, DestRegister: r1, Len: 16, Mask: append([]byte{0xff, 0xc0}, make([]byte, 14)...), Xor: make([]byte, 16)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: append([]byte{0xfe, 0x80}, make([]byte, 14)...)}),
			ifname(expr.MetaKeyOIFNAME, pad("lo", 16)), accept), nil,
			`ip6 saddr fe80::/10 oifname "lo" accept`,
			Rule{Verdict: "accept", Saddrs: []netip.Prefix{netip.MustParsePrefix("fe80::/10")}, OIf: "lo"}},
		{"ip protocol (ip table)", ip4, cat(ex(nhLoad(9, 1), &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{6}}), accept), nil,
			"ip protocol tcp accept", Rule{Verdict: "accept", L4Proto: "tcp"}},
		{"ip6 nexthdr (ip6 table)", ip6, cat(ex(nhLoad(6, 1), &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{17}}), accept), nil,
			"ip6 nexthdr udp accept", Rule{Verdict: "accept", L4Proto: "udp"}},
		{"meta nfproto alone", inet, cat(nfproto(10), accept), nil, "meta nfproto ipv6 accept", Rule{Verdict: "accept"}},
		{"iif index", inet, cat(ex(&expr.Meta{Key: expr.MetaKeyIIF, Register: r1}, &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: binary.NativeEndian.AppendUint32(nil, 3)}), accept), nil,
			"iif 3 accept", Rule{Verdict: "accept", IIf: "ifindex 3"}},
		{"oifname !=", inet, cat(ex(&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: r1}, &expr.Cmp{Op: expr.CmpOpNeq, Register: r1, Data: pad("lo", 16)}), accept), nil,
			`oifname != "lo" accept`, Rule{Verdict: "accept"}},
		{"jump", inet, cat(tcpDport(22), verdict(expr.VerdictJump, "ssh")), nil, "tcp dport 22 jump ssh",
			Rule{Verdict: "jump ssh", L4Proto: "tcp", DPorts: []PortRange{{22, 22}}}},
		{"goto", inet, verdict(expr.VerdictGoto, "x"), nil, "goto x", Rule{Verdict: "goto x"}},
		{"return", inet, verdict(expr.VerdictReturn, ""), nil, "return", Rule{Verdict: "return"}},
		{"reject icmpx", inet, ex(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}), nil, "reject", Rule{Verdict: "reject"}},
		{"unknown register", inet, cat(ex(&expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{1}}), drop), nil,
			"<unknown expression> drop", Rule{Verdict: "drop", Unknown: true}},
		{"meta mark", inet, cat(ex(&expr.Meta{Key: expr.MetaKeyMARK, Register: r1}, &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: binary.NativeEndian.AppendUint32(nil, 1)}), drop), nil,
			"meta mark 0x00000001 drop", Rule{Verdict: "drop"}},
		{"limit log", inet, cat(ex(&expr.Limit{Type: expr.LimitTypePkts, Rate: 10, Unit: expr.LimitTimeSecond},
			&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte("x ")}), drop), nil,
			`limit rate 10/second log prefix "x " drop`, Rule{Verdict: "drop"}},
		{"vmap", inet, cat(metaL4(6), ex(thLoad(2, 2), &expr.Lookup{SourceRegister: r1, SetName: "__map0", IsDestRegSet: true, DestRegister: 0})), nil,
			"tcp dport vmap @__map0", Rule{Verdict: "vmap", L4Proto: "tcp", Unknown: true}},
		{"xt tcp syn", ip4, cat(metaL4(6), ex(&expr.Match{Name: "tcp", Info: &xt.Tcp{SrcPorts: [2]uint16{0, 0xffff}, DstPorts: [2]uint16{8083, 8083}, FlagsMask: 0x17, FlagsCmp: 0x02}}), counter(0), drop), nil,
			"xt tcp dport 8083 xt tcp flags syn / fin,syn,rst,ack counter packets 0 bytes 0 drop",
			Rule{Verdict: "drop", L4Proto: "tcp", DPorts: []PortRange{{8083, 8083}}, SYNOnly: true, HasCounter: true}},
		{"xt tcp inverted port range", ip4, cat(metaL4(6), ex(&expr.Match{Name: "tcp", Info: &xt.Tcp{SrcPorts: [2]uint16{0, 0xffff}, DstPorts: [2]uint16{1, 1023}, InvFlags: xt.TcpInvDestPorts}}), drop), nil,
			"xt tcp dport != 1-1023 drop", Rule{Verdict: "drop", L4Proto: "tcp"}},
		{"xt conntrack invalid", ip4, cat(ex(&expr.Match{Name: "conntrack", Rev: 3, Info: &xt.ConntrackMtinfo3{ConntrackMtinfo2: xt.ConntrackMtinfo2{
			ConntrackMtinfoBase: xt.ConntrackMtinfoBase{MatchFlags: uint16(xt.ConntrackState | xt.ConntrackStateAlias)}, StateMask: 1}}}), drop), nil,
			"xt conntrack ct state invalid drop", Rule{Verdict: "drop", CtStates: []string{"invalid"}}},
		{"xt state new", ip4, cat(ex(&expr.Match{Name: "state", Info: &xt.Unknown{8, 0, 0, 0}}), accept), nil,
			"xt state ct state new accept", Rule{Verdict: "accept", CtStates: []string{"new"}}},
		{"xt unknown match, REJECT, comment", ip4, ex(&expr.Match{Name: "recent", Info: &xt.Unknown{1, 2}}, &expr.Match{Name: "comment", Info: ptr(xt.Comment("hi"))},
			&expr.Target{Name: "REJECT", Info: &xt.Unknown{}}), nil,
			`xt match "recent" comment "hi" xt target REJECT`, Rule{Verdict: "reject", Unknown: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := decodeOne(t, tc.fam, tc.e, tc.sets...)
			if r.Text != tc.text {
				t.Errorf("Text = %q\n       want %q", r.Text, tc.text)
			}
			got := summary(r)
			if !reflect.DeepEqual(got, summary(tc.want)) {
				t.Errorf("summary\n got %+v\nwant %+v", got, summary(tc.want))
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// summary keeps the fields TestDecodeShapes compares.
func summary(r Rule) Rule {
	return Rule{Verdict: r.Verdict, L4Proto: r.L4Proto, DPorts: r.DPorts, SPorts: r.SPorts, SYNOnly: r.SYNOnly, SYNACK: r.SYNACK,
		CtStates: r.CtStates, Saddrs: r.Saddrs, Daddrs: r.Daddrs, IIf: r.IIf, OIf: r.OIf, Unknown: r.Unknown,
		HasCounter: r.HasCounter, Packets: r.Packets, Bytes: r.Bytes}
}

func TestMultiport(t *testing.T) {
	// struct xt_multiport_v1 for --dports 7000,7100:7200
	b := make([]byte, 48)
	b[0], b[1] = 1, 3
	for i, p := range []uint16{7000, 7100, 7200} {
		binary.NativeEndian.PutUint16(b[2+2*i:], p)
	}
	b[32+1] = 1
	r := decodeOne(t, nftables.TableFamilyIPv4, cat(metaL4(6), ex(&expr.Match{Name: "multiport", Rev: 1, Info: ptr(xt.Unknown(b))}), drop))
	if r.Text != "xt multiport tcp dport { 7000, 7100-7200 } drop" || !reflect.DeepEqual(r.DPorts, []PortRange{{7000, 7000}, {7100, 7200}}) {
		t.Errorf("got %q %v", r.Text, r.DPorts)
	}
	// either direction
	b[0] = 2
	r = decodeOne(t, nftables.TableFamilyIPv4, cat(metaL4(6), ex(&expr.Match{Name: "multiport", Rev: 1, Info: ptr(xt.Unknown(b))}), drop))
	rs := &Ruleset{Rules: []Rule{r}}
	m := newModel(Packet{Family: 4, Dir: In, LocalPort: 7150}, false)
	if got := m.match(&rs.Rules[0]); got != yes {
		t.Errorf("either-port match on dport 7150 = %v, want yes", got)
	}
	m = newModel(Packet{Family: 4, Dir: In, LocalPort: 80}, false)
	if got := m.match(&rs.Rules[0]); got != maybe {
		t.Errorf("either-port match on dport 80, unknown sport = %v, want maybe", got)
	}
	m = newModel(Packet{Family: 4, Dir: In, LocalPort: 80, RemotePort: 50000}, false)
	if got := m.match(&rs.Rules[0]); got != no {
		t.Errorf("either-port match on 50000->80 = %v, want no", got)
	}
}

func TestSetIntervalsPipapo(t *testing.T) {
	// Concatenation-capable (pipapo) sets carry explicit key ends.
	ivs, ok := setIntervals(&nftables.Set{Interval: true}, []nftables.SetElement{{Key: port(10), KeyEnd: port(20)}, {Key: port(1), KeyEnd: port(1)}})
	if !ok || len(ivs) != 2 || string(ivs[0].lo) != string(port(1)) || string(ivs[1].hi) != string(port(20)) {
		t.Fatalf("got %v %v", ivs, ok)
	}
	if _, ok := setIntervals(&nftables.Set{Concatenation: true}, nil); ok {
		t.Fatal("concatenation sets must be reported as not understood")
	}
}

func TestPrefixHelpers(t *testing.T) {
	for _, tc := range []struct {
		mask []byte
		n    int
		ok   bool
	}{{[]byte{0xff, 0xc0, 0, 0}, 10, true}, {[]byte{0xff, 0xff, 0xff, 0xff}, 32, true}, {[]byte{0xf0, 0x0f}, 0, false}, {[]byte{0x0f}, 0, false}} {
		n, ok := prefixOnes(tc.mask)
		if n != tc.n || ok != tc.ok {
			t.Errorf("prefixOnes(%x) = %d %v", tc.mask, n, ok)
		}
	}
	p, ok := rangePrefix(interval{lo: []byte{10, 0, 0, 0}, hi: []byte{10, 255, 255, 255}})
	if !ok || p.String() != "10.0.0.0/8" {
		t.Errorf("rangePrefix = %v %v", p, ok)
	}
	if _, ok := rangePrefix(interval{lo: []byte{10, 0, 0, 1}, hi: []byte{10, 0, 0, 5}}); ok {
		t.Error("10.0.0.1-10.0.0.5 is not a prefix")
	}
}

func TestKeyDeleteCommandDiff(t *testing.T) {
	r := Rule{Family: "inet", Table: "filter", Chain: "input", Handle: 4}
	nft := fixcmd.New("nft")
	if r.Key() != "inet/filter/input/4" || r.Delete(nft).String() != "nft delete rule inet filter input handle 4" {
		t.Errorf("%q %q", r.Key(), r.Delete(nft))
	}
	odd := Rule{Family: "ip", Table: "my table", Chain: "in", Handle: 9}
	if got, want := odd.Delete(nft).String(), `printf '%s\n' '{"nftables":[{"delete":{"rule":{"chain":"in","family":"ip","handle":9,"table":"my table"}}}]}' | nft -j -f -`; got != want {
		t.Errorf("odd name:\n got %s\nwant %s", got, want)
	}
	before := &Ruleset{Rules: []Rule{
		{Family: "inet", Table: "f", Chain: "c", Handle: 1, HasCounter: true, Packets: 5},
		{Family: "inet", Table: "f", Chain: "c", Handle: 2, HasCounter: true, Packets: 7},
		{Family: "inet", Table: "f", Chain: "c", Handle: 3, HasCounter: true, Packets: 9},
	}}
	after := &Ruleset{Rules: []Rule{
		{Family: "inet", Table: "f", Chain: "c", Handle: 1, HasCounter: true, Packets: 17},
		{Family: "inet", Table: "f", Chain: "c", Handle: 2, HasCounter: true, Packets: 7},
		{Family: "inet", Table: "f", Chain: "c", Handle: 3, HasCounter: true, Packets: 2}, // reset
		{Family: "inet", Table: "f", Chain: "c", Handle: 4, HasCounter: true, Packets: 3}, // new
		{Family: "inet", Table: "f", Chain: "c", Handle: 5, Packets: 3},                   // no counter
	}}
	want := map[string]uint64{"inet/f/c/1": 12, "inet/f/c/3": 2, "inet/f/c/4": 3}
	if got := Diff(before, after); !reflect.DeepEqual(got, want) {
		t.Errorf("Diff = %v, want %v", got, want)
	}
	if got := Diff(nil, nil); len(got) != 0 {
		t.Errorf("Diff(nil, nil) = %v", got)
	}
}

func TestTextHidesOnlyDependencies(t *testing.T) {
	// "meta l4proto tcp ct state new tcp dport 22" keeps the l4proto match:
	// it is not directly followed by the tcp header match it guards.
	r := decodeOne(t, nftables.TableFamilyIPv4, cat(metaL4(6), ctState(8, expr.CmpOpNeq), ex(thLoad(2, 2), &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: port(22)}), accept))
	if !strings.HasPrefix(r.Text, "meta l4proto tcp ct state new tcp dport 22") {
		t.Errorf("Text = %q", r.Text)
	}
}

func TestPlain(t *testing.T) {
	r := decodeOne(t, nftables.TableFamilyINet, cat(tcpDport(8080), flags(0x02, expr.CmpOpNeq, 0), counter(12), drop))
	if r.Plain() != "tcp dport 8080 tcp flags syn drop" || r.Text != "tcp dport 8080 tcp flags syn counter packets 12 bytes 720 drop" {
		t.Errorf("Plain %q Text %q", r.Plain(), r.Text)
	}
	if p := (Rule{Text: "policy drop"}).Plain(); p != "policy drop" {
		t.Errorf("pseudo-rule Plain %q", p)
	}
}

// FuzzDecode feeds odd register contents through decoding, rendering and
// evaluation: whatever the kernel returns must not panic.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(2), uint8(2), []byte{0x1f, 0x90}, []byte{}, uint8(0))
	f.Add(uint8(13), uint8(1), []byte{0x02}, []byte{0x17}, uint8(1))
	f.Add(uint8(12), uint8(4), []byte{10}, []byte{0xff, 0, 0, 0}, uint8(2))
	f.Add(uint8(0), uint8(0), []byte{}, []byte{}, uint8(3))
	f.Fuzz(func(t *testing.T, off, n uint8, data, mask []byte, sel uint8) {
		var load expr.Any
		switch sel % 4 {
		case 0:
			load = thLoad(uint32(off), uint32(n))
		case 1:
			load = &expr.Ct{Key: expr.CtKeySTATE, Register: r1}
		case 2:
			load = nhLoad(uint32(off), uint32(n))
		default:
			load = &expr.Meta{Key: expr.MetaKey(off), Register: r1}
		}
		e := cat(nfproto(2), metaL4(6), ex(load))
		if len(mask) > 0 {
			e = append(e, &expr.Bitwise{SourceRegister: r1, DestRegister: r1, Len: uint32(len(mask)), Mask: mask, Xor: mask[:len(mask)/2]})
		}
		e = append(e, &expr.Cmp{Op: expr.CmpOp(sel % 6), Register: r1, Data: data},
			&expr.Range{Register: r1, FromData: data, ToData: mask},
			&expr.Lookup{SourceRegister: r1, SetName: "s"})
		e = append(e, drop...)
		set := rawSet{set: &nftables.Set{Name: "s", Anonymous: true, Interval: sel%2 == 0},
			elems: []nftables.SetElement{{Key: data}, {Key: mask, IntervalEnd: true}}}
		rs := build([]rawTable{{table: &nftables.Table{Name: "t", Family: nftables.TableFamilyINet}, sets: []rawSet{set},
			chains: []rawChain{{chain: &nftables.Chain{Name: "c", Hooknum: nftables.ChainHookInput}, rules: []*nftables.Rule{{Handle: 1, Exprs: e}}}}}})
		_ = rs.Rules[0].Text
		rs.Droppers(syn)
		rs.Droppers(sack)
	})
}

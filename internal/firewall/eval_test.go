package firewall

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/fixcmd"
)

// chainSpec describes a chain for buildTest; hook "" makes a regular chain.
type chainSpec struct {
	name, hook, typ string
	prio            int
	policyDrop      bool
	rules           [][]expr.Any
}

var hookNums = map[string]nftables.ChainHook{"prerouting": 0, "input": 1, "forward": 2, "output": 3, "postrouting": 4, "ingress": 0, "egress": 1}

// buildTest builds a one-table ruleset; rule handles are 1, 2, ... in order.
func buildTest(fam nftables.TableFamily, table string, chains ...chainSpec) rawTable {
	rt := rawTable{table: &nftables.Table{Name: table, Family: fam}}
	h := uint64(0)
	for _, cs := range chains {
		c := &nftables.Chain{Name: cs.name, Type: nftables.ChainType(cs.typ)}
		if cs.hook != "" {
			hn := hookNums[cs.hook]
			prio := nftables.ChainPriority(cs.prio)
			pol := nftables.ChainPolicyAccept
			if cs.policyDrop {
				pol = nftables.ChainPolicyDrop
			}
			c.Hooknum, c.Priority, c.Policy = &hn, &prio, &pol
		}
		rc := rawChain{chain: c}
		for _, e := range cs.rules {
			h++
			rc.rules = append(rc.rules, &nftables.Rule{Handle: h, Exprs: e})
		}
		rt.chains = append(rt.chains, rc)
	}
	return rt
}

func droppers(rs *Ruleset, p Packet) []string {
	var out []string
	for _, r := range rs.Droppers(p) {
		out = append(out, r.Key())
	}
	return out
}

var (
	lo4  = netip.MustParseAddr("127.0.0.1")
	syn  = Packet{Family: 4, Dir: In, LocalPort: 8080, Local: lo4, Remote: netip.MustParseAddr("192.0.2.9"), RemotePort: 40000, Iif: "eth0"}
	sack = Packet{Family: 4, Dir: Out, LocalPort: 8080, Local: lo4, Remote: netip.MustParseAddr("192.0.2.9"), RemotePort: 40000, Oif: "eth0"}
	inet = nftables.TableFamilyINet
)

func TestDroppers(t *testing.T) {
	synDrop := cat(tcpDport(8080), flags(0x02, expr.CmpOpNeq, 0), counter(0), drop)
	for _, tc := range []struct {
		name   string
		tables []rawTable
		p      Packet
		want   []string
	}{
		{"plain drop", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{synDrop}})},
			syn, []string{"inet/f/in/1"}},
		{"other port", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{synDrop}})},
			Packet{Family: 4, Dir: In, LocalPort: 80}, nil},
		{"syn rule does not hit syn-ack", []rawTable{buildTest(inet, "f", chainSpec{name: "out", hook: "output", rules: [][]expr.Any{
			cat(tcpSport(8080), flags(0x17, expr.CmpOpEq, 0x02), drop)}})}, sack, nil},
		{"syn-ack rule", []rawTable{buildTest(inet, "f", chainSpec{name: "out", hook: "output", rules: [][]expr.Any{
			cat(tcpSport(8080), flags(0x12, expr.CmpOpEq, 0x12), drop)}})}, sack, []string{"inet/f/out/1"}},
		{"input rule ignored for syn-ack", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{synDrop}})},
			sack, nil},
		{"accept first", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{cat(tcpDport(8080), accept), synDrop}})},
			syn, nil},
		{"accept in one base chain, drop in the next", []rawTable{
			buildTest(inet, "a", chainSpec{name: "in", hook: "input", prio: 10, rules: [][]expr.Any{synDrop}}),
			buildTest(inet, "b", chainSpec{name: "pre", hook: "prerouting", rules: [][]expr.Any{accept}}, chainSpec{name: "in", hook: "input", prio: -10, rules: [][]expr.Any{cat(ctState(1, expr.CmpOpNeq), drop)}}),
		}, syn, []string{"inet/b/in/2", "inet/a/in/1"}},
		{"uncertain accept does not stop", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{
			cat(ex(&expr.Meta{Key: expr.MetaKeyMARK, Register: r1}, &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{1, 0, 0, 0}}), accept), synDrop}})},
			syn, []string{"inet/f/in/2"}},
		{"ct state new accept is certain, invalid drop is possible", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", policyDrop: true, rules: [][]expr.Any{
			cat(ctState(1, expr.CmpOpNeq), drop), cat(ctState(8, expr.CmpOpNeq), accept), synDrop}})},
			syn, []string{"inet/f/in/1"}},
		{"established accept passes syn-ack", []rawTable{buildTest(inet, "f", chainSpec{name: "out", hook: "output", policyDrop: true, rules: [][]expr.Any{
			cat(ctState(6, expr.CmpOpNeq), accept)}})}, sack, nil},
		{"established accept does not pass syn", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", policyDrop: true, rules: [][]expr.Any{
			cat(ctState(6, expr.CmpOpNeq), accept), cat(tcpDport(22), accept)}})}, syn, []string{"inet/f/in/0"}},
		{"jump into chain with drop", []rawTable{buildTest(inet, "f",
			chainSpec{name: "in", hook: "input", rules: [][]expr.Any{cat(tcpDport(8080), verdict(expr.VerdictJump, "svc")), accept}},
			chainSpec{name: "svc", rules: [][]expr.Any{cat(ctState(1, expr.CmpOpNeq), drop), verdict(expr.VerdictReturn, ""), drop}})},
			syn, []string{"inet/f/svc/3"}},
		{"return then later drop", []rawTable{buildTest(inet, "f",
			chainSpec{name: "in", hook: "input", rules: [][]expr.Any{verdict(expr.VerdictJump, "svc"), synDrop}},
			chainSpec{name: "svc", rules: [][]expr.Any{verdict(expr.VerdictReturn, ""), drop}})},
			syn, []string{"inet/f/in/2"}},
		{"goto does not come back", []rawTable{buildTest(inet, "f",
			chainSpec{name: "in", hook: "input", policyDrop: true, rules: [][]expr.Any{verdict(expr.VerdictGoto, "svc"), synDrop}},
			chainSpec{name: "svc", rules: [][]expr.Any{cat(tcpDport(22), accept)}})},
			syn, []string{"inet/f/in/0"}},
		{"uncertain jump keeps both paths", []rawTable{buildTest(inet, "f",
			chainSpec{name: "in", hook: "input", rules: [][]expr.Any{cat(ifname(expr.MetaKeyIIFNAME, pad("eth1", 16)), verdict(expr.VerdictJump, "svc")), synDrop}},
			chainSpec{name: "svc", rules: [][]expr.Any{drop}})},
			Packet{Family: 4, Dir: In, LocalPort: 8080}, []string{"inet/f/svc/3", "inet/f/in/2"}},
		{"iifname excludes", []rawTable{buildTest(inet, "f",
			chainSpec{name: "in", hook: "input", rules: [][]expr.Any{cat(ifname(expr.MetaKeyIIFNAME, pad("eth1", 16)), drop)}})},
			syn, nil},
		{"iifname prefix", []rawTable{buildTest(inet, "f",
			chainSpec{name: "in", hook: "input", rules: [][]expr.Any{cat(ifname(expr.MetaKeyIIFNAME, []byte("eth")), drop)}})},
			syn, []string{"inet/f/in/1"}},
		{"saddr prefix", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{
			cat(nfproto(2), ex(nhLoad(12, 3), &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{198, 51, 100}}), drop),
			cat(nfproto(2), ex(nhLoad(12, 3), &expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{192, 0, 2}}), drop)}})},
			syn, []string{"inet/f/in/2"}},
		{"ip6 table ignored for v4", []rawTable{buildTest(nftables.TableFamilyIPv6, "f", chainSpec{name: "in", hook: "input", policyDrop: true})},
			syn, nil},
		{"ip table policy drop", []rawTable{buildTest(nftables.TableFamilyIPv4, "f", chainSpec{name: "in", hook: "input", policyDrop: true})},
			syn, []string{"ip/f/in/0"}},
		{"nfproto ipv6 rule skipped for v4", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{cat(nfproto(10), drop)}})},
			syn, nil},
		{"unknown drop included, certain drop stops", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{
			cat(ex(&expr.Cmp{Op: expr.CmpOpEq, Register: r1, Data: []byte{1}}), drop), synDrop, cat(tcpDport(8080), drop)}})},
			syn, []string{"inet/f/in/1", "inet/f/in/2"}},
		{"vmap included", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{
			cat(metaL4(6), ex(thLoad(2, 2), &expr.Lookup{SourceRegister: r1, SetName: "m", IsDestRegSet: true, DestRegister: 0}))}})},
			syn, []string{"inet/f/in/1"}},
		{"reject counts", []rawTable{buildTest(inet, "f", chainSpec{name: "in", hook: "input", rules: [][]expr.Any{
			cat(tcpDport(8080), ex(&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}))}})},
			syn, []string{"inet/f/in/1"}},
		{"nat chain skipped for syn-ack", []rawTable{buildTest(inet, "f", chainSpec{name: "post", hook: "postrouting", typ: "nat", rules: [][]expr.Any{drop}})},
			sack, nil},
		{"netdev ingress", []rawTable{buildTest(nftables.TableFamilyNetdev, "n", chainSpec{name: "ing", hook: "ingress", rules: [][]expr.Any{synDrop}})},
			syn, []string{"netdev/n/ing/1"}},
		{"hook order: prerouting before input despite priority", []rawTable{buildTest(inet, "f",
			chainSpec{name: "in", hook: "input", prio: -500, rules: [][]expr.Any{cat(tcpDport(8080), drop)}},
			chainSpec{name: "pre", hook: "prerouting", prio: 100, rules: [][]expr.Any{cat(ctState(1, expr.CmpOpNeq), drop)}})},
			syn, []string{"inet/f/pre/2", "inet/f/in/1"}},
		{"jump loop is bounded", []rawTable{buildTest(inet, "f",
			chainSpec{name: "in", hook: "input", rules: [][]expr.Any{verdict(expr.VerdictJump, "a")}},
			chainSpec{name: "a", rules: [][]expr.Any{cat(ifname(expr.MetaKeyIIFNAME, pad("x", 16)), verdict(expr.VerdictJump, "a")), cat(ctState(1, expr.CmpOpNeq), drop)}})},
			Packet{Family: 4, Dir: In, LocalPort: 1}, []string{"inet/f/a/3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := build(tc.tables)
			if got := droppers(rs, tc.p); !reflect.DeepEqual(got, tc.want) {
				for _, r := range rs.Rules {
					t.Logf("%s [%s] %s", r.Key(), r.Hook, r.Text)
				}
				t.Errorf("Droppers = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDroppersJumpFanOutIsLinear(t *testing.T) {
	// 12 levels, each chain jumping 20 times (uncertainly) to the next: a
	// naive walk would visit 20^12 chains.
	var chains []chainSpec
	maybeJump := func(to string) []expr.Any {
		return cat(ifname(expr.MetaKeyIIFNAME, pad("x", 16)), verdict(expr.VerdictJump, to))
	}
	for i := 0; i < 12; i++ {
		cs := chainSpec{name: string(rune('a' + i))}
		if i == 0 {
			cs.hook = "input"
		}
		for j := 0; j < 20; j++ {
			cs.rules = append(cs.rules, maybeJump(string(rune('a'+i+1))))
		}
		chains = append(chains, cs)
	}
	chains = append(chains, chainSpec{name: string(rune('a' + 12)), rules: [][]expr.Any{drop}})
	rs := build([]rawTable{buildTest(inet, "f", chains...)})
	got := droppers(rs, Packet{Family: 4, Dir: In, LocalPort: 1})
	if !reflect.DeepEqual(got, []string{"inet/f/m/241"}) {
		t.Errorf("got %v", got)
	}
}

func TestPolicyPseudoRule(t *testing.T) {
	rs := build([]rawTable{buildTest(inet, "filter", chainSpec{name: "input", hook: "input", prio: 0, policyDrop: true,
		rules: [][]expr.Any{cat(tcpDport(22), accept)}})})
	got := rs.Droppers(syn)
	if len(got) != 1 {
		t.Fatalf("got %+v", got)
	}
	p := got[0]
	if p.Handle != 0 || p.Text != "policy drop" || p.Verdict != "drop" || p.Policy != "drop" || p.Hook != "input" ||
		p.Delete(fixcmd.New("nft")).String() != "nft 'chain inet filter input { policy accept; }'" {
		t.Errorf("pseudo-rule %+v", p)
	}
}

func TestHookOfRegularChains(t *testing.T) {
	rs := build([]rawTable{buildTest(inet, "f",
		chainSpec{name: "orphan", rules: [][]expr.Any{drop}},
		chainSpec{name: "out", hook: "output", rules: [][]expr.Any{verdict(expr.VerdictJump, "a")}},
		chainSpec{name: "a", rules: [][]expr.Any{verdict(expr.VerdictGoto, "b")}},
		chainSpec{name: "b", rules: [][]expr.Any{drop}},
	)})
	want := map[string]string{"orphan": "", "out": "output", "a": "output", "b": "output"}
	for _, r := range rs.Rules {
		if r.Hook != want[r.Chain] {
			t.Errorf("%s: hook %q, want %q", r.Chain, r.Hook, want[r.Chain])
		}
	}
	if rs.Chains != 4 || rs.Tables != 1 {
		t.Errorf("counts %d %d", rs.Chains, rs.Tables)
	}
}

func TestNilSafety(t *testing.T) {
	var rs *Ruleset
	if rs.Droppers(syn) != nil {
		t.Error("nil ruleset has droppers")
	}
	if got := (&Ruleset{}).Droppers(Packet{}); got != nil {
		t.Errorf("empty ruleset: %v", got)
	}
}

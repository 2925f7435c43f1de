package firewall

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// kernelNS creates a namespace for one test, with the given nft ruleset
// loaded by the nft binary (test setup only: the package never writes).
func kernelNS(t testing.TB, ruleset string) *netns.Target {
	t.Helper()
	testnet.NeedRoot(t, "creates a network namespace and loads nftables rules into it")
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs the nft binary to set up test rules")
	}
	ns := testnet.NewNS(t, "firewall")
	if ruleset != "" {
		testnet.MustExec(t, ns, ruleset, "nft", "-f", "-")
	}
	return ns
}

const kernelRuleset = `
table inet filter {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 8080 tcp flags syn counter drop
		tcp dport 8081 counter reject with tcp reset
		tcp dport { 9000, 9002-9005 } tcp flags syn / fin,syn,rst,ack counter drop
		ip saddr 192.0.2.0/24 tcp dport 8084 counter drop
		tcp dport 8085 jump blocked
	}
	chain blocked {
		counter drop
	}
	chain output {
		type filter hook output priority 0; policy accept;
		tcp sport 8082 tcp flags syn,ack / syn,ack counter drop
	}
}
`

// nftHandles lists rule keys as `nft -j -a list ruleset` sees them.
func nftHandles(t *testing.T, ns *netns.Target) map[string]bool {
	t.Helper()
	out := testnet.MustExec(t, ns, "", "nft", "-j", "-a", "list", "ruleset")
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parse nft json: %v", err)
	}
	keys := map[string]bool{}
	for _, o := range doc.Nftables {
		raw, ok := o["rule"]
		if !ok {
			continue
		}
		var r struct {
			Family, Table, Chain string
			Handle               uint64
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("parse nft json rule: %v", err)
		}
		keys[fmt.Sprintf("%s/%s/%s/%d", r.Family, r.Table, r.Chain, r.Handle)] = true
	}
	return keys
}

func findRule(t *testing.T, rs *Ruleset, text string) Rule {
	t.Helper()
	for _, r := range rs.Rules {
		if strings.HasPrefix(r.Text, text) {
			return r
		}
	}
	var all []string
	for _, r := range rs.Rules {
		all = append(all, r.Where()+": "+r.Text)
	}
	t.Fatalf("no rule with text %q; have:\n%s", text, strings.Join(all, "\n"))
	return Rule{}
}

func keys(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.Key())
	}
	return out
}

func TestInspectKernel(t *testing.T) {
	ns := kernelNS(t, kernelRuleset)
	rs, err := Inspect(ns.FD())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if rs.Tables != 1 || rs.Chains != 3 || len(rs.Rules) != 7 {
		t.Fatalf("got %d tables, %d chains, %d rules; want 1, 3, 7", rs.Tables, rs.Chains, len(rs.Rules))
	}
	want := nftHandles(t, ns)
	for _, r := range rs.Rules {
		if !want[r.Key()] {
			t.Errorf("rule %s (%s) not in nft's listing %v", r.Key(), r.Text, want)
		}
	}

	drop := findRule(t, rs, "tcp dport 8080 tcp flags syn counter packets 0 bytes 0 drop")
	if drop.Hook != "input" || drop.Verdict != "drop" || !drop.HasCounter || drop.L4Proto != "tcp" ||
		len(drop.DPorts) != 1 || drop.DPorts[0] != (PortRange{8080, 8080}) || !drop.SYNACK || drop.SYNOnly {
		t.Errorf("8080 rule: %+v", drop)
	}
	if got, w := drop.Delete(fixcmd.New("nft")).String(), fmt.Sprintf("nft delete rule inet filter input handle %d", drop.Handle); got != w {
		t.Errorf("Delete = %q, want %q", got, w)
	}
	rej := findRule(t, rs, "tcp dport 8081 counter packets 0 bytes 0 reject with tcp reset")
	set := findRule(t, rs, "tcp dport { 9000, 9002-9005 } tcp flags syn / fin,syn,rst,ack counter")
	if !set.SYNOnly || len(set.DPorts) != 2 || set.DPorts[1] != (PortRange{9002, 9005}) {
		t.Errorf("set rule: %+v", set)
	}
	src := findRule(t, rs, "ip saddr 192.0.2.0/24 tcp dport 8084 counter")
	if len(src.Saddrs) != 1 || src.Saddrs[0] != netip.MustParsePrefix("192.0.2.0/24") {
		t.Errorf("saddr rule: %+v", src)
	}
	blocked := findRule(t, rs, "counter packets 0 bytes 0 drop")
	if blocked.Chain != "blocked" || blocked.Hook != "input" || blocked.Policy != "" {
		t.Errorf("blocked chain rule: %+v", blocked)
	}
	out := findRule(t, rs, "tcp sport 8082 tcp flags syn,ack / syn,ack counter")
	if out.Hook != "output" || !out.SYNACK || out.SYNOnly {
		t.Errorf("output rule: %+v", out)
	}

	lo := netip.MustParseAddr("127.0.0.1")
	in := func(port uint16, remote string) Packet {
		return Packet{Family: 4, Dir: In, LocalPort: port, Local: lo, Remote: netip.MustParseAddr(remote), Iif: "lo"}
	}
	for _, tc := range []struct {
		p    Packet
		want []string
	}{
		{in(8080, "127.0.0.1"), []string{drop.Key()}},
		{in(8081, "127.0.0.1"), []string{rej.Key()}},
		{in(9003, "127.0.0.1"), []string{set.Key()}},
		{in(8084, "127.0.0.1"), nil},
		{in(8084, "192.0.2.7"), []string{src.Key()}},
		{in(8085, "127.0.0.1"), []string{blocked.Key()}},
		{in(22, "127.0.0.1"), nil},
		{Packet{Family: 4, Dir: Out, LocalPort: 8082, Local: lo, Remote: lo, Oif: "lo"}, []string{out.Key()}},
		{Packet{Family: 4, Dir: Out, LocalPort: 8080, Local: lo, Remote: lo, Oif: "lo"}, nil},
	} {
		got := keys(rs.Droppers(tc.p))
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("Droppers(%v %s:%d from %s) = %v, want %v", tc.p.Dir, tc.p.Local, tc.p.LocalPort, tc.p.Remote, got, tc.want)
		}
	}
}

// dialNS connects from inside the namespace with a short timeout; the SYN is
// what matters, not whether the connection succeeds.
func dialNS(t *testing.T, ns *netns.Target, port int) error {
	t.Helper()
	var derr error
	if err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
		derr = err
		return nil
	}); err != nil {
		t.Fatalf("enter namespace: %v", err)
	}
	return derr
}

func listenNS(t *testing.T, ns *netns.Target, port int) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		return err
	}); err != nil {
		t.Fatalf("listen in namespace: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
}

var errConnRefused = syscall.ECONNREFUSED

func TestDiffKernelTraffic(t *testing.T) {
	ns := kernelNS(t, kernelRuleset)
	listenNS(t, ns, 8082)
	before, err := Inspect(ns.FD())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}

	if err := dialNS(t, ns, 8080); err == nil {
		t.Errorf("dial 8080 succeeded through a SYN drop rule")
	}
	if err := dialNS(t, ns, 8081); err == nil || !errors.Is(err, errConnRefused) {
		t.Errorf("dial 8081: %v, want connection refused (tcp reset)", err)
	}
	if err := dialNS(t, ns, 8082); err == nil {
		t.Errorf("dial 8082 succeeded through a SYN-ACK drop rule")
	}

	after, err := Inspect(ns.FD())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	d := Diff(before, after)
	for _, text := range []string{"tcp dport 8080 tcp flags syn counter", "tcp dport 8081 counter", "tcp sport 8082 tcp flags syn,ack / syn,ack counter"} {
		r := findRule(t, after, text)
		if d[r.Key()] < 1 {
			t.Errorf("rule %q (%s): counter rose by %d, want >= 1; diff %v", text, r.Where(), d[r.Key()], d)
		}
	}
	if len(d) != 3 {
		t.Errorf("diff has %d entries, want 3: %v", len(d), d)
	}
	t.Logf("counter increases: %v", d)
}

func TestInspectKernelIptablesNFT(t *testing.T) {
	ns := kernelNS(t, "")
	if _, err := exec.LookPath("iptables-nft"); err != nil {
		t.Skip("iptables-nft not installed (apt-get install iptables); skipping the xtables-expression test")
	}
	for _, args := range [][]string{
		{"-A", "INPUT", "-p", "tcp", "--dport", "8083", "--syn", "-j", "DROP"},
		{"-A", "INPUT", "-p", "tcp", "--dport", "8086", "-j", "REJECT", "--reject-with", "tcp-reset"},
		{"-A", "INPUT", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"},
		{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "7000,7100:7200", "-j", "DROP"},
		{"-A", "OUTPUT", "-p", "tcp", "--sport", "8087", "--tcp-flags", "SYN,ACK", "SYN,ACK", "-m", "comment", "--comment", "synack", "-j", "DROP"},
	} {
		testnet.MustExec(t, ns, "", "iptables-nft", args...)
	}
	rs, err := Inspect(ns.FD())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	for _, r := range rs.Rules {
		t.Logf("%s [%s] %s", r.Where(), r.Hook, r.Text)
	}
	want := nftHandles(t, ns)
	for _, r := range rs.Rules {
		if !want[r.Key()] {
			t.Errorf("rule %s not in nft's listing", r.Key())
		}
	}
	syn := findRule(t, rs, "tcp flags syn / fin,syn,rst,ack tcp dport 8083 counter")
	rej := findRule(t, rs, "tcp dport 8086 counter packets 0 bytes 0 xt target REJECT")
	inv := findRule(t, rs, "xt conntrack ct state invalid counter")
	mp := findRule(t, rs, "xt multiport tcp dport { 7000, 7100-7200 } counter")
	out := findRule(t, rs, "tcp flags syn,ack / syn,ack tcp sport 8087 comment \"synack\" counter")
	if rej.Verdict != "reject" || !syn.SYNOnly || syn.Family != "ip" || len(inv.CtStates) != 1 || inv.CtStates[0] != "invalid" {
		t.Errorf("rules: %+v\n%+v\n%+v", syn, rej, inv)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	in := func(port uint16) Packet {
		return Packet{Family: 4, Dir: In, LocalPort: port, Local: lo, Remote: lo, RemotePort: 40000, Iif: "lo"}
	}
	for _, tc := range []struct {
		p    Packet
		want []string
	}{
		{in(8083), []string{syn.Key()}}, // a certain drop ends evaluation
		{in(8086), []string{rej.Key()}},
		{in(7150), []string{inv.Key(), mp.Key()}},
		{in(22), []string{inv.Key()}},
		{Packet{Family: 4, Dir: Out, LocalPort: 8087, Local: lo, Remote: lo}, []string{out.Key()}},
		{Packet{Family: 6, Dir: In, LocalPort: 8083}, nil},
	} {
		got := keys(rs.Droppers(tc.p))
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("Droppers(%v %d fam %d) = %v, want %v", tc.p.Dir, tc.p.LocalPort, tc.p.Family, got, tc.want)
		}
	}

	before := rs
	if err := dialNS(t, ns, 8083); err == nil {
		t.Errorf("dial 8083 succeeded through an iptables SYN drop")
	}
	after, err := Inspect(ns.FD())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if d := Diff(before, after); d[syn.Key()] < 1 {
		t.Errorf("iptables rule counter did not rise: %v", d)
	}
}

func TestInspectCurrentNamespaceKernel(t *testing.T) {
	ns := kernelNS(t, "table ip t {\n chain c {\n type filter hook input priority 0; policy drop;\n }\n}\n")
	var rs *Ruleset
	if err := ns.Do(func() error {
		var err error
		rs, err = Inspect(-1)
		return err
	}); err != nil {
		t.Fatalf("Inspect(-1) inside the namespace: %v", err)
	}
	if rs.Tables != 1 || rs.Chains != 1 || len(rs.Rules) != 0 {
		t.Fatalf("got %+v", rs)
	}
	got := rs.Droppers(Packet{Family: 4, Dir: In, LocalPort: 80})
	if len(got) != 1 || got[0].Text != "policy drop" || got[0].Handle != 0 || got[0].Chain != "c" ||
		got[0].Delete(fixcmd.New("nft")).String() != "nft 'chain ip t c { policy accept; }'" {
		t.Fatalf("Droppers = %+v", got)
	}
}

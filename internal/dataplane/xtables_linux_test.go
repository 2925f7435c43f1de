package dataplane

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

func readXT(t *testing.T, ns *netns.Target) []XTRule {
	t.Helper()
	var rs []XTRule
	if err := ns.Do(func() error {
		var err error
		rs, err = ReadXTables(netns.ProcNet)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestXTablesMatchesIptablesS: the rules read through the getsockopt
// interface print as iptables-legacy -S prints them, in the same order,
// for a ruleset with user chains, negations, interfaces and REJECT.
func TestXTablesMatchesIptablesS(t *testing.T) {
	testnet.NeedRoot(t, "creates a network namespace")
	if _, err := exec.LookPath("iptables-legacy"); err != nil {
		t.Fatal("iptables-legacy is not installed (Debian package iptables; .ci/run installs it)")
	}
	ns := testnet.NewNS(t, "xt")
	if rs := readXT(t, ns); len(rs) != 0 {
		t.Fatalf("fresh namespace has legacy rules: %+v", rs)
	}
	rules := [][]string{
		{"-N", "svc"},
		{"-A", "INPUT", "-p", "tcp", "--dport", "8080", "--syn", "-j", "DROP"},
		{"-A", "INPUT", "-s", "10.1.0.0/16", "!", "-i", "eth+", "-p", "tcp", "-m", "tcp", "--sport", "1000:2000", "-j", "svc"},
		{"-A", "INPUT", "!", "-d", "192.0.2.1/32", "-p", "udp", "-j", "ACCEPT"},
		{"-A", "svc", "-p", "tcp", "!", "--dport", "22", "-m", "comment", "--comment", "no ssh", "-j", "REJECT", "--reject-with", "tcp-reset"},
		{"-A", "svc", "-j", "RETURN"},
		{"-P", "FORWARD", "DROP"},
		{"-t", "raw", "-A", "PREROUTING", "-i", "lo", "-j", "ACCEPT"},
	}
	for _, r := range rules {
		testnet.MustExec(t, ns, "", "iptables-legacy", r...)
	}
	rules6 := [][]string{
		{"-N", "svc6"},
		{"-A", "INPUT", "-s", "fd77:1::/64", "-p", "tcp", "--dport", "8080", "--syn", "-j", "DROP"},
		{"-A", "INPUT", "!", "-i", "lo", "-p", "tcp", "-g", "svc6"},
		{"-A", "svc6", "-d", "2001:db8::1/128", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"},
	}
	for _, r := range rules6 {
		testnet.MustExec(t, ns, "", "ip6tables-legacy", r...)
	}
	got := map[string][]string{}
	for _, r := range readXT(t, ns) {
		if r.Policy {
			continue
		}
		k := r.Tool() + " " + r.Table
		got[k] = append(got[k], r.Text)
	}
	for _, c := range []struct{ tool, table string }{{"iptables-legacy", "filter"}, {"iptables-legacy", "raw"}, {"ip6tables-legacy", "filter"}} {
		var want []string
		for _, l := range strings.Split(testnet.MustExec(t, ns, "", c.tool, "-t", c.table, "-S"), "\n") {
			if strings.HasPrefix(l, "-A ") {
				want = append(want, l)
			}
		}
		k := c.tool + " " + c.table
		if len(want) == 0 || strings.Join(got[k], "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", k, got[k], want)
		}
	}
	// The IPv6 SYN-drop rule matches a SYN from its prefix only, and no
	// IPv4 packet.
	for _, r := range readXT(t, ns) {
		if r.Family != 6 || r.Chain != "INPUT" || r.Num != 1 {
			continue
		}
		in := Packet{Src: netip.MustParseAddr("fd77:1::2"), Dst: netip.MustParseAddr("fd77:2::2"), Sport: 40000, Dport: 8080, Flags: 0x02}
		if yes, _ := r.Match(in); !yes {
			t.Errorf("%s does not match %+v", r.Text, in)
		}
		for _, p := range []Packet{
			{Src: netip.MustParseAddr("fd77:3::2"), Dst: in.Dst, Dport: 8080, Flags: 0x02},
			{Src: netip.MustParseAddr("10.77.1.2"), Dst: netip.MustParseAddr("10.77.2.2"), Dport: 8080, Flags: 0x02},
		} {
			if yes, maybe := r.Match(p); yes || maybe {
				t.Errorf("%s matches %+v", r.Text, p)
			}
		}
		if yes, maybe := r.Match(Packet{Dport: 8080, Flags: 0x02}); yes || !maybe {
			t.Errorf("%s with the source unknown: want maybe", r.Text)
		}
	}
}

// TestXTablesCountersAndMatch: the SYN-drop rule's counter and match.
func TestXTablesCountersAndMatch(t *testing.T) {
	testnet.NeedRoot(t, "creates a network namespace")
	ns := testnet.NewNS(t, "xtc")
	testnet.MustExec(t, ns, "", "ip", "link", "set", "lo", "up")
	testnet.MustExec(t, ns, "", "iptables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", "8080", "--syn", "-j", "DROP")
	var drop XTRule
	for _, r := range readXT(t, ns) {
		if r.Chain == "INPUT" && r.Num == 1 {
			drop = r
		}
	}
	if !drop.Drops() || drop.Packets != 0 {
		t.Fatalf("rule %+v", drop)
	}
	syn := Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Sport: 40000, Dport: 8080, Flags: 0x02}
	if yes, maybe := drop.Match(syn); !yes || maybe {
		t.Errorf("SYN to 8080: match %v maybe %v", yes, maybe)
	}
	for _, p := range []Packet{{Dport: 8081, Flags: 0x02}, {Dport: 8080, Flags: 0x12}, {Dport: 8080, Flags: 0x10}} {
		if yes, maybe := drop.Match(p); yes || maybe {
			t.Errorf("%+v: matched", p)
		}
	}
	// A SYN to 127.0.0.1:8080 from inside the namespace hits the rule.
	_, _ = testnet.Exec(ns, "", "timeout", "2", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080")
	for _, r := range readXT(t, ns) {
		if r.Key() == drop.Key() && r.Packets == 0 {
			t.Errorf("counter did not rise: %+v", r)
		}
	}
}

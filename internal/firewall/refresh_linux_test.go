package firewall

import (
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/testnet"
)

// TestRefreshKernel: while nothing is committed, Refresh re-reads only the
// chains holding a rule that can drop (not the table of accept rules
// beside them), and their counters move (a real SYN dropped between the
// reads); after a commit — a rule added — it reads everything again; a
// ruleset with no generation (built, not read) is read in full.
func TestRefreshKernel(t *testing.T) {
	ns := kernelNS(t, kernelRuleset+`
table inet accepts {
	chain input {
		type filter hook input priority 10; policy accept;
		tcp dport 22 counter accept
	}
}
`)
	rs0, err := Inspect(ns.FD())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if p, _ := rs0.Partial(); p {
		t.Fatal("Inspect's ruleset says partial")
	}
	drop := findRule(t, rs0, "tcp dport 8080 tcp flags syn counter packets 0 bytes 0 drop")
	_ = dialNS(t, ns, 8080) // the SYN (and its retransmits) meet the drop rule

	rs1, err := Refresh(ns.FD(), rs0)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	partial, n := rs1.Partial()
	if !partial || n != len(rs0.Rules)-1 {
		t.Fatalf("Refresh of an unchanged ruleset: partial %v, %d of %d rules re-read, want all but the accept table's", partial, n, len(rs0.Rules))
	}
	if len(rs1.Rules) != len(rs0.Rules) {
		t.Fatalf("%d rules after Refresh, %d before", len(rs1.Rules), len(rs0.Rules))
	}
	if d := Diff(rs0, rs1)[drop.Key()]; d == 0 {
		t.Fatalf("the drop rule's counter did not move in the refreshed ruleset: %v", Diff(rs0, rs1))
	}
	if got := findRule(t, rs1, "tcp dport 8080 tcp flags syn counter packets").Text; strings.Contains(got, "packets 0 ") {
		t.Errorf("refreshed rule text still shows the old counter: %s", got)
	}
	if findRule(t, rs0, drop.Text).Packets != drop.Packets {
		t.Error("Refresh changed the ruleset it started from")
	}

	// A drop rule added where the refresh would not look (the accepts
	// table holds no rule that can drop): only the generation tells.
	testnet.MustExec(t, ns, "", "nft", "add", "rule", "inet", "accepts", "input", "tcp", "dport", "7070", "counter", "drop")
	rs2, err := Refresh(ns.FD(), rs1)
	if err != nil {
		t.Fatalf("Refresh after a commit: %v", err)
	}
	if p, _ := rs2.Partial(); p || len(rs2.Rules) != len(rs1.Rules)+1 {
		t.Fatalf("after a rule was added: partial %v, %d rules (was %d)", p, len(rs2.Rules), len(rs1.Rules))
	}
	findRule(t, rs2, "tcp dport 7070 counter packets 0 bytes 0 drop")

	rs3, err := Refresh(ns.FD(), Build(nil))
	if err != nil {
		t.Fatalf("Refresh of a built ruleset: %v", err)
	}
	if p, _ := rs3.Partial(); p || len(rs3.Rules) != len(rs2.Rules) {
		t.Fatalf("Refresh of a ruleset with no generation: partial %v, %d rules, want all %d", p, len(rs3.Rules), len(rs2.Rules))
	}
}

// TestRefreshVolatileSetKernel: a set the packet path fills (or whose
// elements expire) changes without a commit, so Refresh reads it all.
func TestRefreshVolatileSetKernel(t *testing.T) {
	ns := kernelNS(t, `table inet vol {
	set seen { type ipv4_addr; flags dynamic, timeout; timeout 1m; }
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 8080 update @seen { ip saddr }
		ip saddr @seen tcp dport 8081 counter drop
	}
}
`)
	rs0, err := Inspect(ns.FD())
	if err != nil {
		t.Fatal(err)
	}
	rs1, err := Refresh(ns.FD(), rs0)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := rs1.Partial(); p {
		t.Fatal("Refresh trusted the generation with a dynamic set in the ruleset")
	}
}

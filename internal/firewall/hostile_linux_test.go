package firewall

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/synscope/synscope/internal/safetext"
	"github.com/synscope/synscope/internal/testnet"
)

// TestHostileNamesDeleteCommand: a container names its nftables table and
// chain with shell metacharacters, quotes and escape bytes (the kernel
// takes any bytes; nft's command line cannot even spell them). The printed
// delete command, run by sh, removes exactly that rule and runs nothing
// else; the rule's text shows no control byte.
func TestHostileNamesDeleteCommand(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("needs the nft binary, which .ci/run installs")
	}
	names := []struct{ table, chain string }{
		{"t$(touch p)", "c;touch q"},
		{"\x1b[2J\x1b[31mFAKE-OK", "c`touch r`"},
		{`q"uo'te`, "|tee s>"},
		{"filter", "input"}, // a plain one, through the classic command line
	}
	for _, n := range names {
		ns := testnet.NewNS(t, "fw-hostile")
		h, err := ns.Handle()
		if err != nil {
			t.Fatal(err)
		}
		c, err := nftables.New(nftables.WithNetNSFd(int(h)))
		if err != nil {
			t.Fatal(err)
		}
		tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: n.table})
		pol := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: n.chain, Table: tbl, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}})
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
		if err := c.Flush(); err != nil {
			t.Fatalf("%q/%q: creating rules: %v", n.table, n.chain, err)
		}
		rs, err := Inspect(ns.FD())
		if err != nil {
			t.Fatal(err)
		}
		if len(rs.Rules) != 2 {
			t.Fatalf("%q: %d rules, want 2", n.table, len(rs.Rules))
		}
		drop := rs.Rules[0]
		if drop.Verdict != "drop" {
			t.Fatalf("first rule %+v", drop)
		}
		line := drop.Delete(ns.Command("nft")).String()
		if !safetext.Safe(line) || strings.ContainsAny(line, "\n\r") {
			t.Errorf("printed command %q holds bytes a terminal acts on", line)
		}
		dir := t.TempDir()
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%s ran something: %v appeared", line, entries)
		}
		after, err := Inspect(ns.FD())
		if err != nil {
			t.Fatal(err)
		}
		if len(after.Rules) != 1 || after.Rules[0].Verdict != "accept" {
			t.Fatalf("%s: left %+v, want only the accept rule", line, after.Rules)
		}
		t.Logf("ok: %s", line)
	}
}

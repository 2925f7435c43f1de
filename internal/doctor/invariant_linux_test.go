package doctor

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/collect"
	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
)

func TestMain(m *testing.M) {
	// lab.Up re-executes the test binary as listener/client agents.
	lab.MaybeRunAgent()
	os.Exit(m.Run())
}

// labUp brings up a lab scenario for a root test under a prefix unique to
// the process and tag, torn down when the test ends; it skips without root.
func labUp(t *testing.T, scenario, tag string) (context.Context, *lab.Env) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds a lab in network namespaces")
	}
	prefix := fmt.Sprintf("d%d%s", os.Getpid()%100000, tag)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	env, err := lab.Up(ctx, scenario, lab.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Down(prefix) })
	return ctx, env
}

// dropSYNs adds, in the server's namespace, an nftables input rule that
// drops TCP to port 8080 (table inet synscope-invariant).
func dropSYNs(t *testing.T, srv *netns.Target) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(srv.FD()))
	if err != nil {
		t.Fatal(err)
	}
	hook, prio, pol := nftables.ChainHookInput, nftables.ChainPriorityFilter, nftables.ChainPolicyAccept
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "synscope-invariant"})
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: tbl, Type: nftables.ChainTypeFilter, Hooknum: hook, Priority: prio, Policy: &pol})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: append(append([]expr.Any{}, tcpDport8080...), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestInvariantLab builds, for real, a fault doctor cannot see: SYNs to
// the lab's listener dropped by an nftables rule while doctor's firewall
// source is switched off. Doctor must exit 1 with a finding that the
// SYNs went unanswered, nothing explained them and the firewall was not
// checked. Controls: the same lab without the rule is healthy with the
// same source off, and with the source on the rule is named.
func TestInvariantLab(t *testing.T) {
	ctx, env := labUp(t, "healthy", "inv")
	off := []string{collect.Firewall}
	diagnose := func(disabled []string) *report.Report {
		t.Helper()
		rep, err := Run(ctx, Options{Netns: env.Server, Window: 3 * time.Second, Ports: []uint16{env.Port}, disabled: disabled})
		if err != nil {
			t.Fatal(err)
		}
		rep.Sort()
		return rep
	}
	if rep := diagnose(off); rep.ExitCode() != report.ExitHealthy {
		t.Fatalf("healthy lab with the firewall source off: exit %d, %+v", rep.ExitCode(), rep.Findings)
	}

	srv, err := netns.Open(env.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dropSYNs(t, srv)

	rep := diagnose(off)
	if rep.ExitCode() != report.ExitProblems || len(rep.Findings) == 0 {
		t.Fatalf("SYNs dropped by a rule doctor cannot see: exit %d, findings %+v", rep.ExitCode(), rep.Findings)
	}
	top := rep.Findings[0]
	all := evidenceText(top) + " | " + top.Fix
	if top.Cause != causes.UnexplainedDrops || top.Severity != report.Critical || top.Confidence != report.Possible {
		t.Fatalf("top finding %s/%s/%s: %s", top.Cause, top.Severity, top.Confidence, all)
	}
	for _, want := range []string{"got neither a SYN-ACK nor a RST", env.ClientV4.String(), "no check confirmed a cause",
		"not checked: firewall (disabled)", "synscope trace --netns " + env.Server + " --port 8080"} {
		if !strings.Contains(all, want) {
			t.Errorf("finding lacks %q: %s", want, all)
		}
	}
	listed := false
	for _, c := range rep.Checks {
		if c.Name == collect.Firewall && c.Status == report.Skipped && c.Detail == "disabled" {
			listed = true
		}
	}
	if !listed {
		t.Errorf("the firewall source is not listed as not checked: %+v", rep.Checks)
	}

	// With the source on, the same fault is named: the finding above was
	// the invariant, not another cause.
	rep = diagnose(nil)
	if len(rep.Findings) == 0 || rep.Findings[0].Cause != causes.FirewallDrop {
		t.Fatalf("firewall source on: %+v", rep.Findings)
	}
}

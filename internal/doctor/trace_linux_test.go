package doctor

import (
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/report"
)

// TestKernelVerdictLab: on the lab's firewall-drop-syn scenario doctor
// runs the trace engine through its window, and the firewall finding
// carries the kernel's own drop reason, confirmed. With the source off
// (--no-trace) the trace check is listed as not checked and the finding
// has no kernel line.
func TestKernelVerdictLab(t *testing.T) {
	ctx, env := labUp(t, "firewall-drop-syn", "ktr")
	diagnose := func(noTrace bool) *report.Report {
		t.Helper()
		rep, err := Run(ctx, Options{Netns: env.Server, Window: 4 * time.Second, Ports: []uint16{env.Port}, NoTrace: noTrace})
		if err != nil {
			t.Fatal(err)
		}
		rep.Sort()
		return rep
	}
	check := func(rep *report.Report) report.Check {
		for _, c := range rep.Checks {
			if c.Name == sourceTrace {
				return c
			}
		}
		t.Fatalf("no trace check: %+v", rep.Checks)
		return report.Check{}
	}

	rep := diagnose(false)
	if c := check(rep); c.Status != report.Ran {
		t.Fatalf("trace check %s: %s", c.Status, c.Detail)
	}
	if rep.ExitCode() != report.ExitProblems || len(rep.Findings) == 0 {
		t.Fatalf("exit %d, %+v", rep.ExitCode(), rep.Findings)
	}
	top := rep.Findings[0]
	txt := evidenceText(top)
	if top.Cause != causes.FirewallDrop || top.Confidence != report.Confirmed {
		t.Fatalf("top %s/%s: %s", top.Cause, top.Confidence, txt)
	}
	for _, want := range []string{"[trace] the kernel named", "handshakes firewall-drop", env.ClientV4.String(), "NETFILTER_DROP"} {
		if !strings.Contains(txt, want) {
			t.Errorf("no %q in the finding: %s", want, txt)
		}
	}

	rep = diagnose(true)
	if c := check(rep); c.Status != report.Skipped || c.Detail != "disabled by --no-trace" {
		t.Fatalf("trace with --no-trace: %s %q", c.Status, c.Detail)
	}
	if len(rep.Findings) == 0 || rep.Findings[0].Cause != causes.FirewallDrop || strings.Contains(evidenceText(rep.Findings[0]), "[trace]") {
		t.Fatalf("--no-trace: %+v", rep.Findings)
	}
}

package doctor

import (
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/trace"
)

func caseOf(e *Evidence, id causes.ID) {
	for _, c := range causeCases {
		if c.cause == id {
			c.mutate(e)
			return
		}
	}
}

// A finding whose cause the kernel named in the window gets the kernel's
// evidence line and is confirmed by it.
func TestKernelConfirmsFinding(t *testing.T) {
	e := server()
	caseOf(e, causes.SynackEgressDrop)
	if top := Diagnose(e)[0]; top.Cause != causes.SynackEgressDrop || top.Confidence == report.Confirmed {
		t.Fatalf("without the kernel's word: %s/%s", top.Cause, top.Confidence)
	}
	e.Trace = []trace.Outcome{{Client: "10.77.1.2:40000", Server: "10.77.2.2:8080", Fate: trace.Dropped, Cause: causes.SynackEgressDrop, SYNs: 2,
		Evidence: []string{"SYN-ACK freed: reason TC_EGRESS"}}}
	rep := &report.Report{Findings: Diagnose(e)}
	rep.Sort()
	top := rep.Findings[0]
	if top.Cause != causes.SynackEgressDrop || top.Confidence != report.Confirmed {
		t.Fatalf("top %s/%s", top.Cause, top.Confidence)
	}
	txt := evidenceText(top)
	if !strings.Contains(txt, "[trace] the kernel named 1 handshakes synack-egress-drop (2 SYNs, from 10.77.1.2): SYN-ACK freed: reason TC_EGRESS") {
		t.Fatalf("no kernel evidence line: %s", txt)
	}
}

// A fate no finding explains goes into the invariant's text; a fate of
// another cause confirms nothing.
func TestKernelFateUnexplained(t *testing.T) {
	e := server()
	unanswered(e, "10.77.1.2:40000")
	e.Trace = []trace.Outcome{{Client: "10.77.1.2:40000", Server: "10.77.2.2:8080", Fate: trace.Dropped, Cause: causes.TCPReject, SYNs: 2,
		Evidence: []string{"kfree_skb reason TCP_MINTTL"}}}
	fs := Diagnose(e)
	var inv *report.Finding
	for i := range fs {
		if fs[i].Confidence == report.Confirmed {
			t.Fatalf("confirmed without the kernel naming its cause: %+v", fs[i])
		}
		if fs[i].Cause == causes.UnexplainedDrops {
			inv = &fs[i]
		}
	}
	if inv == nil || !strings.Contains(inv.Summary, "the kernel's own fates: the kernel named 1 handshakes tcp-reject") ||
		!strings.Contains(evidenceText(*inv), "[trace] the kernel named 1 handshakes tcp-reject (2 SYNs, from 10.77.1.2): kfree_skb reason TCP_MINTTL") {
		t.Fatalf("invariant lacks the kernel's fates: %+v", fs)
	}
}

// The trace source not checked is listed by the invariant with its reason.
func TestTraceNotChecked(t *testing.T) {
	e := server()
	unanswered(e, "10.77.1.2:40000")
	e.unchecked(sourceTrace, "disabled by --no-trace")
	found := false
	for _, f := range Diagnose(e) {
		if strings.Contains(evidenceText(f), "not checked: trace (disabled by --no-trace)") {
			found = true
		}
	}
	if !found {
		t.Fatal("trace source not listed as not checked")
	}
}

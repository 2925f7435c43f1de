package trace

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/causes"
)

// TestRejectEnumIsTheCatalogs: bpf/synscope.c's R_* values number the
// catalog's tcp-reject tracepoints in order, and each program noting R_n
// is attached to the n-th one (rejectHooks), so a tracepoint name or text
// exists once, in the catalog.
func TestRejectEnumIsTheCatalogs(t *testing.T) {
	src, err := os.ReadFile("bpf/synscope.c")
	if err != nil {
		t.Fatal(err)
	}
	c := string(src)
	enum := regexp.MustCompile(`(?s)enum \{\s*R_BAD_CSUM = 1,(.*?)\};`).FindStringSubmatch(c)
	if enum == nil {
		t.Fatal("R_* enum not found in bpf/synscope.c")
	}
	names := []string{"R_BAD_CSUM"}
	for _, f := range strings.Split(enum[1], ",") {
		if f = strings.TrimSpace(f); f != "" {
			names = append(names, f)
		}
	}
	value := map[string]int{}
	for i, n := range names {
		value[n] = i + 1
	}
	tps := causes.Tracepoints(causes.TCPReject)
	if len(tps) != len(names) || len(rejectHooks) != len(names)+1 {
		t.Fatalf("catalog has %d tcp-reject tracepoints, rejectHooks %d, the C enum %d", len(tps), len(rejectHooks)-1, len(names))
	}
	progs := regexp.MustCompile(`SEC\("tp_btf/([a-z0-9_]+)"\)\s*int BPF_PROG\(([a-z0-9_]+)[^{]*\{[^}]*note_reject\(skb, (R_[A-Z0-9_]+)\)`).FindAllStringSubmatch(c, -1)
	if len(progs) != len(names) {
		t.Fatalf("found %d reject programs in the C source, want %d", len(progs), len(names))
	}
	for _, p := range progs {
		tp, prog, r := p[1], p[2], p[3]
		v := value[r]
		if v == 0 || tps[v-1].Name != tp || rejectHooks[v].prog != prog {
			t.Errorf("%s (%s, %s=%d): catalog tracepoint %d is %q, rejectHooks has %q", prog, tp, r, v, v, tps[v-1].Name, rejectHooks[v].prog)
		}
		if got := tcpRejectName(uint32(v)); got != tp {
			t.Errorf("tcpRejectName(%d) = %q, want %q", v, got, tp)
		}
	}
	if got := tcpRejectName(uint32(len(names) + 1)); got != "tcp-reject-8" {
		t.Errorf("unknown R value named %q", got)
	}
}

// TestEvidenceTexts: the texts a SYN's outcome carries for a reject
// tracepoint and a failed reply-route lookup come from the catalog.
func TestEvidenceTexts(t *testing.T) {
	for _, tp := range causes.Tracepoints(causes.TCPReject) {
		if got := tcpRejectEvidence(tp.Name); got != tp.Name+": "+tp.Text {
			t.Errorf("tcpRejectEvidence(%s) = %q", tp.Name, got)
		}
	}
	if got := tcpRejectEvidence("tcp_new_check"); got != "rejected by TCP (tcp_new_check)" {
		t.Errorf("unknown tracepoint: %q", got)
	}
	for err, want := range map[int32]string{
		-22:   "EINVAL (blackhole route)",
		-113:  "EHOSTUNREACH (unreachable route)",
		-13:   "EACCES (prohibit route)",
		-11:   "EAGAIN (no route in the table, or a throw route)",
		-101:  "ENETUNREACH",
		-4095: "err -4095",
	} {
		if got := errnoName(err); got != want {
			t.Errorf("errnoName(%d) = %q, want %q", err, got, want)
		}
	}
}

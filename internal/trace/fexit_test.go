package trace

import (
	"strings"
	"testing"
)

// TestKernelFexitProbe runs the real probe: whatever this kernel says
// (EPERM on the development machine), the answer is one of the contract's
// states and opening the tracer does not depend on it.
func TestKernelFexitProbe(t *testing.T) {
	needRoot(t)
	tr := openTracer(t, Options{})
	st := tr.Fexit()
	t.Logf("fexit probe: %#v -> %q", st, st.String())
	switch st.State {
	case "available", "not-permitted", "not-supported":
	case "inconclusive":
		if st.Err == "" {
			t.Error("inconclusive without the kernel's error")
		}
	default:
		t.Fatalf("unknown state %q", st.State)
	}
	if st.Target == "" {
		t.Error("no target named")
	}
}

func TestFexitStatusString(t *testing.T) {
	for st, want := range map[FexitStatus]string{
		{State: "not-permitted", Target: "tcp_conn_request", Err: "operation not permitted"}: "not permitted (EPERM) — using tracepoints only",
		{State: "not-supported"}:                         "not supported by this kernel — using tracepoints only",
		{State: "available", Target: "tcp_conn_request"}: "available (attached to tcp_conn_request",
		{State: "inconclusive", Err: "invalid argument"}: "inconclusive (invalid argument)",
		{}: "not probed",
	} {
		if got := st.String(); !strings.HasPrefix(got, want) {
			t.Errorf("%+v: %q, want prefix %q", st, got, want)
		}
	}
}

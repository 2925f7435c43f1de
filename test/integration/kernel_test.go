package integration

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/lab"
)

// skipIfNotApplicable reports a scenario doctor cannot diagnose on the
// running kernel as not applicable, with the reason from the one table of
// kernel limits (lab.KernelLimits); test/matrix counts these lines.
func skipIfNotApplicable(t *testing.T, scenario string) {
	t.Helper()
	why, err := lab.NotApplicable(scenario, "doctor")
	if err != nil {
		t.Fatal(err)
	}
	if why != "" {
		var u unix.Utsname
		_ = unix.Uname(&u)
		t.Skipf("not applicable on %s: %s", unix.ByteSliceToString(u.Release[:]), why)
	}
}

package integration

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/synscope/synscope/internal/report"
)

// TestDoctorWithoutPrivilege runs the real binary as nobody on the host
// namespace: it must not fail, and every check that needs privilege must
// say so as skipped (never "ok" with nothing read, never a crash).
func TestDoctorWithoutPrivilege(t *testing.T) {
	needRoot(t) // to switch to nobody
	t.Parallel()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	nb := filepath.Join(dir, "synscope")
	copyFile(t, bin, nb)
	cmd := exec.Command(nb, "doctor", "--json", "--window", "500ms")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("doctor as nobody: %v\n%s", err, se.String())
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(so.String()), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, so.String())
	}
	status := map[string]report.Check{}
	for _, c := range rep.Checks {
		status[c.Name] = c
	}
	for _, name := range []string{"capture", "firewall-start"} {
		c, ok := status[name]
		if !ok || c.Status != report.Skipped || c.Detail == "" {
			t.Errorf("check %s: %+v, want skipped with the reason", name, c)
		}
	}
	for _, name := range []string{"counters", "listeners", "routes"} {
		if c := status[name]; c.Status != report.Ran {
			t.Errorf("check %s: %+v, want ok (readable without privilege)", name, c)
		}
	}

	// Text mode says so up front and lists the skipped checks.
	txt := exec.Command(nb, "doctor", "--window", "200ms")
	txt.Dir = dir
	txt.SysProcAttr = cmd.SysProcAttr
	out, err := txt.CombinedOutput()
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("doctor as nobody (text): %v\n%s", err, out)
	}
	for _, want := range []string{"not running as root", "capture (skipped)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

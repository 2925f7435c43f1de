// Package integration runs the real synscope binary against real faults
// built by the lab in network namespaces. Root only; each test uses its own
// lab prefix so tests run in parallel.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/report"
)

// bin is the synscope binary built once for the whole package.
var bin string

func TestMain(m *testing.M) {
	lab.MaybeRunAgent()
	maybeRunHostileListener()
	code := func() int {
		dir, err := os.MkdirTemp("", "synscope-it-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "synscope")
		// test/matrix hands over the binary it built from this tree: built
		// inside an emulated guest it took most of a VM run's time.
		if pre := os.Getenv("SYNSCOPE_TEST_BINARY"); pre != "" {
			bin = pre
			if _, err := os.Stat(bin); err != nil {
				fmt.Fprintln(os.Stderr, "SYNSCOPE_TEST_BINARY:", err)
				return 2
			}
			return m.Run()
		}
		build := exec.Command("go", "build", "-o", bin, "../../cmd/synscope")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building synscope:", err)
			return 2
		}
		return m.Run()
	}()
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lab builds network namespaces")
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func synscope(t *testing.T, args ...string) result {
	t.Helper()
	return synscopeEnv(t, nil, args...)
}

// synscopeEnv runs the binary with env set; nil keeps the test's own
// environment.
func synscopeEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("synscope %v: %v", args, err)
	}
	return r
}

// labUp brings a scenario up under its own prefix and tears it down at the
// end of the test.
func labUp(t *testing.T, scenario, prefix string, extra ...string) *lab.Env {
	t.Helper()
	// Unique to this test process: two suites on one machine (a developer's
	// run beside another) must not tear down or change each other's labs.
	tag := strconv.FormatInt(int64(os.Getpid()%46656), 36)
	prefix += "-" + strings.Repeat("0", 3-len(tag)) + tag
	if err := lab.ValidatePrefix(prefix); err != nil {
		t.Fatalf("test prefix too long: %v", err)
	}
	args := append([]string{"lab", "up", scenario, "--prefix", prefix}, extra...)
	r := synscope(t, args...)
	t.Cleanup(func() {
		if d := synscope(t, "lab", "down", "--prefix", prefix); d.code != 0 {
			t.Errorf("lab down: %s", d.stderr)
		}
	})
	if r.code != 0 {
		t.Fatalf("lab up %s: exit %d\n%s%s", scenario, r.code, r.stdout, r.stderr)
	}
	env, err := lab.Load(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func doctorJSON(t *testing.T, args ...string) (*report.Report, result) {
	t.Helper()
	r := synscope(t, append([]string{"doctor", "--json"}, args...)...)
	if r.code == 2 {
		t.Fatalf("doctor %v: exit 2: %s", args, r.stderr)
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("doctor output is not JSON: %v\n%s", err, r.stdout)
	}
	return &rep, r
}

func evidenceText(f report.Finding) string {
	var b strings.Builder
	for _, e := range f.Evidence {
		b.WriteString(e.Text)
		b.WriteString("\n")
	}
	return b.String()
}

func dumpReport(t *testing.T, rep *report.Report) {
	t.Helper()
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("report:\n%s", b)
}

// assertHealthy: no critical or warning finding, and exit code 0.
func assertHealthy(t *testing.T, rep *report.Report, r result) {
	t.Helper()
	for _, f := range rep.Findings {
		if f.Severity == report.Critical || f.Severity == report.Warning {
			dumpReport(t, rep)
			t.Fatalf("healthy: unexpected %s finding %s: %s", f.Severity, f.Cause, f.Summary)
		}
	}
	if r.code != 0 {
		t.Fatalf("healthy: exit %d", r.code)
	}
}

// applyFix runs a printed fix command (comment lines skipped) from the host.
func applyFix(t *testing.T, fix string) {
	t.Helper()
	for _, line := range strings.Split(fix, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(line, "<") {
			t.Fatalf("fix has a placeholder, cannot apply: %q", line)
		}
		out, err := exec.Command("sh", "-c", line).CombinedOutput()
		if err != nil {
			t.Fatalf("applying fix %q: %v\n%s", line, err, out)
		}
	}
}

// dialEventually retries a real connect from the client namespace.
func dialEventually(t *testing.T, env *lab.Env, family int) {
	t.Helper()
	var err error
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = env.Dial(ctx, family, 2*time.Second)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("client still cannot connect over IPv%d: %v", family, err)
}

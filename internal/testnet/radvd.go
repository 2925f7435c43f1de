package testnet

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/synscope/synscope/internal/netns"
)

// StartRadvd runs a real radvd (Debian package radvd; .ci/run installs it)
// inside ns with the given configuration, in the foreground, until the
// test ends. radvd is what routers on real links run; tests that claim to
// handle router advertisements use it rather than crafted packets.
func StartRadvd(tb testing.TB, ns *netns.Target, conf string) {
	tb.Helper()
	bin, err := exec.LookPath("radvd")
	if err != nil {
		tb.Fatal("radvd is not installed (Debian package radvd; .ci/run installs it)")
	}
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "radvd.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-n", "-m", "stderr", "-C", cfg, "-p", filepath.Join(dir, "radvd.pid"))
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Started from a thread inside ns: radvd and its socket live there.
	if err := ns.Do(cmd.Start); err != nil {
		tb.Fatalf("testnet.StartRadvd: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if tb.Failed() {
			tb.Logf("radvd output:\n%s", out.String())
		}
	})
}

package firewall

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const unprivEnv = "SYNSCOPE_FIREWALL_UNPRIV_CHILD"

// TestInspectUnprivileged re-runs this test binary as nobody and checks that
// Inspect refuses with an os.ErrPermission that names the capability.
func TestInspectUnprivileged(t *testing.T) {
	if os.Getenv(unprivEnv) != "" {
		_, err := Inspect(-1)
		if err == nil || !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
			t.Fatalf("Inspect as nobody: %v; want an os.ErrPermission naming CAP_NET_ADMIN", err)
		}
		ns, err := os.Open("/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		_, err = Inspect(int(ns.Fd()))
		if err == nil || !errors.Is(err, os.ErrPermission) {
			t.Fatalf("Inspect(fd) as nobody: %v; want os.ErrPermission", err)
		}
		t.Logf("unprivileged error: %v", err)
		return
	}
	if os.Geteuid() != 0 {
		// Already unprivileged: check directly.
		if _, err := Inspect(-1); err == nil || !errors.Is(err, os.ErrPermission) {
			t.Fatalf("Inspect without privilege: %v; want os.ErrPermission", err)
		}
		return
	}
	// The test binary lives in a private build directory; copy it where
	// nobody can run it.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "firewall.test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatalf("copy test binary: %v", err)
	}
	cmd := exec.Command(bin, "-test.run=^TestInspectUnprivileged$", "-test.v")
	cmd.Env = append(os.Environ(), unprivEnv+"=1")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

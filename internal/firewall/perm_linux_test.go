package firewall

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/testnet"
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
	t.Logf("%s", testnet.RunTestAsNobody(t, unprivEnv))
}

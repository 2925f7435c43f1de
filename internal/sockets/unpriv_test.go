package sockets

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/testnet"
)

// envUnprivChild makes the test binary act as the unprivileged child of
// TestUnprivilegedListeners instead of running tests.
const envUnprivChild = "SYNSCOPE_SOCKETS_UNPRIV_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envUnprivChild) == "1" {
		ls, err := Listeners()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		_ = json.NewEncoder(os.Stdout).Encode(ls)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Without CAP_NET_ADMIN the dump still works but carries no mark: HasMark
// must say so rather than report mark 0. The child is forked from a thread
// inside the namespace, so it starts there, then runs as nobody.
func TestUnprivilegedListeners(t *testing.T) {
	ns := testnet.NewNS(t, "sockets")
	cmd := testnet.NobodyCommand(t)
	cmd.Env = []string{envUnprivChild + "=1"}
	f := &fds{}
	t.Cleanup(f.closeAll)
	var out []byte
	err := ns.Do(func() error {
		if _, err := listenTCP(f, unix.AF_INET, lo4(portMark), 16, func(fd int) error {
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, markValue)
		}); err != nil {
			return err
		}
		var err error
		out, err = cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			return fmt.Errorf("child: %v: %s", err, ee.Stderr)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var ls []Socket
	if err := json.Unmarshal(out, &ls); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	if len(ls) != 1 || ls[0].Local.Port() != portMark {
		t.Fatalf("unprivileged child saw %v, want the one listener", ls)
	}
	if ls[0].HasMark || ls[0].Mark != 0 || !ls[0].HasMeminfo {
		t.Errorf("unprivileged: %v, want no mark attribute but meminfo", ls[0])
	}
}

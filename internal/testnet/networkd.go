package testnet

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/netns"
)

// LabServerNetwork is the lab server's configuration (s0) as a
// systemd-networkd .network file: its addresses and both static default
// routes, RAs off. The caller passes internal/lab's addresses (testnet
// cannot import lab: lab's tests import testnet).
func LabServerNetwork(srv4, srv6, gw4, gw6 netip.Addr) string {
	return fmt.Sprintf(`[Match]
Name=s0

[Network]
Address=%s/24
Address=%s/64
Gateway=%s
Gateway=%s
IPv6AcceptRA=no
LinkLocalAddressing=ipv6
`, srv4, srv6, gw4, gw6)
}

// networkdBin is Debian's systemd-networkd (package systemd).
const networkdBin = "/lib/systemd/systemd-networkd"

// networkdScript runs in a mount namespace of networkd's own, entered
// with the test's network namespace: a private /run/systemd (its runtime
// state, owned by systemd-network), "container" mode, the test's .network
// files over /etc/systemd/network, and a read-only /sys so that it does
// not wait for udev. Nothing of it is visible outside.
const networkdScript = `set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
echo docker > /run/systemd/container
mount --bind "$1" /etc/systemd/network
mount -o remount,bind,ro /sys
exec ` + networkdBin

// Networkd is a systemd-networkd a test started in a namespace.
type Networkd struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	once sync.Once
}

// StartNetworkd runs Debian's systemd-networkd inside ns with the given
// .network files (name → contents) until Stop or the end of the test.
// The test fails when networkd is not installed.
func StartNetworkd(tb testing.TB, ns *netns.Target, files map[string]string) *Networkd {
	tb.Helper()
	if _, err := os.Stat(networkdBin); err != nil {
		tb.Fatalf("systemd-networkd is not installed (Debian package systemd): %v", err)
	}
	dir := tb.TempDir()
	netdir := filepath.Join(dir, "network")
	if err := os.Mkdir(netdir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(netdir, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	n := &Networkd{out: &bytes.Buffer{}}
	n.cmd = exec.Command("unshare", "-m", "sh", "-c", networkdScript, "networkd", netdir)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ns.Do(n.cmd.Start); err != nil {
		tb.Fatalf("testnet.StartNetworkd: %v", err)
	}
	tb.Cleanup(func() {
		n.Stop()
		if tb.Failed() {
			tb.Logf("systemd-networkd output:\n%s", n.out.String())
		}
	})
	return n
}

// PID is networkd's process id (unshare and sh exec it).
func (n *Networkd) PID() int { return n.cmd.Process.Pid }

// Stop ends networkd (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (n *Networkd) Stop() {
	n.once.Do(func() {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = n.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = n.cmd.Process.Kill()
			<-done
		}
	})
}

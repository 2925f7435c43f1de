package counters

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// A connect to a closed port on loopback inside a fresh namespace must move
// that namespace's TcpOutRsts and TcpAttemptFails, and nothing of the host.
func TestReadInNamespaceSeesOwnCounters(t *testing.T) {
	ns := testnet.NewNS(t, "counters")
	var a, b *Snapshot
	err := ns.Do(func() error {
		var err error
		if a, err = Read(netns.ProcNet); err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		cerr := unix.Connect(fd, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}})
		if cerr != unix.ECONNREFUSED {
			return fmt.Errorf("connect to closed port: %v, want ECONNREFUSED", cerr)
		}
		b, err = Read(netns.ProcNet)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := a.Get("TcpOutRsts"); v != 0 {
		t.Errorf("fresh namespace has TcpOutRsts=%d", v)
	}
	d := Diff(a, b)
	if d.Get("TcpOutRsts") != 1 || d.Get("TcpAttemptFails") != 1 {
		t.Errorf("delta %v: want TcpOutRsts and TcpAttemptFails +1", d)
	}
	if _, ok := b.Get("Ip6InReceives"); !ok {
		t.Error("snmp6 not read")
	}
	if !b.Time.After(a.Time) {
		t.Error("snapshot times not increasing")
	}
}

// Every name nstat prints for the host must be a key of Read, so that
// doctor's names are nstat's names.
func TestNamesMatchNstat(t *testing.T) {
	if _, err := exec.LookPath("nstat"); err != nil {
		t.Skip("nstat not installed")
	}
	out, err := exec.Command("nstat", "-asz").Output()
	if err != nil {
		t.Skipf("nstat: %v", err)
	}
	s, err := Read("/proc/self/net")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		n++
		if _, ok := s.Values[f[0]]; !ok {
			t.Errorf("nstat name %s not in Read", f[0])
		}
	}
	if n < 100 {
		t.Errorf("only %d nstat names", n)
	}
}

func TestReadConntrackInNamespace(t *testing.T) {
	ns := testnet.NewNS(t, "counters")
	var ct Conntrack
	var drops uint64
	err := ns.Do(func() error {
		var err error
		if ct, err = ReadConntrack(netns.ProcNet, "/proc/sys"); err != nil {
			return err
		}
		drops, err = ReadSoftnetDrops(netns.ProcNet)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/net/stat/nf_conntrack"); err != nil {
		if ct.Available {
			t.Error("Available without the module")
		}
		t.Skip("nf_conntrack not loaded on this host")
	}
	if !ct.Available || ct.Max == 0 {
		t.Errorf("conntrack %+v: want Available and Max > 0", ct)
	}
	if ct.Count != 0 {
		t.Errorf("fresh namespace has %d conntrack entries", ct.Count)
	}
	t.Logf("conntrack %+v, softnet drops %d", ct, drops)
}

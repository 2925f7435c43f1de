package testnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
)

// fatalTB records the first Fatalf and ends the goroutine, as testing does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs fn against a fatalTB and returns what it failed with.
func fatalOf(fn func(tb testing.TB)) string {
	f := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.msg
}

// Bad input and the host namespace are refused with a one-line message,
// before anything is changed (so this runs without root).
func TestRefusals(t *testing.T) {
	host, err := netns.Open("")
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		fn   func(tb testing.TB)
		want string
	}{
		"Pair on host":     {func(tb testing.TB) { Pair(tb, host, host, PairOptions{NameA: "x0", NameB: "x1"}) }, "refusing"},
		"Pair no names":    {func(tb testing.TB) { Pair(tb, host, host, PairOptions{}) }, "need a name"},
		"AddAddrs on host": {func(tb testing.TB) { AddAddrs(tb, host, "lo", "127.0.0.9/8") }, "refusing"},
		"Sysctl on host":   {func(tb testing.TB) { Sysctl(tb, host, "net/ipv4/ip_forward", "1") }, "refusing"},
		"Sysctl nil ns":    {func(tb testing.TB) { Sysctl(tb, nil, "net/ipv4/ip_forward", "1") }, "refusing"},
		"NewNS bad tag":    {func(tb testing.TB) { NewNS(tb, "Bad Tag") }, "tag"},
		"NewNS empty tag":  {func(tb testing.TB) { NewNS(tb, "") }, "tag"},
	} {
		msg := fatalOf(tc.fn)
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("%s: failed with %q, want one line containing %q", name, msg, tc.want)
		}
	}
}

// TestKernel builds two namespaces joined by a pair, checks every promise of
// the helpers against the kernel, and after the subtest that owns them ends,
// that both namespaces are gone.
func TestKernel(t *testing.T) {
	NeedRoot(t, "creates network namespaces")
	var names []string
	t.Run("build", func(t *testing.T) {
		a, b := NewNS(t, "testnet-a"), NewNS(t, "testnet-b")
		names = []string{a.Name, b.Name}
		for _, ns := range []*netns.Target{a, b} {
			if want := fmt.Sprintf("-%d-", os.Getpid()); !strings.Contains(ns.Name, want) || !strings.HasPrefix(ns.Name, "synscope-testnet-") {
				t.Errorf("namespace name %q lacks the tag or pid", ns.Name)
			}
			if ns.Current {
				t.Fatalf("NewNS returned the current namespace")
			}
			if lo := linkAttrs(t, ns, "lo"); lo.Flags&net.FlagUp == 0 {
				t.Errorf("lo down in %s", ns.Name)
			}
		}
		if a.Inode == b.Inode || a.Name == b.Name {
			t.Fatalf("two NewNS calls gave the same namespace")
		}

		ia, ib := Pair(t, a, b, PairOptions{NameA: "ta0", NameB: "tb0",
			AddrsA: []string{"10.76.0.1/24", "fd76::1/64"}, AddrsB: []string{"10.76.0.2/24", "fd76::2/64"}})
		for _, ifc := range []Iface{ia, ib} {
			at := linkAttrs(t, ifc.NS, ifc.Name)
			if ifc.Index != at.Index || ifc.MAC.String() != at.HardwareAddr.String() || len(ifc.MAC) != 6 {
				t.Errorf("%s: Iface %+v does not match the kernel's %d %v", ifc.Name, ifc, at.Index, at.HardwareAddr)
			}
			if at.Flags&net.FlagUp == 0 {
				t.Errorf("%s is not up", ifc.Name)
			}
			if got := readSysctl(t, ifc.NS, "net/ipv6/conf/"+ifc.Name+"/accept_dad"); got != "0" {
				t.Errorf("%s accept_dad = %s, want 0", ifc.Name, got)
			}
		}
		if ia.NS != a || ib.NS != b || ia.Name != "ta0" || ib.Name != "tb0" {
			t.Errorf("ends in the wrong place: %+v %+v", ia, ib)
		}
		// The given addresses are never tentative (IFA_F_NODAD). The kernel's
		// own link-local one is, until the addrconf work runs: with
		// accept_dad=0 that is at once, with DAD it would take over a
		// second (a random start delay, then one probe and a 1 s wait).
		tentative := func() (given, linkLocal int, err error) {
			err = b.Do(func() error {
				l, err := netlink.LinkByName("tb0")
				if err != nil {
					return err
				}
				as, err := netlink.AddrList(l, netlink.FAMILY_V6)
				if err != nil {
					return err
				}
				found := false
				for _, ad := range as {
					found = found || ad.IP.String() == "fd76::2"
					switch {
					case ad.Flags&unix.IFA_F_TENTATIVE == 0:
					case ad.IP.IsLinkLocalUnicast():
						linkLocal++
					default:
						given++
					}
				}
				if !found {
					return fmt.Errorf("fd76::2 missing: %v", as)
				}
				return nil
			})
			return given, linkLocal, err
		}
		for deadline := time.Now().Add(900 * time.Millisecond); ; time.Sleep(20 * time.Millisecond) {
			given, linkLocal, err := tentative()
			if err != nil || given > 0 {
				t.Fatalf("tb0: %d given addresses tentative (%v)", given, err)
			}
			if linkLocal == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("tb0's link-local address still tentative after 900 ms: DAD is running")
			}
		}

		// TCP across the pair, both families, straight after setup: a
		// completed handshake is enough, the listener's queue holds it.
		var ln net.Listener
		if err := a.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", ":7070")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		for _, dst := range []string{"10.76.0.1:7070", "[fd76::1]:7070"} {
			if err := b.Do(func() error {
				c, err := net.DialTimeout("tcp", dst, 2*time.Second)
				if err == nil {
					c.Close()
				}
				return err
			}); err != nil {
				t.Errorf("connect %s from b: %v", dst, err)
			}
		}

		// A pair inside one namespace.
		x, y := Pair(t, a, a, PairOptions{NameA: "tx0", NameB: "ty0"})
		if x.NS != a || y.NS != a || x.Index == y.Index {
			t.Errorf("same-namespace pair: %+v %+v", x, y)
		}

		// Sysctl changes the namespace, not the host.
		const key = "net/ipv4/tcp_syn_retries"
		host := readSysctl(t, nil, key)
		want := "1"
		if host == "1" {
			want = "2"
		}
		Sysctl(t, a, key, want)
		if got := readSysctl(t, a, key); got != want {
			t.Errorf("inside: %s = %s, want %s", key, got, want)
		}
		if got := readSysctl(t, nil, key); got != host {
			t.Errorf("host %s changed from %s to %s", key, host, got)
		}
		Sysctl(t, a, "net/ipv4/conf/tx0/rp_filter", "2")
		if got := readSysctl(t, a, "net/ipv4/conf/tx0/rp_filter"); got != "2" {
			t.Errorf("rp_filter on tx0 = %s, want 2", got)
		}

		for _, bad := range []string{"", "net/ipv4/../../../etc/passwd", "/net/ipv4/ip_forward", "net//core", "net.ipv4.ip_forward"} {
			if msg := fatalOf(func(tb testing.TB) { Sysctl(tb, a, bad, "1") }); msg == "" || strings.Contains(msg, "\n") {
				t.Errorf("Sysctl(%q): failed with %q, want a one-line error", bad, msg)
			}
		}

		// Exec runs the process inside the namespace.
		out := MustExec(t, a, "", "cat", "/proc/self/net/dev")
		for _, dev := range []string{"lo:", "ta0:", "tx0:", "ty0:"} {
			if !strings.Contains(out, dev) {
				t.Errorf("Exec in a: /proc/self/net/dev lacks %s:\n%s", dev, out)
			}
		}
		if strings.Contains(out, "tb0:") {
			t.Errorf("Exec in a sees b's device:\n%s", out)
		}
		if got := MustExec(t, b, "from stdin", "cat"); got != "from stdin" {
			t.Errorf("Exec stdin: got %q", got)
		}
		if out, err := Exec(b, "", "false"); err == nil || !strings.Contains(err.Error(), b.Name) {
			t.Errorf("Exec of a failing command: %v (%s), want an error naming the namespace", err, out)
		}
	})
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(netns.RunDir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still exists after its test: %v", n, err)
		}
	}
	if len(names) != 2 {
		t.Errorf("build did not get as far as creating both namespaces")
	}
}

const nobodyEnv = "SYNSCOPE_TESTNET_NOBODY_CHILD"

// TestRunTestAsNobody checks the child really runs as nobody without groups,
// in a working directory nobody can read.
func TestRunTestAsNobody(t *testing.T) {
	if os.Getenv(nobodyEnv) != "" {
		groups, err := os.Getgroups()
		if err != nil {
			t.Fatal(err)
		}
		if os.Getuid() != NobodyUID || os.Geteuid() != NobodyUID || os.Getgid() != NobodyGID || len(groups) != 0 {
			t.Fatalf("child: uid %d euid %d gid %d groups %v", os.Getuid(), os.Geteuid(), os.Getgid(), groups)
		}
		if _, err := os.ReadDir("."); err != nil {
			t.Fatalf("child cannot read its working directory: %v", err)
		}
		return
	}
	out := RunTestAsNobody(t, nobodyEnv)
	t.Logf("%s", out)
}

// NeedRoot must skip, with the reason, when not root.
func TestNeedRootAsNobody(t *testing.T) {
	if os.Getenv(nobodyEnv) != "" {
		NeedRoot(t, "testnet probe")
		t.Fatal("NeedRoot did not skip as nobody")
	}
	cmd := NobodyCommand(t, "-test.run=^TestNeedRootAsNobody$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), nobodyEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- SKIP: TestNeedRootAsNobody") || !strings.Contains(string(out), "needs root: testnet probe") {
		t.Errorf("child did not skip with the reason:\n%s", out)
	}
}

func linkAttrs(t *testing.T, ns *netns.Target, name string) *netlink.LinkAttrs {
	t.Helper()
	var at *netlink.LinkAttrs
	if err := ns.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err == nil {
			at = l.Attrs()
		}
		return err
	}); err != nil {
		t.Fatalf("%s in %s: %v", name, ns.Label(), err)
	}
	return at
}

// readSysctl reads a path-form key in ns (nil: this thread's namespace).
func readSysctl(t *testing.T, ns *netns.Target, key string) string {
	t.Helper()
	var b []byte
	read := func() error {
		var err error
		b, err = os.ReadFile("/proc/sys/" + key)
		return err
	}
	var err error
	if ns == nil {
		err = read()
	} else {
		err = ns.Do(read)
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

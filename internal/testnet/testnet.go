// Package testnet is test support only: it builds the throwaway network
// namespaces, veth pairs, addresses and sysctls that real-kernel tests need,
// and re-runs a test binary as nobody for unprivileged checks. Import it from
// _test.go files only; it imports "testing" and fails or skips the calling
// test itself rather than returning errors.
//
// Every helper that changes state refuses the caller's own namespace: tests
// change only namespaces they created with NewNS, and those are deleted
// (with everything in them) when the test ends.
//
// It must not import any package whose tests use it (sysctl, counters, ...),
// or those tests would form an import cycle; it uses netns, netlink and procfs
// directly.
package testnet

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
)

// NobodyUID and NobodyGID are the credentials RunTestAsNobody and
// NobodyCommand switch to.
const (
	NobodyUID = 65534
	NobodyGID = 65534
)

// NeedRoot skips the test unless it runs as root; why says what needs it
// ("creates network namespaces"), so the skip explains itself.
func NeedRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: " + why)
	}
}

// nsSeq makes names unique among the namespaces one test process creates;
// the pid in the name separates test processes (packages run in parallel).
var nsSeq atomic.Uint64

var tagRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// NewNS creates a named namespace "synscope-<tag>-<pid>-<n>" with lo up and
// deletes it when the test ends. It skips the test when not root. tag is
// [a-z0-9-], typically the package name and a role ("capture-srv").
func NewNS(tb testing.TB, tag string) *netns.Target {
	tb.Helper()
	if !tagRE.MatchString(tag) {
		tb.Fatalf("testnet.NewNS: tag %q: want 1-40 characters from [a-z0-9-]", tag)
	}
	NeedRoot(tb, "creates network namespaces")
	name := fmt.Sprintf("synscope-%s-%d-%d", tag, os.Getpid(), nsSeq.Add(1))
	ns, err := netns.Create(name)
	if err != nil {
		tb.Fatalf("testnet.NewNS: %v", err)
	}
	tb.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			tb.Errorf("testnet cleanup: %v", err)
		}
	})
	return ns
}

// Iface is one end of a Pair, or a device looked up with Link.
type Iface struct {
	NS    *netns.Target
	Name  string
	Index int
	MAC   net.HardwareAddr
}

// PairOptions names the two ends of a veth pair and the addresses they get
// (CIDR strings such as "10.77.0.1/24" or "fd77::1/64").
type PairOptions struct {
	NameA, NameB   string
	AddrsA, AddrsB []string
}

// Pair creates a veth pair with end A (opts.NameA) in a and end B in b (a
// and b may be the same namespace), gives each end its addresses, turns IPv6
// DAD off on both (accept_dad=0 and IFA_F_NODAD, so the addresses are usable
// at once) and brings both up.
func Pair(tb testing.TB, a, b *netns.Target, opts PairOptions) (Iface, Iface) {
	tb.Helper()
	if opts.NameA == "" || opts.NameB == "" {
		tb.Fatalf("testnet.Pair: both ends need a name (got %q, %q)", opts.NameA, opts.NameB)
	}
	mustCreated(tb, "Pair", a)
	mustCreated(tb, "Pair", b)
	err := a.Do(func() error {
		return netlink.LinkAdd(&netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: opts.NameA},
			PeerName:      opts.NameB,
			PeerNamespace: netlink.NsFd(b.FD()),
		})
	})
	if err != nil {
		tb.Fatalf("testnet.Pair: veth %s (%s) - %s (%s): %v", opts.NameA, a.Label(), opts.NameB, b.Label(), err)
	}
	ends := [2]Iface{}
	for i, end := range []struct {
		ns    *netns.Target
		name  string
		addrs []string
	}{{a, opts.NameA, opts.AddrsA}, {b, opts.NameB, opts.AddrsB}} {
		// Before the link comes up, so its link-local address skips DAD too.
		Sysctl(tb, end.ns, "net/ipv6/conf/"+end.name+"/accept_dad", "0")
		AddAddrs(tb, end.ns, end.name, end.addrs...)
		if err := end.ns.Do(func() error {
			l, err := netlink.LinkByName(end.name)
			if err != nil {
				return err
			}
			return netlink.LinkSetUp(l)
		}); err != nil {
			tb.Fatalf("testnet.Pair: %s up in %s: %v", end.name, end.ns.Label(), err)
		}
		ends[i] = Link(tb, end.ns, end.name)
	}
	return ends[0], ends[1]
}

// Link looks up device name in ns.
func Link(tb testing.TB, ns *netns.Target, name string) Iface {
	tb.Helper()
	var ifc Iface
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		at := l.Attrs()
		ifc = Iface{NS: ns, Name: at.Name, Index: at.Index, MAC: at.HardwareAddr}
		return nil
	})
	if err != nil {
		tb.Fatalf("testnet.Link: %s in %s: %v", name, ns.Label(), err)
	}
	return ifc
}

// AddAddrs adds addresses (CIDR strings) to device dev in ns. IPv6 ones get
// IFA_F_NODAD: a tentative address would make the first connects fail; and
// AddAddrs returns only once each of them is local (WaitLocal), so a packet
// sent to it straight after is delivered.
func AddAddrs(tb testing.TB, ns *netns.Target, dev string, cidrs ...string) {
	tb.Helper()
	mustCreated(tb, "AddAddrs", ns)
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		for _, c := range cidrs {
			a, err := netlink.ParseAddr(c)
			if err != nil {
				return fmt.Errorf("address %q: %w", c, err)
			}
			if a.IP.To4() == nil {
				a.Flags |= unix.IFA_F_NODAD
			}
			if err := netlink.AddrAdd(l, a); err != nil {
				return fmt.Errorf("address %s: %w", c, err)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("testnet.AddAddrs: %s in %s: %v", dev, ns.Label(), err)
	}
	for _, c := range cidrs {
		if a, err := netlink.ParseAddr(c); err == nil && a.IP.To4() == nil {
			WaitLocal(tb, ns, a.IP)
		}
	}
}

// WaitLocal waits until ip is a local address of ns, that is until the
// kernel's route lookup for it finds its local route.
//
// Why: for IPv6 the kernel installs an address's local route from addrconf's
// DAD work item, which runs after the netlink request that added the address
// has returned, even with IFA_F_NODAD (the address is never tentative, but
// it is not yet local either). A packet that arrives before the work has run
// is not delivered: a SYN to the address is silently dropped. On an idle
// machine the work runs within microseconds; with the suite's namespace
// packages loading two cores it was seen to run too late for a SYN written
// straight after setup (TestCaptureTun). IPv4 local routes are installed
// synchronously, so this returns at once for them.
//
// The bound (10 s) only turns a kernel that never installs the route into a
// failure that says so.
func WaitLocal(tb testing.TB, ns *netns.Target, ip net.IP) {
	tb.Helper()
	const bound = 10 * time.Second
	var last string
	for deadline := time.Now().Add(bound); ; time.Sleep(5 * time.Millisecond) {
		local := false
		err := ns.Do(func() error {
			rs, err := netlink.RouteGet(ip)
			if err != nil {
				return err
			}
			local = len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL
			if len(rs) > 0 {
				last = fmt.Sprintf("type %d dev %d", rs[0].Type, rs[0].LinkIndex)
			}
			return nil
		})
		if err != nil {
			last = err.Error()
		}
		if local {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testnet.WaitLocal: %v in %s is not a local address after %v (route lookup: %s)", ip, ns.Label(), bound, last)
		}
	}
}

// Sysctl writes a /proc/sys value inside ns. path is relative to /proc/sys
// with "/" between components, so interface names keep their dots:
// "net/ipv4/conf/eth0.100/rp_filter". (Dotted sysctl(8) names are
// internal/sysctl's business; testnet cannot import it, as sysctl's own
// tests use testnet.)
func Sysctl(tb testing.TB, ns *netns.Target, path, value string) {
	tb.Helper()
	mustCreated(tb, "Sysctl", ns)
	for _, part := range strings.Split(path, "/") {
		if part == "" || part == "." || part == ".." {
			tb.Fatalf("testnet.Sysctl: %q: want a path under /proc/sys such as net/ipv4/ip_forward", path)
		}
	}
	p := filepath.Join("/proc/sys", path)
	if err := ns.Do(func() error { return os.WriteFile(p, []byte(value), 0o644) }); err != nil {
		tb.Fatalf("testnet.Sysctl: %s=%s in %s: %v", path, value, ns.Label(), err)
	}
}

// Exec runs a command from a thread inside ns, so the process lives in that
// namespace (no `ip netns exec` needed), feeding it stdin, and returns its
// combined output. For test setup and verification with tools such as nft.
func Exec(ns *netns.Target, stdin, name string, args ...string) ([]byte, error) {
	var out []byte
	var cerr error
	err := ns.Do(func() error {
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, cerr = cmd.CombinedOutput()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cerr != nil {
		return out, fmt.Errorf("%s %s in %s: %w", name, strings.Join(args, " "), ns.Label(), cerr)
	}
	return out, nil
}

// MustExec is Exec that fails the test (showing the output) on error.
func MustExec(tb testing.TB, ns *netns.Target, stdin, name string, args ...string) string {
	tb.Helper()
	out, err := Exec(ns, stdin, name, args...)
	if err != nil {
		tb.Fatalf("%v\n%s", err, out)
	}
	return string(out)
}

// NobodyCommand returns a command that runs a copy of this test binary with
// args as nobody, with no supplementary groups. The copy sits in a
// world-readable temporary directory (the go-build one is private to root),
// which is also the command's working directory. The caller sets Env and
// runs it; running it inside ns.Do starts the child in that namespace.
// Skips the test when not root (switching users needs it).
func NobodyCommand(tb testing.TB, args ...string) *exec.Cmd {
	tb.Helper()
	NeedRoot(tb, "runs a child process as nobody")
	dir := tb.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			tb.Fatalf("testnet.NobodyCommand: %v", err)
		}
	}
	bin := filepath.Join(dir, filepath.Base(os.Args[0]))
	if err := copyExecutable(os.Args[0], bin); err != nil {
		tb.Fatalf("testnet.NobodyCommand: copying the test binary: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: NobodyUID, Gid: NobodyGID}}
	return cmd
}

// RunTestAsNobody re-runs the calling test, alone, in a copy of the test
// binary as nobody with envKey=1 added to the environment; the test sees
// envKey set and does its unprivileged part. It fails unless the child ran
// that test and it passed, and returns the child's output.
func RunTestAsNobody(tb testing.TB, envKey string) string {
	tb.Helper()
	parts := strings.Split(tb.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	cmd := NobodyCommand(tb, "-test.run="+strings.Join(parts, "/"), "-test.v", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), envKey+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("%s as nobody: %v\n%s", tb.Name(), err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+tb.Name()+" ") {
		tb.Fatalf("%s as nobody did not run and pass the test:\n%s", tb.Name(), out)
	}
	return string(out)
}

func mustCreated(tb testing.TB, fn string, ns *netns.Target) {
	tb.Helper()
	if ns == nil || ns.Current {
		tb.Fatalf("testnet.%s: refusing to change the test's own namespace; use one from NewNS", fn)
	}
}

func copyExecutable(src, dst string) error {
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

package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/safetext"
)

// Names a container controls, chosen to hurt an operator who pastes a fix
// into a root shell or reads the report in a terminal.
const (
	hostileIface = "e$(id>p)"                  // legal: ifnames hold $ ( ) > (15 bytes max)
	hostileComm  = "\x1b[2J\x1b[31mFAKE-OK"    // prctl(PR_SET_NAME): clears the screen, writes red
	hostileTable = "t$(touch q)\x1b[2J"        // nftables names take any bytes
	hostileChain = "c;`touch r`|tee s>\x1b]0;" // and an OSC title sequence
	hostilePort  = 9099
	hostileEnv   = "SYNSCOPE_IT_HOSTILE_LISTENER"
)

// maybeRunHostileListener is the child process of TestHostileNamespace:
// it renames itself to escape sequences, listens on hostilePort in the
// namespace it was started in, says "ready" and lives until its stdin
// closes (or two minutes pass).
func maybeRunHostileListener() {
	if os.Getenv(hostileEnv) == "" {
		return
	}
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(unsafeCString(hostileComm))), 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "prctl:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", hostilePort))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(2)
	}
	defer ln.Close()
	fmt.Println("ready")
	done := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
	}
	os.Exit(0)
}

// TestHostileNamespace is issue 13's case: a namespace whose interface is
// named `e$(id>p)`, whose listener renamed itself to escape sequences, and
// whose nftables table and chain names carry shell and terminal attacks,
// with its default route missing and a rule dropping SYNs. The text report
// holds no raw control byte; every printed fix, run by sh, does its job and
// nothing else; the client connects afterwards.
func TestHostileNamespace(t *testing.T) {
	needRoot(t)
	t.Parallel()
	env := labUp(t, "missing-default-route-v4", "it-hx")
	srv, err := netns.Open(env.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	renameServerLink(t, env, srv)
	startHostileListener(t, env)
	addHostileRule(t, srv)

	// SYNs to the hostile listener during doctor's window, so that the
	// drop rule's counter moves and doctor names it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go dialLoop(ctx, env)

	r := synscope(t, "doctor", "--netns", env.Server, "--window", "3s")
	if r.code != 1 {
		t.Fatalf("doctor exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	assertTerminalSafe(t, "doctor text", r.stdout+r.stderr)
	t.Logf("doctor text:\n%s", r.stdout)
	for _, want := range []string{`\x1b[2J\x1b[31mFAKE`, "'e$(id>p)'"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text report lacks %q (the hostile name, shown visibly):\n%s", want, r.stdout)
		}
	}

	rep, _ := doctorJSON(t, "--netns", env.Server, "--window", "3s")
	cancel()
	var noRoute, fw *report.Finding
	for i := range rep.Findings {
		switch f := &rep.Findings[i]; f.Cause {
		case causes.NoRouteToPeer:
			noRoute = f
		case causes.FirewallDrop:
			fw = f
		}
	}
	if noRoute == nil || fw == nil {
		dumpReport(t, rep)
		t.Fatalf("want no-route-to-peer and firewall-drop findings")
	}
	owners := ""
	for _, l := range rep.Listeners {
		owners += l.Process + "\n"
	}
	if !strings.Contains(owners, "\x1b[2J\x1b[31mFAKE") {
		t.Errorf("JSON listeners lack the process name as it is (JSON escapes it): %q", owners)
	}
	wantFix := fmt.Sprintf("ip -n %s route add default via 10.77.2.1 dev 'e$(id>p)'", env.Server)
	if noRoute.Fix != wantFix {
		t.Errorf("fix\n got %s\nwant %s", noRoute.Fix, wantFix)
	}

	// Each fix, pasted into sh, does exactly its job.
	t.Logf("firewall fix: %s", fw.Fix)
	runFixInScratchShell(t, fw.Fix)
	if rules := hostileRules(t, srv); rules != 0 {
		t.Errorf("after the printed nft fix, %d rules remain in the hostile chain", rules)
	}
	runFixInScratchShell(t, noRoute.Fix)
	dialEventually(t, env, 4)
}

// assertTerminalSafe fails on any byte a terminal would act on, other than
// line breaks.
func assertTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	for i, line := range strings.Split(out, "\n") {
		if !safetext.Safe(line) {
			t.Errorf("%s line %d holds raw control bytes: %q", what, i+1, line)
		}
	}
}

// runFixInScratchShell runs every command line of a fix with sh in an empty
// directory and fails if the shell created anything there (an injected
// `>p`, `touch q`, `tee s`).
func runFixInScratchShell(t *testing.T, fix string) {
	t.Helper()
	dir := t.TempDir()
	ran := 0
	for _, line := range strings.Split(fix, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("fix %q: %v\n%s", line, err, out)
		}
		ran++
	}
	if ran == 0 {
		t.Fatalf("fix has no command to run:\n%s", fix)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		t.Errorf("fix ran something else: %s appeared (fix: %q)", filepath.Join(dir, e.Name()), fix)
	}
}

// renameServerLink renames the server's s0 (down, rename, up: the kernel
// renames only a down device) and makes the router forget the server's
// MAC, so that the next SYN it forwards (after an ARP request) refreshes
// the server's neighbour entry for the router: the evidence doctor infers
// the gateway from. Down/up flushed nothing doctor needs: the default
// route was already missing and the connected route returns with up.
func renameServerLink(t *testing.T, env *lab.Env, srv *netns.Target) {
	t.Helper()
	nh := handleIn(t, srv)
	l, err := nh.LinkByName("s0")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return nh.LinkSetDown(l) },
		func() error { return nh.LinkSetName(l, hostileIface) },
		func() error { return nh.LinkSetUp(l) },
	} {
		if err := step(); err != nil {
			t.Fatalf("renaming s0 to %q: %v", hostileIface, err)
		}
	}
	rtr, err := netns.Open(env.Router)
	if err != nil {
		t.Fatal(err)
	}
	defer rtr.Close()
	rh := handleIn(t, rtr)
	neighs, err := rh.NeighList(0, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.IP.Equal(env.ServerV4.AsSlice()) {
			if err := rh.NeighDel(&n); err != nil {
				t.Fatalf("router: forgetting %s: %v", n.IP, err)
			}
		}
	}
}

func handleIn(t *testing.T, ns *netns.Target) *netlink.Handle {
	t.Helper()
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nh.Close)
	return nh
}

// startHostileListener runs this test binary as maybeRunHostileListener in
// the server namespace and waits for it to listen.
func startHostileListener(t *testing.T, env *lab.Env) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", env.Server, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), hostileEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("hostile listener: %q %v", line, err)
	}
}

// addHostileRule creates table inet <hostileTable>, chain <hostileChain>
// at the input hook, with `tcp dport 9099 counter drop` — with netlink:
// nft's command line cannot spell these names.
func addHostileRule(t *testing.T, srv *netns.Target) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(srv.FD()))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: hostileTable})
	pol := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: hostileChain, Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(hostilePort)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("hostile nftables rule: %v", err)
	}
}

// hostileRules counts the rules left in the hostile chain.
func hostileRules(t *testing.T, srv *netns.Target) int {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(srv.FD()))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := c.GetRules(&nftables.Table{Family: nftables.TableFamilyINet, Name: hostileTable},
		&nftables.Chain{Name: hostileChain})
	if err != nil {
		t.Fatalf("listing the hostile chain: %v", err)
	}
	return len(rules)
}

// dialLoop connects from the client namespace to the hostile listener
// until ctx ends: bounded by the test, one attempt at a time, each
// retried by the kernel.
func dialLoop(ctx context.Context, env *lab.Env) {
	cli, err := netns.Open(env.Client)
	if err != nil {
		return
	}
	defer cli.Close()
	addr := net.JoinHostPort(env.ServerV4.String(), fmt.Sprint(hostilePort))
	for i := 0; i < 100 && ctx.Err() == nil; i++ {
		_ = cli.Do(func() error {
			d := net.Dialer{Timeout: 1500 * time.Millisecond}
			c, err := d.DialContext(ctx, "tcp4", addr)
			if err == nil {
				c.Close()
			}
			return nil
		})
	}
}

// unsafeCString is name as a NUL-terminated byte string for prctl.
func unsafeCString(name string) *byte {
	b := append([]byte(name), 0)
	return &b[0]
}

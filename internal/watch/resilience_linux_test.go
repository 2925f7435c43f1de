package watch

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// buildSynscope builds the command into a temporary directory.
func buildSynscope(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "synscope")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/synscope").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func runNetnsNames(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(netns.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestSIGTERM runs the real command with --repair on a watched namespace,
// deletes its IPv4 default route and sends SIGTERM during the hold-down:
// the process exits 0 within a second, its last line is watch-stopped,
// the endpoint's port is free, and nothing is left behind — no hold file,
// no namespace it created, and no route written after it was told to stop
// (the pending repair is cancelled, not carried out).
func TestSIGTERM(t *testing.T) {
	p := newPair(t, "tm", "s0")
	bin := buildSynscope(t)
	hold := t.TempDir()
	port := freePort(t)
	log := newSink()
	cmd := exec.Command(bin, "watch", "--netns", p.srv.Name, "--listen", port, "--interval", "200ms",
		"--repair", "--hold-down", "1500ms", "--hold-dir", hold, "--log-format", "json")
	cmd.Stdout = log
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	})
	log.wait(t, 0, 10*time.Second, "watch-started", func(f map[string]any) bool { return f["event"] == EventStarted })
	if code, err := httpGet("http://" + port + "/healthz"); err != nil || code != 200 {
		t.Fatalf("healthz: %d %v", code, err)
	}
	before := runNetnsNames(t)

	rt := defaultRoute(t, p.hs, unix.AF_INET)
	if err := p.hs.RouteDel(&rt); err != nil {
		t.Fatal(err)
	}
	log.wait(t, 0, 2*time.Second, "repair scheduled", func(f map[string]any) bool {
		return f["event"] == EventRepair && f["action"] == "scheduled"
	})
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\nstderr: %s", err, stderr.String())
		}
	case <-time.After(3 * time.Second):
		t.Fatal("still running 3s after SIGTERM")
	}
	took := time.Since(t0)
	if took > time.Second {
		t.Errorf("exit took %s after SIGTERM", took)
	}
	lines := log.all(func(map[string]any) bool { return true })
	if last := lines[len(lines)-1]; last.f["event"] != EventStopped {
		t.Errorf("last line is not watch-stopped: %s", last.raw)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
	ln, err := net.Listen("tcp", port)
	if err != nil {
		t.Errorf("the metrics port is still taken: %v", err)
	} else {
		ln.Close()
	}
	if ents, _ := os.ReadDir(hold); len(ents) != 0 {
		t.Errorf("hold dir holds %d files", len(ents))
	}
	// Past the hold-down: the cancelled repair wrote nothing.
	time.Sleep(2 * time.Second)
	for _, r := range p.ownDump(t) {
		if r.Protocol == ProtoSynscope || r.Family == 4 {
			t.Errorf("a route appeared after the exit: %s", r)
		}
	}
	after := runNetnsNames(t)
	for _, n := range after {
		if !slices.Contains(before, n) && strings.Contains(n, "synscope-watch-tm") {
			t.Errorf("namespace %q left behind", n)
		}
	}
	t.Logf("exit %s after SIGTERM", took.Round(time.Millisecond))
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestRunStopsClean: watch with repair and the endpoint runs a repair and
// serves scrapes; when its context ends, Run returns and the process is
// back to its goroutines and file descriptors (netlink, packet and
// listening sockets, namespace handles) from before.
func TestRunStopsClean(t *testing.T) {
	p := newPair(t, "sc", "s0")
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	g0, fd0 := runtime.NumGoroutine(), openFDs(t)

	opts := repairOpts(p.srv.Name, t.TempDir())
	opts.Listen = "127.0.0.1:0"
	d := startWatch(t, opts)
	rt := defaultRoute(t, p.hs, unix.AF_INET)
	if err := p.hs.RouteDel(&rt); err != nil {
		t.Fatal(err)
	}
	d.log.wait(t, 0, 5*time.Second, "repair result", func(f map[string]any) bool {
		return f["event"] == EventRepair && f["action"] == "result"
	})
	c := &http.Client{Timeout: 2 * time.Second}
	for i := 0; i < 3; i++ {
		resp, err := c.Get("http://" + d.addr.String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	c.CloseIdleConnections()
	d.stop()

	deadline := time.Now().Add(3 * time.Second)
	for {
		runtime.GC()
		g, fd := runtime.NumGoroutine(), openFDs(t)
		if g <= g0 && fd <= fd0 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("after Run returned: goroutines %d (before %d), fds %d (before %d)\n%s", g, g0, fd, fd0, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gaugeSeries counts the series of every synscope_ metric carrying
// netns=ns.
func (d *daemon) seriesOf(ns string) int {
	mfs, err := d.m.Registry.Gather()
	if err != nil {
		return -1
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "netns" && lp.GetValue() == ns {
					n++
				}
			}
		}
	}
	return n
}

func (d *daemon) waitSeries(t *testing.T, ns string, gone bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := d.seriesOf(ns)
		if (gone && n == 0) || (!gone && n > 0) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %q: %d series after %s (want gone %v); log:\n%s", ns, n, timeout, gone, d.log.dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failedCollectors counts the collector series at 0 (a read that failed
// or was skipped), over every namespace still exported.
func failedCollectors(d *daemon) int {
	mfs, err := d.m.Registry.Gather()
	if err != nil {
		return -1
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != "synscope_collector_success" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if metricValue(mt) != 1 {
				n++
			}
		}
	}
	return n
}

// TestNetnsDeleted: a watched namespace is deleted: one netns-gone line,
// its series leave /metrics, no error lines and no collector errors, and
// nothing more is logged about it.
func TestNetnsDeleted(t *testing.T) {
	ns := testnet.NewNS(t, "watch-del")
	name := ns.Name
	d := startWatch(t, Options{Netns: []string{name}, Interval: 200 * time.Millisecond, Listen: "127.0.0.1:0"})
	d.waitSeries(t, name, false, time.Second)
	if n := failedCollectors(d); n != 0 {
		t.Fatalf("%d collectors failing before the deletion:\n%s", n, scrape(t, d))
	}
	from := d.log.count()
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	d.log.wait(t, from, 2*time.Second, "netns-gone", eventIs(EventNetnsGone, name, ""))
	d.waitSeries(t, name, true, time.Second)
	time.Sleep(5 * 200 * time.Millisecond) // five intervals more
	if n := len(d.log.all(eventIs(EventNetnsGone, name, ""))); n != 1 {
		t.Errorf("%d netns-gone lines, want 1", n)
	}
	if n := len(d.log.all(func(f map[string]any) bool { return f["level"] == "ERROR" || f["level"] == "WARN" })); n != 0 {
		t.Errorf("%d warning/error lines:\n%s", n, d.log.dump())
	}
	if n := failedCollectors(d); n != 0 {
		t.Errorf("%d collectors failing after the deletion", n)
	}
	body := scrape(t, d)
	if strings.Contains(body, name) {
		t.Error("/metrics still names the deleted namespace")
	}
	if !strings.Contains(body, "synscope_up 1") {
		t.Error("synscope_up is not 1 after the namespace went")
	}
}

func scrape(t *testing.T, d *daemon) string {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + d.addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// privateRunDir points --all-netns at a directory of the test's own and
// bind-mounts namespaces into it, so the test watches only what it made
// (the host's /run/netns holds other tests' namespaces).
type privateRunDir struct {
	dir string
}

func newPrivateRunDir(t testing.TB) *privateRunDir {
	t.Helper()
	dir := t.TempDir()
	return &privateRunDir{dir: dir}
}

// add makes a namespace visible in the directory under name.
func (r *privateRunDir) add(t testing.TB, ns *netns.Target, name string) {
	t.Helper()
	dst := filepath.Join(r.dir, name)
	if err := os.WriteFile(dst, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(ns.Path, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s: %v", ns.Path, err)
	}
	t.Cleanup(func() { r.remove(name) })
}

func (r *privateRunDir) remove(name string) {
	dst := filepath.Join(r.dir, name)
	_ = unix.Unmount(dst, unix.MNT_DETACH)
	_ = os.Remove(dst)
}

// TestAllNetnsFollows: --all-netns watches a namespace created after it
// started and drops one that is deleted (series and all), one line each.
func TestAllNetnsFollows(t *testing.T) {
	rd := newPrivateRunDir(t)
	a := testnet.NewNS(t, "watch-alla")
	rd.add(t, a, "a")
	d := startWatch(t, Options{AllNetns: true, Interval: 200 * time.Millisecond, deps: deps{netnsRunDir: rd.dir}})
	d.waitSeries(t, "a", false, time.Second)
	d.waitSeries(t, "host", false, time.Second)

	b := testnet.NewNS(t, "watch-allb")
	from := d.log.count()
	rd.add(t, b, "b")
	d.log.wait(t, from, 2*time.Second, "netns-added b", eventIs(EventNetnsAdded, "b", ""))
	d.waitSeries(t, "b", false, time.Second)

	from = d.log.count()
	rd.remove("b")
	if err := b.Delete(); err != nil {
		t.Fatal(err)
	}
	d.log.wait(t, from, 2*time.Second, "netns-gone b", eventIs(EventNetnsGone, "b", ""))
	d.waitSeries(t, "b", true, time.Second)
	time.Sleep(3 * 200 * time.Millisecond)
	if n := len(d.log.all(eventIs(EventNetnsAdded, "b", ""))); n != 1 {
		t.Errorf("b added %d times", n)
	}
	if n := d.seriesOf("a"); n == 0 {
		t.Error("a lost its series")
	}
	if n := len(d.log.all(func(f map[string]any) bool { return f["level"] == "ERROR" })); n != 0 {
		t.Errorf("%d error lines:\n%s", n, d.log.dump())
	}
}

// synFlood sends count spoofed SYNs (sources in 198.51.100.0/24, the
// lab's routed spoof prefix) from inside ns to dst, rate-limited to
// perSec, and returns how many it sent. Bounded by count and ctx.
func synFlood(ctx context.Context, ns *netns.Target, dst netip.Addr, port uint16, count, perSec int) (int, error) {
	var fd int
	if err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Addr: dst.As4()}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	const tick = 10 * time.Millisecond
	per := perSec / int(time.Second/tick)
	next := time.Now()
	sent := 0
	for sent < count && ctx.Err() == nil {
		for i := 0; i < per && sent < count; i++ {
			src := netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + rng.IntN(254))})
			if err := unix.Sendto(fd, synPacket(src, dst, uint16(1024+rng.IntN(60000)), port, rng.Uint32()), 0, sa); err != nil {
				return sent, err
			}
			sent++
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
	return sent, nil
}

// synPacket is an IPv4 header and a TCP SYN with checksums.
func synPacket(src, dst netip.Addr, sport, dport uint16, seq uint32) []byte {
	b := make([]byte, 40)
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(b[2:], 40)
	s4, d4 := src.As4(), dst.As4()
	copy(b[12:16], s4[:])
	copy(b[16:20], d4[:])
	binary.BigEndian.PutUint16(b[10:], csum(b[:20], 0))
	tcp := b[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12], tcp[13] = 5<<4, 0x02
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	var ph uint32
	for _, w := range [][]byte{s4[:], d4[:]} {
		ph += uint32(binary.BigEndian.Uint16(w[0:])) + uint32(binary.BigEndian.Uint16(w[2:]))
	}
	ph += unix.IPPROTO_TCP + 20
	binary.BigEndian.PutUint16(tcp[16:], csum(tcp, ph))
	return b
}

func csum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// TestLabSynFloodScrape floods the watched lab server with 120,000
// spoofed SYNs at 40,000 a second (inside the lab: client namespace to
// server, SYN-ACKs routed back to the client, which drops them) while
// /metrics is scraped every 50 ms: every scrape answers, none takes more
// than 1 s, the 99th percentile stays under 250 ms, and the flood reached
// the server.
func TestLabSynFloodScrape(t *testing.T) {
	env := labUp(t, "healthy", "sf")
	d := startWatch(t, Options{Netns: []string{env.Server}, Interval: time.Second, Listen: "127.0.0.1:0"})
	srv, err := netns.Open(env.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := netns.Open(env.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	c0, err := testCounters(srv)
	if err != nil {
		t.Fatal(err)
	}

	const count, rate = 120000, 40000
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		n   int
		err error
	}
	flood := make(chan res, 1)
	start := time.Now()
	go func() {
		n, err := synFlood(ctx, cli, env.ServerV4, env.Port, count, rate)
		flood <- res{n, err}
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	var lat []time.Duration
	var failed []string
	var fr res
	for done := false; !done; {
		select {
		case fr = <-flood:
			done = true
		case <-time.After(50 * time.Millisecond):
		}
		t0 := time.Now()
		resp, err := client.Get("http://" + d.addr.String() + "/metrics")
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			failed = append(failed, fmt.Sprintf("%d %v", resp.StatusCode, err))
			continue
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	if fr.err != nil {
		t.Fatalf("flood: %v after %d SYNs", fr.err, fr.n)
	}
	if len(failed) > 0 {
		t.Errorf("%d scrapes failed during the flood: %v", len(failed), failed)
	}
	if len(lat) < 20 {
		t.Fatalf("only %d scrapes", len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99, max := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	if max > time.Second {
		t.Errorf("slowest scrape %s, want under 1s", max)
	}
	if p99 > 250*time.Millisecond {
		t.Errorf("scrape p99 %s, want under 250ms", p99)
	}
	c1, err := testCounters(srv)
	if err != nil {
		t.Fatal(err)
	}
	delta := counters.Diff(c0, c1)
	in := delta.Get("TcpInSegs")
	if in < int64(fr.n)/2 {
		t.Errorf("the server received %d segments for %d SYNs sent: the flood did not reach it", in, fr.n)
	}
	t.Logf("%d SYNs in %s (%.0f/s); server TcpInSegs +%d, SyncookiesSent +%d, ListenDrops +%d; %d scrapes: p50 %s p99 %s max %s",
		fr.n, elapsed.Round(time.Millisecond), float64(fr.n)/elapsed.Seconds(), in, delta.Get("TcpExtSyncookiesSent"),
		delta.Get("TcpExtListenDrops"), len(lat), p50.Round(time.Microsecond), p99.Round(time.Microsecond), max.Round(time.Microsecond))
}

// testCounters snapshots a namespace's counters (the test's own read).
func testCounters(t *netns.Target) (*counters.Snapshot, error) {
	var s *counters.Snapshot
	err := t.Do(func() error {
		var err error
		s, err = counters.Read(netns.ProcNet)
		return err
	})
	return s, err
}

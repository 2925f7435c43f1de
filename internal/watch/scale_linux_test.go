package watch

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// This file tests watch --all-netns at node scale (bench/watchscale
// measures the same at 100 and 500 namespaces, with the numbers in
// docs/performance.md).

// scaleNS is one namespace of the scale test: a veth pair with both ends
// inside, IPv4 and IPv6 addresses, a default route in each family through
// a gateway on it, and a listener.
type scaleNS struct {
	name string
	t    *netns.Target
	ln   net.Listener
}

var (
	scaleGW4 = net.ParseIP("198.18.0.1")
	scaleGW6 = net.ParseIP("2001:db8:5ca1::1")
)

func newScaleNS(t testing.TB, rd *privateRunDir, name string) *scaleNS {
	t.Helper()
	s := &scaleNS{name: name, t: testnet.NewNS(t, "watch-scale")}
	testnet.Pair(t, s.t, s.t, testnet.PairOptions{NameA: "wan0", NameB: "wan0p", AddrsA: []string{"198.18.0.2/24", "2001:db8:5ca1::2/64"}})
	if err := s.t.Do(func() error {
		for _, gw := range []net.IP{scaleGW4, scaleGW6} {
			if err := s.route(gw, true); err != nil {
				return err
			}
		}
		var err error
		s.ln, err = net.Listen("tcp", "[::]:8080")
		return err
	}); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { s.ln.Close() })
	rd.add(t, s.t, name)
	return s
}

// route adds or deletes the default route through gw (inside s.t.Do).
func (s *scaleNS) route(gw net.IP, add bool) error {
	lk, err := netlink.LinkByName("wan0")
	if err != nil {
		return err
	}
	fam := unix.AF_INET6
	if gw.To4() != nil {
		fam = unix.AF_INET
	}
	r := &netlink.Route{LinkIndex: lk.Attrs().Index, Gw: gw, Family: fam}
	if add {
		return netlink.RouteAdd(r)
	}
	return netlink.RouteDel(r)
}

// remove deletes the namespace as `ip netns del` does: its name goes; the
// listener closes with it.
func (s *scaleNS) remove(t testing.TB, rd *privateRunDir) {
	t.Helper()
	rd.remove(s.name)
	s.ln.Close()
	if err := s.t.Delete(); err != nil {
		t.Fatal(err)
	}
}

// waitAllSeries waits until every namespace in names has want series.
func (d *daemon) waitAllSeries(t *testing.T, names []string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		bad := ""
		for _, n := range names {
			if got := d.seriesOf(n); got != want {
				bad = fmt.Sprintf("%s has %d series, want %d", n, got, want)
				break
			}
		}
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, bad)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAllNetnsScale: --all-netns over 100 namespaces. Each has exactly
// SeriesPerNetns series, the same two intervals later; the exposition is
// served well within the 50 ms budget (the best of 20 handler runs at
// most 25 ms: half the budget, so the floor of a scrape's cost leaves the
// other half for a loaded machine; bench/watchscale states the p99);
// route losses are still seen at once; and 20 namespaces deleted and 20
// created while it runs are followed: one netns-gone and one
// netns-added line each, the deleted ones' series gone, the series,
// descriptors and goroutines back to what they were.
func TestAllNetnsScale(t *testing.T) {
	testnet.NeedRoot(t, "creates network namespaces")
	const n, churn = 100, 20
	const interval = 2 * time.Second
	rd := newPrivateRunDir(t)
	var nss []*scaleNS
	var names []string
	for i := range n {
		s := newScaleNS(t, rd, fmt.Sprintf("s%03d", i))
		nss, names = append(nss, s), append(names, s.name)
	}
	d := startWatch(t, Options{AllNetns: true, Interval: interval, Listen: "127.0.0.1:0", deps: deps{netnsRunDir: rd.dir}})
	// One listener, no tracer, no repair, only the main table, and no
	// route with a lifetime: the two expiry gauges are absent.
	per := SeriesPerNetns(false, false, 0, 1) - 2
	d.waitAllSeries(t, names, per, 3*interval)
	_, total := seriesOf(t, d.m, "")
	time.Sleep(2 * interval)
	d.waitAllSeries(t, names, per, 0)

	// The handler's cost: best of 20, then the wall time of 50 scrapes
	// over HTTP (gzip, as Prometheus asks), logged.
	h := Handler(d.m)
	var best time.Duration
	for i := range 20 {
		req, _ := http.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		w := &discardWriter{h: http.Header{}}
		t0 := time.Now()
		h.ServeHTTP(w, req)
		if el := time.Since(t0); i == 0 || el < best {
			best = el
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var walls []time.Duration
	for range 50 {
		t0 := time.Now()
		resp, err := hc.Get("http://" + d.addr.String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		walls = append(walls, time.Since(t0))
	}
	slices.Sort(walls)
	t.Logf("%d namespaces, %d series (%d each): handler best of 20 %s; 50 scrapes p50 %s p99 %s; load %s",
		n, total, per, best, walls[len(walls)/2], walls[len(walls)*99/100], loadavg())
	if best > 25*time.Millisecond {
		t.Errorf("the exposition of %d namespaces took %s at best, want at most 25ms (half the 50ms budget)", n, best)
	}

	// Route losses in five namespaces across the set.
	for i := 0; i < n; i += n / 5 {
		s := nss[i]
		from := d.log.count()
		t0 := time.Now()
		if err := s.t.Do(func() error { return s.route(scaleGW6, false) }); err != nil {
			t.Fatal(err)
		}
		l := d.log.wait(t, from, time.Second, "route-lost "+s.name, eventIs(EventRouteLost, s.name, "ipv6"))
		t.Logf("%s: route-lost after %s", s.name, l.at.Sub(t0))
		from = d.log.count()
		if err := s.t.Do(func() error { return s.route(scaleGW6, true) }); err != nil {
			t.Fatal(err)
		}
		d.log.wait(t, from, time.Second, "route-restored "+s.name, eventIs(EventRouteRestored, s.name, "ipv6"))
	}

	// Churn.
	runtime.GC()
	fds0, gor0 := openFDs(t), runtime.NumGoroutine()
	from := d.log.count()
	var added []string
	for i := range churn {
		nss[i].remove(t, rd)
		s := newScaleNS(t, rd, fmt.Sprintf("c%03d", i))
		added = append(added, s.name)
	}
	for i := range churn {
		d.log.wait(t, from, 3*interval, "netns-gone "+nss[i].name, eventIs(EventNetnsGone, nss[i].name, ""))
		d.log.wait(t, from, 3*interval, "netns-added "+added[i], eventIs(EventNetnsAdded, added[i], ""))
	}
	d.waitAllSeries(t, added, per, 3*interval)
	d.waitAllSeries(t, names[:churn], 0, 0)
	if _, after := seriesOf(t, d.m, ""); after != total {
		t.Errorf("%d series after the churn, %d before", after, total)
	}
	for _, nm := range append(names[:churn:churn], added...) {
		if k := len(d.log.all(eventIs(EventNetnsAdded, nm, ""))); k != 1 {
			t.Errorf("%s: %d netns-added lines, want 1", nm, k)
		}
	}
	deadline := time.Now().Add(2 * interval)
	for {
		fds, gor := openFDs(t), runtime.NumGoroutine()
		if fds <= fds0 && gor <= gor0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the churn: %d descriptors (%d before), %d goroutines (%d before)", fds, fds0, gor, gor0)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if k := len(d.log.all(func(f map[string]any) bool { return f["level"] == "ERROR" && f["event"] != EventRouteLost })); k != 0 {
		t.Errorf("%d error lines", k)
	}
}

// discardWriter is an http.ResponseWriter that keeps nothing.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(c int)           { w.code = c }

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return string(b[:min(len(b), 15)])
}

// BenchmarkAllNetnsIdle runs --all-netns over 100 namespaces for 10 s
// with a 1 s interval and reports the process's CPU (watch's, the test
// only waits) in millicores: run it with -cpuprofile to see where an idle
// watch spends its time at scale.
//
//	go test -run '^$' -bench AllNetnsIdle -benchtime 1x -cpuprofile /tmp/idle.prof ./internal/watch
func BenchmarkAllNetnsIdle(b *testing.B) {
	testnet.NeedRoot(b, "creates network namespaces")
	rd := newPrivateRunDir(b)
	for i := range 100 {
		newScaleNS(b, rd, fmt.Sprintf("s%03d", i))
	}
	d := startWatch(b, Options{AllNetns: true, Interval: time.Second, deps: deps{netnsRunDir: rd.dir}})
	_ = d
	time.Sleep(2 * time.Second)
	b.ResetTimer()
	cpu0, wall0 := cpuTime(), time.Now()
	time.Sleep(10 * time.Second)
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Since(wall0))*1000, "mCPU")
}

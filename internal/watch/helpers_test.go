package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/netns"
)

func TestMain(m *testing.M) {
	// lab.Up re-executes the test binary as its listener agent.
	lab.MaybeRunAgent()
	os.Exit(m.Run())
}

// logLine is one JSON log line and when the sink received it.
type logLine struct {
	at  time.Time
	raw string
	f   map[string]any
}

// sink collects the daemon's JSON lines with their arrival time.
type sink struct {
	mu    sync.Mutex
	lines []logLine
	buf   bytes.Buffer
	ch    chan struct{}
}

func newSink() *sink { return &sink{ch: make(chan struct{}, 1)} }

func (s *sink) Write(p []byte) (int, error) {
	now := time.Now()
	s.mu.Lock()
	s.buf.Write(p)
	for {
		line, err := s.buf.ReadBytes('\n')
		if err != nil {
			s.buf.Write(line) // partial: keep for the next write
			break
		}
		var f map[string]any
		if json.Unmarshal(line, &f) == nil {
			s.lines = append(s.lines, logLine{at: now, raw: string(line), f: f})
		}
	}
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
	return len(p), nil
}

// wait returns the first line at or after index from that matches, or
// fails the test after timeout.
func (s *sink) wait(t testing.TB, from int, timeout time.Duration, what string, match func(f map[string]any) bool) logLine {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		for i := from; i < len(s.lines); i++ {
			if match(s.lines[i].f) {
				l := s.lines[i]
				s.mu.Unlock()
				return l
			}
		}
		s.mu.Unlock()
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %s log line within %s; log:\n%s", what, timeout, s.dump())
		}
		select {
		case <-s.ch:
		case <-time.After(left):
		}
	}
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

func (s *sink) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b bytes.Buffer
	for _, l := range s.lines {
		b.WriteString(l.raw)
	}
	return b.String()
}

func (s *sink) all(match func(f map[string]any) bool) []logLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logLine
	for _, l := range s.lines {
		if match(l.f) {
			out = append(out, l)
		}
	}
	return out
}

func eventIs(event, ns, family string) func(map[string]any) bool {
	return func(f map[string]any) bool {
		return f["event"] == event && f["netns"] == ns && (family == "" || f["family"] == family)
	}
}

// daemon is a watch running in-process.
type daemon struct {
	m    *Metrics
	log  *sink
	addr net.Addr
	stop func()
}

func startWatch(t testing.TB, opts Options) *daemon {
	t.Helper()
	d := &daemon{m: NewMetrics(), log: newSink()}
	lg, err := NewLogger(d.log, "json") // the daemon's own logger, escaper included
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = lg
	opts.Metrics = d.m
	if opts.SYNTrace == "" {
		// The SYN tracer loads eBPF for the whole host: only the tests
		// about it ask for it.
		opts.SYNTrace = SYNTraceOff
	}
	ready := make(chan net.Addr, 1)
	opts.Ready = func(a net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	select {
	case d.addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("watch did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("watch not ready within 10s")
	}
	var once sync.Once
	d.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("watch: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("watch did not stop within 10s of cancel")
			}
		})
	}
	t.Cleanup(d.stop)
	return d
}

// value reads one series from the registry (ok false when absent).
func (d *daemon) value(name string, labels map[string]string) (float64, bool) {
	mfs, err := d.m.Registry.Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, mt := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range mt.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return metricValue(mt), true
		}
	}
	return 0, false
}

func metricValue(mt *dto.Metric) float64 {
	switch {
	case mt.Gauge != nil:
		return mt.Gauge.GetValue()
	case mt.Counter != nil:
		return mt.Counter.GetValue()
	case mt.Untyped != nil:
		return mt.Untyped.GetValue()
	}
	return 0
}

// waitValue polls a series until it equals want; it returns when it did.
func (d *daemon) waitValue(t testing.TB, timeout time.Duration, name string, labels map[string]string, want float64) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if v, ok := d.value(name, labels); ok && v == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			v, ok := d.value(name, labels)
			t.Fatalf("%s%v = %v (present %v), want %v within %s", name, labels, v, ok, want, timeout)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// waitValueAtLeast polls a series until it reaches min.
func (d *daemon) waitValueAtLeast(t testing.TB, timeout time.Duration, name string, labels map[string]string, min float64) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if v, ok := d.value(name, labels); ok && v >= min {
			return
		}
		if time.Now().After(deadline) {
			v, ok := d.value(name, labels)
			t.Fatalf("%s%v = %v (present %v), want at least %v within %s", name, labels, v, ok, min, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// labUp brings a lab scenario up for one test and removes it after.
func labUp(t testing.TB, scenario, tag string) *lab.Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds lab namespaces")
	}
	prefix := fmt.Sprintf("w%d%s", os.Getpid()%100000, tag)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := lab.Up(ctx, scenario, lab.Options{Prefix: prefix, NoClient: true})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Down(prefix); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return env
}

// nsHandle opens a netlink handle inside namespace name; closed at cleanup.
func nsHandle(t testing.TB, name string) (*netlink.Handle, *netns.Target) {
	t.Helper()
	tg, err := netns.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	nh, err := tg.Handle()
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, tg
}

// defaultRoute finds the main-table default route of a family.
func defaultRoute(t testing.TB, h *netlink.Handle, fam int) netlink.Route {
	t.Helper()
	rs, err := h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			if ones, _ := maskOnes(r); ones == 0 {
				return r
			}
		}
	}
	t.Fatalf("no default route of family %d", fam)
	return netlink.Route{}
}

func maskOnes(r netlink.Route) (int, int) {
	if r.Dst == nil {
		return 0, 0
	}
	return r.Dst.Mask.Size()
}

func field(f map[string]any, path ...string) any {
	var cur any = f
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func httpGet(url string) (int, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

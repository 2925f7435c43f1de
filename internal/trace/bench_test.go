package trace

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/netns"
)

// BenchmarkHandshakeFlood opens b.N TCP connections (bounded, two workers,
// RST-closed so no TIME_WAIT) from the lab client to the lab listener, with
// the tracer off, on with the default per-second sampling, and on with every
// SYN reported. It reports connections per second and system CPU per
// connection (from /proc/stat), so "on" minus "off" is the tracer's cost.
//
//	go test -run '^$' -bench HandshakeFlood -benchtime 20000x ./internal/trace/
func BenchmarkHandshakeFlood(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: lab namespaces and BPF")
	}
	prefix := fmt.Sprintf("trb%d", os.Getpid()%10000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := lab.Up(ctx, "healthy", lab.Options{Prefix: prefix, NoClient: true})
	if err != nil {
		b.Fatalf("lab up: %v", err)
	}
	defer func() { _ = lab.Down(prefix) }()
	cli, err := netns.Open(env.Client)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	srv, err := netns.Open(env.Server)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	dst := netip.AddrPortFrom(env.ServerV4, env.Port)
	// Kernel accounting of BPF run time, for the exact per-SYN cost.
	if st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		defer st.Close()
	}

	for _, mode := range []struct {
		name    string
		on      bool
		samples int
	}{{"off", false, 0}, {"on-sampled", true, 0}, {"on-every-syn", true, -1}, {"off-again", false, 0}} {
		b.Run(mode.name, func(b *testing.B) {
			var tr *Tracer
			var events atomic.Int64
			var wg sync.WaitGroup
			if mode.on {
				var err error
				tr, err = Open(Options{Netns: uint32(srv.Inode), Ports: []uint16{env.Port}, SamplesPerSec: mode.samples})
				if err != nil {
					b.Fatalf("open tracer: %v", err)
				}
				rctx, rcancel := context.WithCancel(context.Background())
				wg.Add(1)
				go func() {
					defer wg.Done()
					eng := NewEngine(time.Second)
					_ = Run(rctx, tr, eng, func(Outcome) { events.Add(1) })
				}()
				defer func() { rcancel(); wg.Wait(); tr.Close() }()
			}
			b.ResetTimer()
			cpu0 := busyJiffies()
			start := time.Now()
			n, fails := flood(cli, dst, b.N, 2, 60*time.Second)
			elapsed := time.Since(start)
			cpu := time.Duration(busyJiffies()-cpu0) * 10 * time.Millisecond
			b.StopTimer()
			if fails > n/100 {
				b.Errorf("%d of %d connections failed", fails, n)
			}
			b.ReportMetric(float64(n)/elapsed.Seconds(), "conn/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(max(n, 1)), "cpu-µs/conn")
			if tr != nil {
				time.Sleep(300 * time.Millisecond)
				c, err := tr.Counters()
				if costs, err := tr.Costs(); err == nil {
					var total time.Duration
					for _, pc := range costs {
						total += pc.Runtime
						if pc.Runs > 0 {
							b.Logf("%-14s %8d runs %6.1f per conn %5d ns/run", pc.Name, pc.Runs, float64(pc.Runs)/float64(max(n, 1)), pc.Runtime.Nanoseconds()/int64(pc.Runs))
						}
					}
					b.ReportMetric(float64(total.Nanoseconds())/float64(max(n, 1)), "bpf-ns/conn")
				}
				if err == nil {
					b.ReportMetric(float64(c.SYNs), "syns-traced")
					b.ReportMetric(float64(c.Unsampled), "syns-counted-only")
					b.ReportMetric(float64(c.Lost), "events-lost")
				}
			}
		})
	}
}

// flood makes n connections with workers goroutines, each on a thread in
// the client namespace; it stops early after limit.
func flood(cli *netns.Target, dst netip.AddrPort, n, workers int, limit time.Duration) (done, fails int) {
	var next, ok, bad atomic.Int64
	deadline := time.Now().Add(limit)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = cli.Do(func() error {
				d := net.Dialer{Timeout: time.Second}
				for next.Add(1) <= int64(n) && time.Now().Before(deadline) {
					c, err := d.Dial("tcp4", dst.String())
					if err != nil {
						bad.Add(1)
						continue
					}
					_ = c.(*net.TCPConn).SetLinger(0)
					_ = c.Close()
					ok.Add(1)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	return int(ok.Load() + bad.Load()), int(bad.Load())
}

// busyJiffies is the machine's non-idle CPU time in USER_HZ ticks.
func busyJiffies() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, s := range f[1:] {
		v, _ := strconv.ParseInt(s, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += v
	}
	return busy
}

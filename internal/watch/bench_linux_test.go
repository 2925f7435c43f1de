package watch

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkDetection measures, on a real kernel, the time from deleting the
// lab server's IPv4 default route to the route-lost log line and to the
// present gauge reading 0: median and p99 over 200 deletions (whatever
// b.N). It then measures the process's CPU and memory idle and under 1,000
// flaps (watch and the flap generator share the process: the flap numbers
// are an upper bound for watch).
//
//	go test -run '^$' -bench Detection -benchtime 1x ./internal/watch
func BenchmarkDetection(b *testing.B) {
	env := labUp(b, "healthy", "bn")
	d := startWatch(b, Options{Netns: []string{env.Server}, Interval: time.Second})
	h, _ := nsHandle(b, env.Server)
	labels := map[string]string{"netns": env.Server, "family": "ipv4", "table": "main"}
	const n = 200
	var logLat, metLat []time.Duration
	b.ResetTimer()
	for i := 0; i < n; i++ {
		rt := defaultRoute(b, h, unix.AF_INET)
		from := d.log.count()
		t0 := time.Now()
		if err := h.RouteDel(&rt); err != nil {
			b.Fatal(err)
		}
		at := d.waitValue(b, time.Second, "synscope_default_route_present", labels, 0)
		metLat = append(metLat, at.Sub(t0))
		l := d.log.wait(b, from, time.Second, "route-lost", eventIs(EventRouteLost, env.Server, "ipv4"))
		logLat = append(logLat, l.at.Sub(t0))
		if err := h.RouteAdd(&rt); err != nil {
			b.Fatal(err)
		}
		d.waitValue(b, time.Second, "synscope_default_route_present", labels, 1)
	}
	b.StopTimer()
	q := func(ds []time.Duration, p float64) float64 {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(logLat, 0.5), "log-median-ms")
	b.ReportMetric(q(logLat, 0.99), "log-p99-ms")
	b.ReportMetric(q(metLat, 0.5), "metric-median-ms")
	b.ReportMetric(q(metLat, 0.99), "metric-p99-ms")

	// Idle: 3 s with nothing happening (interval checks still run).
	cpu0, wall0 := cpuTime(), time.Now()
	time.Sleep(3 * time.Second)
	b.ReportMetric(100*(cpuTime()-cpu0).Seconds()/time.Since(wall0).Seconds(), "idle-cpu-%")
	b.ReportMetric(float64(rssKB())/1024, "idle-rss-MiB")

	// 1,000 flaps (delete + add) as fast as netlink goes.
	rt := defaultRoute(b, h, unix.AF_INET)
	cpu0, wall0 = cpuTime(), time.Now()
	for i := 0; i < 1000; i++ {
		if err := h.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
			b.Fatal(err)
		}
		if err := h.RouteAdd(&rt); err != nil {
			b.Fatal(err)
		}
	}
	d.waitValue(b, 5*time.Second, "synscope_default_route_present", labels, 1)
	time.Sleep(200 * time.Millisecond) // let the loop drain
	wall := time.Since(wall0)
	b.ReportMetric(100*(cpuTime()-cpu0).Seconds()/wall.Seconds(), "flap-cpu-%")
	b.ReportMetric(wall.Seconds(), "flap-wall-s")
	b.ReportMetric(float64(rssKB())/1024, "flap-rss-MiB")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	losses := 0.0
	for _, r := range Reasons {
		v, _ := d.value("synscope_default_route_losses_total", map[string]string{"netns": env.Server, "family": "ipv4", "reason": string(r)})
		losses += v
	}
	b.ReportMetric(losses-n, "flap-losses-counted")
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "detection over %d deletions: log median %.2fms p99 %.2fms, metric median %.2fms p99 %.2fms\n",
			n, q(logLat, 0.5), q(logLat, 0.99), q(metLat, 0.5), q(metLat, 0.99))
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssKB reads VmRSS from /proc/self/status.
func rssKB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.Atoi(f[1])
				return v
			}
		}
	}
	return 0
}

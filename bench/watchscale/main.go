// Command watchscale measures `synscope watch --all-netns` at node scale.
//
// For each size (by default 1, 100 and 500 namespaces) it makes that many
// network namespaces, each with a veth uplink, IPv4 and IPv6 addresses, a
// default route in each family and a TCP listener (kept from one size to
// the next), starts `synscope watch --all-netns --syn-trace on` and
// measures:
//
//   - startup: from exec to the watch-started line;
//   - idle: watch's CPU (/proc/PID/stat) over a window of several
//     intervals, its RSS and peak RSS, threads and descriptors;
//   - /metrics: latency of sequential scrapes (p50, p99, max, to the last
//     byte), the series in total and per namespace;
//   - route-loss detection: the IPv6 default route deleted in one
//     namespace after another, time from the deletion to watch's
//     route-lost line for it (then the route is put back);
//   - churn: namespaces created and deleted at a fixed rate while watch
//     runs (each living longer than one interval), then, after two
//     intervals, whether watch followed every one (netns-added and
//     netns-gone lines), whether their series are gone, and the series,
//     goroutines, descriptors, threads and RSS before and after.
//
// Every namespace is named synscope-wscale-*, stale ones from a killed run
// are deleted on start, and all are deleted on exit. Run as root from the
// repository root through bench/watchscale/run.sh, which builds synscope
// and this command; it takes the flock /tmp/synscope-ns.lock for its whole
// run. Note that --all-netns also watches every other namespace in
// /run/netns; the lock keeps the project's own tests from adding theirs
// meanwhile, and the table counts the series of the harness's namespaces.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/synscope/synscope/bench/internal/procstat"
)

type options struct {
	bin                 string
	sizes               []int
	interval, idle      time.Duration
	scrapes             int
	scrapeEvery         time.Duration
	losses              int
	churnRate           float64
	churnFor, churnLife time.Duration
	jsonOut, lockPath   string
	watchArgs           []string
}

func main() {
	var o options
	sizes := flag.String("sizes", "1,100,500", "namespace counts to measure, ascending")
	flag.StringVar(&o.bin, "bin", "", "synscope binary to measure (required)")
	flag.DurationVar(&o.interval, "interval", 15*time.Second, "watch's --interval (its default is 15s)")
	flag.DurationVar(&o.idle, "idle", 45*time.Second, "idle window for watch's CPU (after one interval of warm-up)")
	flag.IntVar(&o.scrapes, "scrapes", 200, "sequential /metrics scrapes")
	flag.DurationVar(&o.scrapeEvery, "scrape-every", 150*time.Millisecond, "pause between scrapes")
	flag.IntVar(&o.losses, "losses", 20, "IPv6 default routes deleted, one namespace after another")
	flag.Float64Var(&o.churnRate, "churn-rate", 10, "namespaces created (and, churn-life later, deleted) per second during churn; 0: no churn")
	flag.DurationVar(&o.churnFor, "churn-for", 30*time.Second, "how long namespaces are created")
	flag.DurationVar(&o.churnLife, "churn-life", 20*time.Second, "how long each churn namespace lives (more than one interval, so watch sees each)")
	watchArgs := flag.String("watch-args", "", "extra arguments for synscope watch, space-separated")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.lockPath, "lock", "/tmp/synscope-ns.lock", "flock held while the benchmark runs (\"\": the caller holds it)")
	flag.Parse()
	o.watchArgs = strings.Fields(*watchArgs)
	err := parseSizes(*sizes, &o.sizes)
	if err == nil {
		err = run(&o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "watchscale:", err)
		os.Exit(2)
	}
}

func parseSizes(s string, out *[]int) error {
	prev := 0
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 2000 || n <= prev {
			return fmt.Errorf("-sizes %q: want ascending counts from 1 to 2000", s)
		}
		*out = append(*out, n)
		prev = n
	}
	return nil
}

// results is the JSON document.
type results struct {
	procstat.Header
	IntervalS float64      `json:"interval_s"`
	Sizes     []sizeResult `json:"sizes"`
}

func run(o *options) error {
	if err := procstat.Preflight(o.bin); err != nil {
		return err
	}
	if o.interval < time.Second || o.idle <= 0 || o.idle > 30*time.Minute || o.scrapes < 1 || o.scrapes > 10000 ||
		o.losses < 0 || o.losses > 1000 || o.churnRate < 0 || o.churnRate > 100 || o.churnFor > 10*time.Minute || o.churnLife <= o.interval {
		return errors.New("interval ≥ 1s, idle up to 30m, scrapes 1-10000, losses up to 1000, churn-rate up to 100/s for up to 10m, churn-life longer than the interval")
	}
	ctx, end, err := procstat.Begin(o.lockPath)
	if err != nil {
		return err
	}
	defer end()
	res := &results{Header: procstat.NewHeader("synscope.bench.watchscale/v1"), IntervalS: o.interval.Seconds()}
	if err := removeStale(); err != nil {
		return fmt.Errorf("stale namespaces: %w", err)
	}
	b := &bench{o: o}
	defer b.cleanup()
	for _, n := range o.sizes {
		fmt.Fprintf(os.Stderr, "== %d namespaces (load %s)\n", n, procstat.Loadavg())
		r, err := b.measure(ctx, n)
		if err != nil {
			return fmt.Errorf("%d namespaces: %w", n, err)
		}
		res.Sizes = append(res.Sizes, r)
	}
	res.LoadAvgEnd = procstat.Loadavg()
	writeTable(os.Stdout, res)
	return procstat.WriteJSON(o.jsonOut, res)
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/synscope/synscope/bench/internal/procstat"
)

// This file runs the phases for one size and prints the table.

// sizeResult is one size's measurement.
type sizeResult struct {
	Namespaces int     `json:"namespaces"`
	Watched    int     `json:"watched_at_start"`
	LoadAvg    string  `json:"loadavg"`
	LoadAvgEnd string  `json:"loadavg_end"`
	SetupS     float64 `json:"setup_s"`
	StartS     float64 `json:"watch_start_s"`

	IdleMCPU   float64 `json:"idle_mcpu"`
	IdleS      float64 `json:"idle_window_s"`
	RSSMiB     float64 `json:"rss_mib"`
	HWMMiB     float64 `json:"peak_rss_mib"`
	Threads    int     `json:"threads"`
	FDs        int     `json:"fds"`
	Goroutines int     `json:"goroutines"`

	Scrapes       int        `json:"scrapes"`
	ScrapeP50ms   float64    `json:"scrape_p50_ms"`
	ScrapeP99ms   float64    `json:"scrape_p99_ms"`
	ScrapeMaxms   float64    `json:"scrape_max_ms"`
	ScrapeMCPU    float64    `json:"scrape_phase_mcpu"`
	Exposition    exposition `json:"exposition"`
	SeriesPerNS   [2]int     `json:"series_per_namespace_min_max"`
	SeriesHarness int        `json:"series_of_harness_namespaces"`

	LossMs     []float64 `json:"loss_detection_ms"`
	LossP50ms  float64   `json:"loss_p50_ms"`
	LossMaxms  float64   `json:"loss_max_ms"`
	LossMissed int       `json:"losses_missed"`

	Churn *churnResult `json:"churn,omitempty"`

	ErrorLines int `json:"error_lines"`
}

// churnResult says whether watch followed namespaces coming and going.
type churnResult struct {
	Created      int        `json:"created"`
	RatePerS     float64    `json:"achieved_rate_per_s"`
	Added        int        `json:"netns_added_lines"`
	Gone         int        `json:"netns_gone_lines"`
	SeriesLeft   int        `json:"series_of_deleted_left"`
	MCPU         float64    `json:"mcpu"`
	Before       procSample `json:"before"`
	After        procSample `json:"after"`
	LoadAvg      string     `json:"loadavg"`
	CreateFailed int        `json:"create_failed"`
}

// procSample is watch's footprint at one moment.
type procSample struct {
	Series int `json:"series"`
	// Own counts the series without a netns label and those of the
	// harness's namespaces: namespaces other programs make while the
	// harness runs change Series, Watched and the footprint, not Own.
	Own        int     `json:"series_own"`
	Watched    int     `json:"namespaces_watched"`
	Goroutines int     `json:"goroutines"`
	FDs        int     `json:"fds"`
	Threads    int     `json:"threads"`
	RSSMiB     float64 `json:"rss_mib"`
}

// bench holds the namespaces across sizes.
type bench struct {
	o   *options
	nss []*ns
}

func (b *bench) cleanup() {
	for _, n := range b.nss {
		if err := n.remove(); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}
	b.nss = nil
	if err := removeStale(); err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
	}
}

func (b *bench) measure(ctx context.Context, size int) (sizeResult, error) {
	r := sizeResult{Namespaces: size, LoadAvg: procstat.Loadavg()}
	t0 := time.Now()
	for len(b.nss) < size {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		n, err := makeNS(fmt.Sprintf("%s%04d", prefix, len(b.nss)))
		if err != nil {
			return r, err
		}
		b.nss = append(b.nss, n)
	}
	r.SetupS = time.Since(t0).Seconds()

	w, start, err := startWatch(ctx, b.o.bin, b.o.interval, b.o.watchArgs)
	if err != nil {
		return r, err
	}
	defer w.stop()
	r.StartS = start.Seconds()
	if e, err := w.log.wait(ctx, 0, time.Second, func(e event) bool { return e.Event == "watch-started" }); err == nil {
		r.Watched = e.NS
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	sleep := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	cpu := func() time.Duration { return procstat.CPU(w.pid()) }
	mcpu := func(c0 time.Duration, t0 time.Time) float64 {
		return float64(cpu()-c0) / float64(time.Since(t0)) * 1000
	}

	// Idle, after one interval: every namespace has had its first check.
	fmt.Fprintf(os.Stderr, "  idle (%s after %s warm-up)\n", b.o.idle, b.o.interval)
	if err := sleep(b.o.interval + 2*time.Second); err != nil {
		return r, err
	}
	c0, i0 := cpu(), time.Now()
	if err := sleep(b.o.idle); err != nil {
		return r, err
	}
	r.IdleMCPU, r.IdleS = mcpu(c0, i0), time.Since(i0).Seconds()
	r.RSSMiB, r.HWMMiB = procstat.RSS(w.pid()), procstat.HWM(w.pid())
	r.Threads, r.FDs = int(procstat.Status(w.pid(), "Threads")), procstat.FDs(w.pid())

	// Scrapes.
	fmt.Fprintf(os.Stderr, "  %d scrapes\n", b.o.scrapes)
	var lat []float64
	c0, i0 = cpu(), time.Now()
	for range b.o.scrapes {
		d, x, err := scrape(ctx, hc, w.addr)
		if err != nil {
			return r, err
		}
		lat = append(lat, float64(d.Microseconds())/1000)
		r.Exposition = x
		if err := sleep(b.o.scrapeEvery); err != nil {
			return r, err
		}
	}
	r.ScrapeMCPU = mcpu(c0, i0)
	r.Scrapes = len(lat)
	r.ScrapeP50ms, r.ScrapeP99ms, r.ScrapeMaxms = procstat.Quantile(lat, 0.5), procstat.Quantile(lat, 0.99), slices.Max(lat)
	r.Goroutines = int(r.Exposition.Values["go_goroutines"])
	r.SeriesPerNS, r.SeriesHarness = perNS(r.Exposition, b.nss[:size])

	// Route-loss detection, one namespace after another across the set.
	fmt.Fprintf(os.Stderr, "  %d route losses\n", b.o.losses)
	for i := range b.o.losses {
		n := b.nss[i*size/max(b.o.losses, 1)%size]
		from := w.log.mark()
		t := time.Now()
		if err := n.setDefault6(false); err != nil {
			return r, fmt.Errorf("delete route in %s: %w", n.name, err)
		}
		e, err := w.log.wait(ctx, from, 10*time.Second, func(e event) bool {
			return e.Event == "route-lost" && e.Netns == n.name && e.Family == "ipv6"
		})
		if err != nil {
			r.LossMissed++
		} else {
			r.LossMs = append(r.LossMs, float64(e.at.Sub(t).Microseconds())/1000)
		}
		from = w.log.mark()
		if err := n.setDefault6(true); err != nil {
			return r, fmt.Errorf("re-add route in %s: %w", n.name, err)
		}
		if _, err := w.log.wait(ctx, from, 10*time.Second, func(e event) bool {
			return (e.Event == "route-restored" || e.Event == "route-added") && e.Netns == n.name
		}); err != nil {
			return r, fmt.Errorf("%s: route back not seen: %w", n.name, err)
		}
		if err := sleep(700 * time.Millisecond); err != nil {
			return r, err
		}
	}
	if len(r.LossMs) > 0 {
		r.LossP50ms, r.LossMaxms = procstat.Quantile(r.LossMs, 0.5), slices.Max(r.LossMs)
	}

	if b.o.churnRate > 0 {
		c, err := b.churn(ctx, w, hc, sleep)
		if err != nil {
			return r, err
		}
		r.Churn = c
	}
	r.ErrorLines = w.log.count(0, func(e event) bool { return e.Level == "ERROR" && e.Event != "route-lost" })
	r.LoadAvgEnd = procstat.Loadavg()
	if !w.alive() {
		return r, fmt.Errorf("watch exited during the run")
	}
	return r, nil
}

// perNS gives the least and most series of the harness's namespaces, and
// their sum.
func perNS(x exposition, nss []*ns) ([2]int, int) {
	lo, hi, sum := -1, 0, 0
	for _, n := range nss {
		c := x.ByNetns[n.name]
		sum += c
		if lo < 0 || c < lo {
			lo = c
		}
		hi = max(hi, c)
	}
	return [2]int{max(lo, 0), hi}, sum
}

// sampleProc reads watch's footprint, with a scrape for its series.
func sampleProc(ctx context.Context, w *watchProc, hc *http.Client) (procSample, error) {
	_, x, err := scrape(ctx, hc, w.addr)
	if err != nil {
		return procSample{}, err
	}
	own := x.Unlabelled
	for n, k := range x.ByNetns {
		if strings.HasPrefix(n, prefix) {
			own += k
		}
	}
	return procSample{Series: x.Series, Own: own, Watched: len(x.ByNetns), Goroutines: int(x.Values["go_goroutines"]), FDs: procstat.FDs(w.pid()),
		Threads: int(procstat.Status(w.pid(), "Threads")), RSSMiB: procstat.RSS(w.pid())}, nil
}

// churn creates namespaces at the rate for churnFor, deletes each after
// churnLife, waits two intervals and checks that watch followed.
func (b *bench) churn(ctx context.Context, w *watchProc, hc *http.Client, sleep func(time.Duration) error) (*churnResult, error) {
	o := b.o
	fmt.Fprintf(os.Stderr, "  churn: %.0f/s for %s, each living %s\n", o.churnRate, o.churnFor, o.churnLife)
	c := &churnResult{LoadAvg: procstat.Loadavg()}
	var err error
	if c.Before, err = sampleProc(ctx, w, hc); err != nil {
		return nil, err
	}
	from := w.log.mark()
	type born struct {
		n  *ns
		at time.Time
	}
	var live []born
	defer func() {
		for _, x := range live {
			_ = x.n.remove()
		}
	}()
	names := map[string]bool{}
	c0, t0 := procstat.CPU(w.pid()), time.Now()
	every := time.Duration(float64(time.Second) / o.churnRate)
	next := t0
	for i := 0; time.Since(t0) < o.churnFor || len(live) > 0; {
		now := time.Now()
		for len(live) > 0 && (now.Sub(live[0].at) >= o.churnLife || now.Sub(t0) >= o.churnFor+o.churnLife) {
			if err := live[0].n.remove(); err != nil {
				return nil, err
			}
			live = live[1:]
		}
		if now.Sub(t0) < o.churnFor && !now.Before(next) {
			name := fmt.Sprintf("%sc%05d", prefix, i)
			i++
			n, err := makeNS(name)
			if err != nil {
				c.CreateFailed++
				fmt.Fprintln(os.Stderr, "  churn:", err)
			} else {
				n.t.Close() // the name keeps it; remove deletes the name
				live = append(live, born{n, time.Now()})
				names[name] = true
				c.Created++
			}
			next = next.Add(every)
			continue
		}
		if err := sleep(10 * time.Millisecond); err != nil {
			return nil, err
		}
	}
	c.RatePerS = float64(c.Created) / o.churnFor.Seconds()
	// Two intervals: discovery and the loops' presence checks run once
	// each per interval.
	if err := sleep(2*o.interval + 5*time.Second); err != nil {
		return nil, err
	}
	c.MCPU = float64(procstat.CPU(w.pid())-c0) / float64(time.Since(t0)) * 1000
	c.Added = w.log.count(from, func(e event) bool { return e.Event == "netns-added" && names[e.Netns] })
	c.Gone = w.log.count(from, func(e event) bool { return e.Event == "netns-gone" && names[e.Netns] })
	_, x, err := scrape(ctx, hc, w.addr)
	if err != nil {
		return nil, err
	}
	for ns, k := range x.ByNetns {
		if names[ns] {
			c.SeriesLeft += k
		}
	}
	if c.After, err = sampleProc(ctx, w, hc); err != nil {
		return nil, err
	}
	return c, nil
}

func writeTable(w io.Writer, r *results) {
	fmt.Fprintf(w, "watch --all-netns --syn-trace on, interval %.0fs; %d CPUs, kernel %s; load %s → %s\n\n",
		r.IntervalS, r.CPUs, r.Kernel, r.LoadAvgStart, r.LoadAvgEnd)
	fmt.Fprintln(w, "| namespaces | start | idle CPU | RSS (peak) | threads / fds / goroutines | scrape p50 / p99 / max | series (per namespace) | route-loss p50 / max (missed) | load |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, s := range r.Sizes {
		fmt.Fprintf(w, "| %d (%d watched) | %.2f s | %.1f mCPU | %.0f MiB (%.0f) | %d / %d / %d | %.1f / %.1f / %.1f ms | %d (%d–%d) | %.2f / %.2f ms (%d) | %s |\n",
			s.Namespaces, s.Watched, s.StartS, s.IdleMCPU, s.RSSMiB, s.HWMMiB, s.Threads, s.FDs, s.Goroutines,
			s.ScrapeP50ms, s.ScrapeP99ms, s.ScrapeMaxms, s.Exposition.Series, s.SeriesPerNS[0], s.SeriesPerNS[1],
			s.LossP50ms, s.LossMaxms, s.LossMissed, s.LoadAvg)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| namespaces | churn created (rate) | netns-added / gone lines | series of deleted left | churn CPU | watched before → after | own series before → after | goroutines | fds | threads | RSS | load |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range r.Sizes {
		c := s.Churn
		if c == nil {
			continue
		}
		fmt.Fprintf(w, "| %d | %d (%.1f/s, %d failed) | %d / %d | %d | %.1f mCPU | %d → %d | %d → %d | %d → %d | %d → %d | %d → %d | %.0f → %.0f MiB | %s |\n",
			s.Namespaces, c.Created, c.RatePerS, c.CreateFailed, c.Added, c.Gone, c.SeriesLeft, c.MCPU,
			c.Before.Watched, c.After.Watched, c.Before.Own, c.After.Own, c.Before.Goroutines, c.After.Goroutines, c.Before.FDs, c.After.FDs,
			c.Before.Threads, c.After.Threads, c.Before.RSSMiB, c.After.RSSMiB, c.LoadAvg)
	}
	var errs []string
	for _, s := range r.Sizes {
		if s.ErrorLines > 0 {
			errs = append(errs, fmt.Sprintf("%d namespaces: %d error lines", s.Namespaces, s.ErrorLines))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintln(w, "\nwatch logged errors:", strings.Join(errs, "; "))
	}
}

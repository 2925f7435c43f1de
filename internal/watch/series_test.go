package watch

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/synscope/synscope/internal/report"
)

// fillNetns gives namespace ns every series a loop can give it: routes in
// both families of main and in table 100 for IPv4, expiring routes, each
// collector's check and n listeners.
func fillNetns(m *Metrics, ns string, repair bool, listeners int) {
	m.initNetns(ns, repair)
	m.setPresent(ns, famTable{4, 254}, true)
	m.setPresent(ns, famTable{6, 254}, true)
	m.setPresent(ns, famTable{4, 100}, false)
	m.setExpiry(ns, 4, 30, true)
	m.setExpiry(ns, 6, 30, true)
	for _, c := range watchCollectors {
		m.check(ns, report.Check{Name: c, Status: report.Ran, DurationMS: 1})
	}
	var ls []listenerSample
	for i := range listeners {
		ls = append(ls, listenerSample{name: fmt.Sprintf("[::]:%d", 1000+i), drops: float64(i)})
	}
	m.setListeners(ns, ls)
	for _, fam := range []int{4, 6} {
		for _, r := range Reasons {
			m.loss(ns, fam, r)
		}
	}
}

// seriesOf counts the series labelled netns=ns, and all series.
func seriesOf(t testing.TB, m *Metrics, ns string) (int, int) {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n, all := 0, 0
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			all++
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == "netns" && lp.GetValue() == ns {
					n++
				}
			}
		}
	}
	return n, all
}

// TestSeriesPerNetns: a namespace with every series a loop can give it
// has exactly SeriesPerNetns of them, whatever the options, and none once
// dropped; series of causes the counters never attribute are not made,
// trace series only while the tracer runs, repair series only with repair.
func TestSeriesPerNetns(t *testing.T) {
	for _, tc := range []struct {
		repair, trace bool
		listeners     int
	}{{false, false, 1}, {false, true, 1}, {true, false, 0}, {true, true, 3}, {false, true, MaxListeners + 10}} {
		t.Run(fmt.Sprintf("repair=%v,trace=%v,listeners=%d", tc.repair, tc.trace, tc.listeners), func(t *testing.T) {
			m := NewMetrics()
			_, base := seriesOf(t, m, "")
			fillNetns(m, "a", tc.repair, tc.listeners)
			if tc.trace {
				m.traceStarted([]string{"a"})
				fillNetns(m, "b", tc.repair, tc.listeners) // initialised after the start
			} else {
				fillNetns(m, "b", tc.repair, tc.listeners)
			}
			want := SeriesPerNetns(tc.repair, tc.trace, 1, tc.listeners)
			for _, ns := range []string{"a", "b"} {
				if got, _ := seriesOf(t, m, ns); got != want {
					t.Errorf("%s: %d series, SeriesPerNetns says %d", ns, got, want)
				}
			}
			d := &daemon{m: m}
			_, trace := d.value("synscope_syn_drops_total", map[string]string{"netns": "b", "source": "trace"})
			if trace != tc.trace {
				t.Errorf("trace series present %v with the tracer running %v", trace, tc.trace)
			}
			_, rep := d.value("synscope_route_repairs_total", map[string]string{"netns": "b"})
			if rep != tc.repair {
				t.Errorf("repair series present %v with repair %v", rep, tc.repair)
			}
			// A cause the counters never attribute has no counters series.
			if _, ok := d.value("synscope_syn_drops_total", map[string]string{"netns": "b", "cause": "firewall-drop", "source": "counters"}); ok {
				t.Error("firewall-drop has a source=counters series: no counter attributes it")
			}
			if _, ok := d.value("synscope_syn_drops_total", map[string]string{"netns": "b", "cause": "accept-queue-overflow", "source": "counters"}); !ok {
				t.Error("accept-queue-overflow has no source=counters series")
			}
			m.dropNetns("a")
			m.dropNetns("b")
			if got, all := seriesOf(t, m, "a"); got != 0 || all > base+2 {
				t.Errorf("after the drop: %d series of a, %d in all (%d before any namespace)", got, all, base)
			}
		})
	}
}

// BenchmarkScrape serves /metrics for 100 namespaces of the benchmark's
// shape (bench/watchscale: default routes in both families, one
// listener, the tracer on), with and without gzip.
//
//	go test -run '^$' -bench Scrape ./internal/watch
func BenchmarkScrape(b *testing.B) {
	m := NewMetrics()
	m.traceStarted(nil)
	for i := range 100 {
		ns := fmt.Sprintf("synscope-wscale-%04d", i)
		fillNetns(m, ns, false, 1)
		m.setExpiry(ns, 4, 0, false)
		m.setExpiry(ns, 6, 0, false)
	}
	h := Handler(m)
	for _, enc := range []string{"identity", "gzip"} {
		b.Run(enc, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", "/metrics", nil)
				req.Header.Set("Accept-Encoding", enc)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
				_, _ = io.Copy(io.Discard, w.Body)
			}
		})
	}
}

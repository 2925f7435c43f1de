package watch

import (
	"sort"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/collect"
	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/report"
)

// Repair results (label "result" of synscope_route_repairs_total).
const (
	RepairRestoredByRA  = "restored-by-ra"
	RepairReadded       = "readded"
	RepairDryRun        = "dry-run"
	RepairRefused       = "refused"
	RepairFailed        = "failed"
	RepairRateLimited   = "rate-limited"
	RepairHeld          = "held"
	RepairNotNeeded     = "not-needed"
	RepairVerifyFailed  = "verify-failed"
	RepairLeftToOwner   = "left-to-owner"
	repairResultsLength = 10
)

// RepairResults lists every repair result (series initialised to 0).
var RepairResults = []string{
	RepairRestoredByRA, RepairReadded, RepairDryRun, RepairRefused, RepairFailed,
	RepairRateLimited, RepairHeld, RepairNotNeeded, RepairVerifyFailed, RepairLeftToOwner,
}

// MaxListeners caps the listener series per namespace: the top ones by
// drops, then one "other" aggregate.
const MaxListeners = 50

// OtherListener is the listener label of the aggregate.
const OtherListener = "other"

// Metrics holds the daemon's Prometheus metrics. One per Run; no globals.
type Metrics struct {
	Registry *prometheus.Registry

	present      *prometheus.GaugeVec
	losses       *prometheus.CounterVec
	expiry       *prometheus.GaugeVec
	atRisk       *prometheus.GaugeVec
	synDrops     *prometheus.CounterVec
	synTraceUp   prometheus.Gauge
	repairs      *prometheus.CounterVec
	up           prometheus.Gauge
	lastCheck    prometheus.Gauge
	collectorOK  *prometheus.GaugeVec
	collectorDur *prometheus.GaugeVec
	fateReqs     *prometheus.CounterVec
	fateDropped  prometheus.Counter

	mu        sync.Mutex
	listeners map[string][]listenerSample // netns → capped samples
	// tracing: the SYN tracer runs, so namespaces get trace series.
	tracing bool
}

type listenerSample struct {
	name          string
	accept, limit float64
	drops         float64
}

// NewMetrics registers every metric on a fresh registry, plus the Go and
// process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		present: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "synscope_default_route_present",
			Help: "1 when the namespace has a default route the kernel would use in this family and table, 0 when it has none.",
		}, []string{"netns", "family", "table"}),
		losses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synscope_default_route_losses_total",
			Help: "Default routes lost, by the reason watch attributed.",
		}, []string{"netns", "family", "reason"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "synscope_default_route_expiry_seconds",
			Help: "Seconds until the earliest-expiring usable default route with a lifetime (RA-learned) expires; absent when none has one.",
		}, []string{"netns", "family"}),
		atRisk: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "synscope_default_route_at_risk",
			Help: "1 while a default route is at risk (risk: forwarding-accept-ra, lifetime-low, gateway-failed, carrier-lost).",
		}, []string{"netns", "family", "risk"}),
		synDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synscope_syn_drops_total",
			Help: "SYNs dropped since watch started by catalog cause; source=counters: the kernel counters attributed each interval (always), source=trace: each SYN's fate from eBPF tracepoints (where they load). Sum one source, never both.",
		}, []string{"netns", "cause", "source"}),
		synTraceUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "synscope_syn_trace_up",
			Help: "1 while per-SYN drop attribution (eBPF tracepoints) runs.",
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synscope_route_repairs_total",
			Help: "Repair decisions and their results.",
		}, []string{"netns", "family", "result"}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "synscope_up",
			Help: "1 while the watch daemon runs.",
		}),
		lastCheck: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "synscope_last_check_timestamp_seconds",
			Help: "Unix time of the last completed interval check.",
		}),
		collectorOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "synscope_collector_success",
			Help: "1 when the collector's last read in the namespace succeeded, 0 when it failed or was skipped (the log says why): internal/collect's sources counters, listeners, sysctls, and watch's own reads routes, neighbours, links, monitor.",
		}, []string{"netns", "collector"}),
		collectorDur: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "synscope_collector_duration_seconds",
			Help: "How long the collector's last read in the namespace took.",
		}, []string{"netns", "collector"}),
		fateReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synscope_fate_api_requests_total",
			Help: "Fate API requests (--fate-api) by HTTP status: 200 served, 400 bad request, 401 not TLS-authenticated, 429 rate or concurrency limit, 503 tracer not running or web config lost TLS or auth.",
		}, []string{"code"}),
		fateDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synscope_fate_api_dropped_total",
			Help: "Fates a fate API request matched but lost because its reader was slower than the tracer (the request's done line counts them too).",
		}),
		listeners: map[string][]listenerSample{},
	}
	bi := buildinfo.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "synscope_build_info",
		Help:        "Always 1; the labels say which synscope runs (as `synscope version`).",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Commit, "goversion": bi.GoVersion},
	})
	build.Set(1)
	m.Registry.MustRegister(m.present, m.losses, m.expiry, m.atRisk, m.synDrops, m.synTraceUp, m.repairs,
		m.up, m.lastCheck, m.collectorOK, m.collectorDur, m.fateReqs, m.fateDropped, listenerCollector{m}, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchCollectors are the reads each namespace records as a check
// (synscope_collector_success and _duration_seconds): neighbours only
// while a default route has a gateway.
var watchCollectors = []string{checkMonitor, checkLinks, checkRoutes, checkNeighbours, collect.Sysctls, collect.Counters, collect.Listeners}

// SeriesPerNetns is how many series one watched namespace has, at most:
// presence for the main table in both families and for each other
// family/table pair seen holding a default route (extraTables), two
// expiry gauges, the
// losses by family and reason, the risks, the SYN drops of the causes
// the counters attribute (and of every cause while the tracer runs), the
// repair results when repair is on, two series per collector, and three
// per listener up to MaxListeners, then the "other" aggregate's two
// gauges and its drop gauge. Nothing else carries a netns label, so the
// series of N namespaces are at most N times this (docs/watch.md).
func SeriesPerNetns(repair, trace bool, extraTables, listeners int) int {
	n := 2 + extraTables + 2 + 2*len(Reasons) + 2*len(riskKinds) + 2*len(watchCollectors)
	for _, c := range causes.All() {
		if len(c.DropCounters) > 0 {
			n++
		}
		if trace {
			n++
		}
	}
	if repair {
		n += 2 * len(RepairResults)
	}
	if listeners > MaxListeners {
		return n + 3*MaxListeners + 3
	}
	return n + 3*listeners
}

// initNetns creates at 0 every series of a namespace that something
// running can move, so that a rate over it starts from the first scrape:
// the loss reasons, the risks, the SYN drops of the causes the kernel
// counters attribute (the catalog's DropCounters: the other causes never
// get a source="counters" count), the traced drops of every cause while
// the tracer runs (initTrace), and the repair results when repair is on.
// A series that nothing can move is not created: a zero there would say
// "checked, none" for what nothing checks. Per namespace, with the main
// table in both families and one listener: see SeriesPerNetns.
func (m *Metrics) initNetns(ns string, repair bool) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, r := range Reasons {
			m.losses.WithLabelValues(ns, fam, string(r))
		}
		if repair {
			for _, r := range RepairResults {
				m.repairs.WithLabelValues(ns, fam, r)
			}
		}
		for _, r := range riskKinds {
			m.atRisk.WithLabelValues(ns, fam, r).Set(0)
		}
	}
	for _, c := range causes.All() {
		if len(c.DropCounters) > 0 {
			m.synDrops.WithLabelValues(ns, string(c.ID), "counters")
		}
	}
	m.mu.Lock()
	trace := m.tracing
	m.mu.Unlock()
	if trace {
		m.initTrace(ns)
	}
}

// initTrace creates a namespace's source="trace" series at 0.
func (m *Metrics) initTrace(ns string) {
	for _, c := range causes.All() {
		m.synDrops.WithLabelValues(ns, string(c.ID), "trace")
	}
}

// traceStarted marks the tracer running: the namespaces in ns, and every
// namespace initialised from now on, get their source="trace" series.
func (m *Metrics) traceStarted(ns []string) {
	m.mu.Lock()
	m.tracing = true
	m.mu.Unlock()
	for _, n := range ns {
		m.initTrace(n)
	}
	m.synTraceUp.Set(1)
}

// dropNetns removes a namespace's series (it is gone).
func (m *Metrics) dropNetns(ns string) {
	l := prometheus.Labels{"netns": ns}
	m.present.DeletePartialMatch(l)
	m.losses.DeletePartialMatch(l)
	m.expiry.DeletePartialMatch(l)
	m.atRisk.DeletePartialMatch(l)
	m.synDrops.DeletePartialMatch(l)
	m.repairs.DeletePartialMatch(l)
	m.collectorOK.DeletePartialMatch(l)
	m.collectorDur.DeletePartialMatch(l)
	m.mu.Lock()
	delete(m.listeners, ns)
	m.mu.Unlock()
}

func (m *Metrics) setPresent(ns string, ft famTable, v bool) {
	x := 0.0
	if v {
		x = 1
	}
	m.present.WithLabelValues(ns, FamilyName(ft.fam), TableName(ft.table)).Set(x)
}

func (m *Metrics) loss(ns string, fam int, r Reason) {
	m.losses.WithLabelValues(ns, FamilyName(fam), string(r)).Inc()
}

func (m *Metrics) repair(ns string, fam int, result string) {
	m.repairs.WithLabelValues(ns, FamilyName(fam), result).Inc()
}

func (m *Metrics) setExpiry(ns string, fam int, secs float64, ok bool) {
	if !ok {
		m.expiry.DeleteLabelValues(ns, FamilyName(fam))
		return
	}
	m.expiry.WithLabelValues(ns, FamilyName(fam)).Set(secs)
}

func (m *Metrics) setRisk(ns string, fam int, risk string, on bool) {
	x := 0.0
	if on {
		x = 1
	}
	m.atRisk.WithLabelValues(ns, FamilyName(fam), risk).Set(x)
}

// check exports one collector's last read.
func (m *Metrics) check(ns string, c report.Check) {
	ok := 0.0
	if c.Status == report.Ran {
		ok = 1
	}
	m.collectorOK.WithLabelValues(ns, c.Name).Set(ok)
	m.collectorDur.WithLabelValues(ns, c.Name).Set(c.DurationMS / 1000)
}

func (m *Metrics) addSynDrops(ns string, by map[causes.ID]uint64) {
	for id, n := range by {
		if n > 0 {
			m.synDrops.WithLabelValues(ns, string(id), "counters").Add(float64(n))
		}
	}
}

// addTracedDrop counts one SYN the trace engine saw dropped.
func (m *Metrics) addTracedDrop(ns string, id causes.ID) {
	m.synDrops.WithLabelValues(ns, string(id), "trace").Inc()
}

// setListeners stores a namespace's listeners, capped: the MaxListeners
// with most drops (ties by name), the rest summed into "other".
func (m *Metrics) setListeners(ns string, all []listenerSample) {
	sort.Slice(all, func(i, j int) bool {
		if all[i].drops != all[j].drops {
			return all[i].drops > all[j].drops
		}
		return all[i].name < all[j].name
	})
	out := all
	if len(all) > MaxListeners {
		out = append([]listenerSample(nil), all[:MaxListeners]...)
		o := listenerSample{name: OtherListener}
		for _, l := range all[MaxListeners:] {
			o.accept += l.accept
			o.limit += l.limit
			o.drops += l.drops
		}
		out = append(out, o)
	}
	m.mu.Lock()
	m.listeners[ns] = out
	m.mu.Unlock()
}

var (
	descAccept = prometheus.NewDesc("synscope_listener_accept_queue",
		"Connections waiting in the listener's accept queue (at most "+strconv.Itoa(MaxListeners)+" listeners per namespace, the rest summed as \"other\").",
		[]string{"netns", "listener"}, nil)
	descBacklog = prometheus.NewDesc("synscope_listener_backlog",
		"The listener's accept-queue limit, min(backlog, somaxconn).",
		[]string{"netns", "listener"}, nil)
	descLDrops = prometheus.NewDesc("synscope_listener_drops_total",
		"The listener's own drop counter (sk_drops: ListenDrops for this socket); the "+strconv.Itoa(MaxListeners)+" listeners with most drops per namespace, the rest in synscope_listener_other_drops.",
		[]string{"netns", "listener"}, nil)
	// The rest's drops are a sum over a set of listeners that changes
	// between scrapes (one leaves the top list, another enters it): the
	// sum can go down, so it is a gauge, never a counter whose rate would
	// read each change as a reset and a spike.
	descOtherDrops = prometheus.NewDesc("synscope_listener_other_drops",
		"Sum of the drop counters (sk_drops) of the listeners beyond the "+strconv.Itoa(MaxListeners)+" with most drops (listener=\"other\" of the other listener series). A gauge: its members change between scrapes.",
		[]string{"netns"}, nil)
)

// listenerCollector exports the stored listener samples.
type listenerCollector struct{ m *Metrics }

func (c listenerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAccept
	ch <- descBacklog
	ch <- descLDrops
	ch <- descOtherDrops
}

func (c listenerCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for ns, ls := range c.m.listeners {
		for _, l := range ls {
			ch <- prometheus.MustNewConstMetric(descAccept, prometheus.GaugeValue, l.accept, ns, l.name)
			ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, l.limit, ns, l.name)
			if l.name == OtherListener {
				ch <- prometheus.MustNewConstMetric(descOtherDrops, prometheus.GaugeValue, l.drops, ns)
				continue
			}
			ch <- prometheus.MustNewConstMetric(descLDrops, prometheus.CounterValue, l.drops, ns, l.name)
		}
	}
}

// attributeDrops splits the SYN drops of one interval's counter deltas
// into catalog causes (causes.AttributeDrops: the catalog owns which
// counter counts which drop).
func attributeDrops(d counters.Delta) map[causes.ID]uint64 {
	return causes.AttributeDrops(d.Get)
}

// fateRequest counts one fate API answer by its status code.
func (m *Metrics) fateRequest(code int) { m.fateReqs.WithLabelValues(strconv.Itoa(code)).Inc() }

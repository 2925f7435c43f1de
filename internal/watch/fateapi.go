package watch

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"

	"github.com/synscope/synscope/internal/fateapi"
	"github.com/synscope/synscope/internal/safetext"
	"github.com/synscope/synscope/internal/trace"
)

// The fate API (--fate-api): POST /api/v1/fates answers, for a bounded
// time and only for the flows the caller names, the fate the trace engine
// gave each of their SYNs. It is served only over TLS with authentication
// (checked at start and on every request), rate-limited, capped in
// concurrent requests and in duration, and never blocks the tracer.

// Fate API limits and defaults.
const (
	// FateAPIConcurrent caps requests being served at once.
	FateAPIConcurrent = 4
	// DefaultFateAPIRate is requests per minute (token bucket).
	DefaultFateAPIRate = 10
	// fateAPIBurst is the bucket's size: requests allowed back to back.
	fateAPIBurst = 3
	// fateSubBuffer is each request's queue of matched fates; a reader
	// slower than the tracer loses fates (counted, said in "done").
	fateSubBuffer = 256
	// fateWriteTimeout bounds the write of one response line.
	fateWriteTimeout = 5 * time.Second
)

// checkFateWebConfig is the gate: the exporter-toolkit web config at path
// must serve TLS (a certificate and key that load) and authenticate every
// request (basic_auth_users, or client certificates required and
// verified). Otherwise the fate API is not served at all.
func checkFateWebConfig(path string) error {
	if path == "" {
		return errors.New("no --web.config.file: the fate API is served only over TLS with authentication")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("web config: %w", err)
	}
	var c web.Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return fmt.Errorf("web config %s: %w", path, err)
	}
	c.TLSConfig.SetDirectory(filepath.Dir(path))
	if !c.TLSConfig.IsEnabled() {
		return fmt.Errorf("web config %s has no tls_server_config: the fate API is served only over TLS", path)
	}
	if _, err := web.ConfigToTLSConfig(&c.TLSConfig); err != nil {
		return fmt.Errorf("web config %s: TLS does not load: %w", path, err)
	}
	if len(c.Users) == 0 && c.TLSConfig.ClientAuth != "RequireAndVerifyClientCert" {
		return fmt.Errorf("web config %s authenticates nobody (no basic_auth_users, client_auth_type is not RequireAndVerifyClientCert): the fate API is served only to authenticated callers", path)
	}
	return nil
}

// fateSub is one request's subscription.
type fateSub struct {
	filter *fateapi.Filter
	ch     chan fateapi.Fate
	// stop receives why the tracer stopped (buffered 1).
	stop    chan string
	dropped int // under fateHub.mu
}

// fateHub fans the tracer's outcomes out to the requests being served.
// publish never blocks: a full queue drops the fate and counts it.
type fateHub struct {
	mu   sync.Mutex
	subs map[*fateSub]struct{}
	// onDrop counts a dropped fate (metrics).
	onDrop func()
}

func newFateHub(onDrop func()) *fateHub {
	return &fateHub{subs: map[*fateSub]struct{}{}, onDrop: onDrop}
}

func (h *fateHub) subscribe(f *fateapi.Filter) *fateSub {
	s := &fateSub{filter: f, ch: make(chan fateapi.Fate, fateSubBuffer), stop: make(chan string, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// unsubscribe removes s and returns how many of its fates were dropped.
func (h *fateHub) unsubscribe(s *fateSub) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
	return s.dropped
}

// active is true while a request is being served (the tracer converts
// outcomes only then).
func (h *fateHub) active() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}

// publish hands x to every subscription whose filter matches it.
func (h *fateHub) publish(x fateapi.Fate) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if !s.filter.Match(x) {
			continue
		}
		select {
		case s.ch <- x:
		default:
			s.dropped++
			if h.onDrop != nil {
				h.onDrop()
			}
		}
	}
}

// stopped tells every subscription the tracer stopped.
func (h *fateHub) stopped(why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.stop <- why:
		default:
		}
	}
}

// tokenBucket limits requests: rate per second, at most burst at once.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(perMinute, burst int) *tokenBucket {
	return &tokenBucket{rate: float64(perMinute) / 60, burst: float64(burst), tokens: float64(burst)}
}

// take spends a token at now; when none is left it says how long until
// one is.
func (b *tokenBucket) take(now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
	if b.tokens >= 1-1e-9 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// traceStatus is the SYN tracer's state as the fate API reports it.
type traceStatus struct {
	mu      sync.Mutex
	up      bool
	why     string // why not up
	missing []string
}

func (s *traceStatus) set(up bool, why string, missing []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up, s.why, s.missing = up, why, missing
}

func (s *traceStatus) get() (bool, string, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up, s.why, s.missing
}

// fateAPI serves POST /api/v1/fates.
type fateAPI struct {
	hub       *fateHub
	trace     *traceStatus
	limiter   *tokenBucket
	sem       chan struct{}
	maxDur    time.Duration
	webConfig string
	log       *slog.Logger
	m         *Metrics
	// now is the clock (tests).
	now func() time.Time
	// done ends every request (watch stopping).
	done <-chan struct{}
}

func (a *fateAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := a.now()
	user := ""
	if u, _, ok := r.BasicAuth(); ok {
		user = u
	} else if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		user = "cert:" + r.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	lg := a.log.With(slog.String("event", EventFateAPI), slog.String("remote", safetext.Show(r.RemoteAddr)),
		slog.String("user", safetext.Show(user)))
	fail := func(code int, msg string, retry time.Duration) {
		if retry > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(fateapi.ErrorBody{Error: msg})
		a.m.fateRequest(code)
		lg.Warn("fate request refused", slog.Int("code", code), slog.String("reason", safetext.Show(msg)),
			slog.Duration("duration", a.now().Sub(start)))
	}
	// Defence in depth: exporter-toolkit authenticated the request, but
	// the web config is re-read per request and may have changed.
	if r.TLS == nil || user == "" {
		fail(http.StatusUnauthorized, "the fate API is served only over TLS to authenticated callers", 0)
		return
	}
	if err := checkFateWebConfig(a.webConfig); err != nil {
		fail(http.StatusServiceUnavailable, "fate API disabled: "+err.Error(), 0)
		return
	}
	select {
	case a.sem <- struct{}{}:
		defer func() { <-a.sem }()
	default:
		fail(http.StatusTooManyRequests, fmt.Sprintf("%d fate requests already being served", cap(a.sem)), time.Second)
		return
	}
	if ok, retry := a.limiter.take(a.now()); !ok {
		fail(http.StatusTooManyRequests, "fate request rate limit reached (--fate-api-rate)", retry)
		return
	}
	f, err := fateapi.Parse(http.MaxBytesReader(w, r.Body, fateapi.MaxBody+1), a.maxDur)
	if err != nil {
		fail(http.StatusBadRequest, err.Error(), 0)
		return
	}
	lg = lg.With(slog.String("flows", f.String()))
	up, why, missing := a.trace.get()
	if !up {
		fail(http.StatusServiceUnavailable, "the SYN tracer is not running: "+why, 0)
		return
	}
	sub := a.hub.subscribe(f)

	w.Header().Set("Content-Type", fateapi.ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	a.m.fateRequest(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	write := func(l fateapi.Line) bool {
		// A caller that stops reading cannot hold the request beyond
		// its window: each line must leave within fateWriteTimeout.
		_ = rc.SetWriteDeadline(time.Now().Add(fateWriteTimeout))
		if enc.Encode(l) != nil {
			return false
		}
		return rc.Flush() == nil
	}
	n := 0
	reason, errText := "", ""
	defer func() {
		dropped := a.hub.unsubscribe(sub)
		lg.Info("fate request served", slog.Int("fates", n), slog.Int("dropped", dropped),
			slog.String("end", reason), slog.Duration("duration", a.now().Sub(start)))
	}()
	if !write(fateapi.Line{Type: fateapi.LineArmed, DurationMS: int(f.Duration / time.Millisecond), Capped: f.Capped,
		Flows: f.Flows(), MissingHooks: missing}) {
		reason = "client-gone"
		return
	}
	tm := time.NewTimer(f.Duration)
	defer tm.Stop()
	for reason == "" {
		select {
		case x := <-sub.ch:
			if !write(fateapi.Line{Type: fateapi.LineFate, Fate: &x}) {
				reason = "client-gone"
				return
			}
			n++
		case <-tm.C:
			reason = fateapi.DoneDuration
		case e := <-sub.stop:
			reason, errText = fateapi.DoneTracerStopped, e
		case <-a.done:
			reason = fateapi.DoneShutdown
		case <-r.Context().Done():
			reason = "client-gone"
			return
		}
	}
	// Fates already queued are written before "done".
	for drained := false; !drained; {
		select {
		case x := <-sub.ch:
			if write(fateapi.Line{Type: fateapi.LineFate, Fate: &x}) {
				n++
			}
		default:
			drained = true
		}
	}
	dropped := a.hub.unsubscribe(sub)
	write(fateapi.Line{Type: fateapi.LineDone, Reason: reason, Fates: n, Dropped: dropped, Error: errText})
}

// publishFate hands one tracer outcome to the fate API's requests, when
// any is being served and the namespace is watched.
func (w *watcher) publishFate(o trace.Outcome) {
	if w.fates == nil || !w.fates.active() {
		return
	}
	if ns, ok := w.nameOf(o.Netns); ok {
		w.fates.publish(fateOf(o, ns))
	}
}

// fateOf is the wire form of a trace outcome in the namespace labelled ns.
func fateOf(o trace.Outcome, ns string) fateapi.Fate {
	return fateapi.Fate{Time: o.Time, Netns: ns, Client: o.Client, Server: o.Server, Fate: string(o.Fate),
		Cause: o.Cause, Evidence: o.Evidence, SYNs: o.SYNs, SynAcks: o.SynAcks, Retransmits: o.Retransmits,
		Incomplete: o.Incomplete}
}

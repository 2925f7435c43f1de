package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/synscope/synscope/internal/fateapi"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/safetext"
)

// Run watches until ctx ends. It returns an error only when it cannot
// start (bad options, no namespace could be opened, the endpoint cannot
// listen); a namespace that fails later is logged and dropped.
func Run(ctx context.Context, opts Options) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	m := opts.Metrics
	if m == nil {
		m = NewMetrics()
	}
	w := &watcher{opts: &opts, m: m, loops: map[string]*running{}, failed: map[string]bool{}, inodes: map[uint32]string{},
		mgrScan: newManagerScan("/proc")}
	if opts.FateAPI {
		w.fates = newFateHub(m.fateDropped.Inc)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if h, err := openProcHistory(); err != nil {
		opts.Logger.Warn("a deleting process that exits at once cannot be named (its name is read from /proc only)",
			slog.String("event", EventError), slog.String("collector", "process-history"), slog.String("error", safetext.Show(err.Error())))
	} else {
		w.procs = h
		defer h.close() // after the loops stopped (every return stops them first)
	}

	specs := opts.Netns
	if len(specs) == 0 {
		specs = []string{""}
	}
	if opts.AllNetns {
		specs = []string{""}
		for _, n := range namedNetns(opts.deps.netnsRunDir) {
			specs = append(specs, runNetnsPrefix+n)
		}
	}
	started := 0
	var firstErr error
	for _, s := range specs {
		if err := w.start(ctx, s); err != nil {
			if !opts.AllNetns {
				w.stopAll()
				return err
			}
			w.failedOnce(s, err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		started++
	}
	if started == 0 {
		return fmt.Errorf("watch: no namespace could be watched: %w", firstErr)
	}
	if err := w.startSYNTrace(ctx); err != nil {
		w.stopAll()
		return err
	}

	var addr net.Addr
	srvErr := make(chan error, 1)
	if opts.Listen != "" || opts.Listener != nil {
		ln := opts.Listener
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", opts.Listen); err != nil {
				w.stopAll()
				return fmt.Errorf("watch: metrics endpoint: %w", err)
			}
		}
		addr = ln.Addr()
		var fa *fateAPI
		if opts.FateAPI {
			fa = &fateAPI{hub: w.fates, trace: &w.tracing, limiter: newTokenBucket(opts.FateAPIRate, fateAPIBurst),
				sem: make(chan struct{}, FateAPIConcurrent), maxDur: opts.FateAPIMaxDuration, webConfig: opts.WebConfigFile,
				log: opts.Logger, m: m, now: time.Now, done: ctx.Done()}
		}
		// The server's own errors (TLS handshakes, bad requests) go to the
		// structured log, escaped like every other line.
		srv := &http.Server{Handler: handler(m, fa), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)}
		cfg := opts.WebConfigFile
		go func() {
			srvErr <- web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &cfg}, opts.Logger)
		}()
		defer func() {
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			defer c()
			_ = srv.Shutdown(sctx)
		}()
	}
	m.up.Set(1)
	defer m.up.Set(0)
	defer opts.Logger.Info("watch stopped", slog.String("event", EventStopped))
	opts.Logger.Info("watch started", slog.String("event", EventStarted), slog.Int("namespaces", started),
		slog.Bool("repair", opts.Repair), slog.Bool("dry_run", opts.DryRun), slog.String("listen", opts.Listen))
	if opts.Ready != nil {
		opts.Ready(addr)
	}

	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.stopAll()
			return nil
		case err := <-srvErr:
			w.stopAll()
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("watch: metrics endpoint: %w", err)
			}
			return nil
		case <-tick.C:
			if opts.AllNetns {
				w.discover(ctx)
			}
		}
	}
}

// Handler serves GET /metrics, / and /healthz; nothing changes state.
func Handler(m *Metrics) http.Handler { return handler(m, nil) }

// handler is Handler plus, when fa is set, POST /api/v1/fates.
func handler(m *Metrics, fa *fateAPI) http.Handler {
	mux := http.NewServeMux()
	if fa != nil {
		mux.Handle("POST "+fateapi.Path, fa)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<html><head><title>synscope watch</title></head><body><h1>synscope watch</h1><p><a href=\"/metrics\">metrics</a> · <a href=\"/healthz\">healthz</a></p></body></html>\n"))
	})
	return mux
}

type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// watcher owns the namespace loops.
type watcher struct {
	opts  *Options
	m     *Metrics
	mu    sync.Mutex
	loops map[string]*running
	// failed holds the --all-netns entries that could not be opened: each
	// is logged once, not every interval, and retried quietly.
	failed map[string]bool
	// inodes names the watched namespaces by inode, for the SYN tracer.
	inodes map[uint32]string
	// procs is the eBPF process history (nil where it does not load):
	// names deleters that exited before /proc could be read.
	procs *procHistory
	// tracing is the SYN tracer's state; fates (nil without --fate-api)
	// fans its outcomes out to the fate API's requests.
	tracing traceStatus
	fates   *fateHub
	// mgrScan is the network-manager process scan the loops share.
	mgrScan *managerScan
}

// runNetnsPrefix marks a spec found in /run/netns by --all-netns: opened
// by its path (any name the directory holds, newlines included) and
// labelled by its name.
const runNetnsPrefix = "\x00run-netns:"

// discover starts loops for new names in /run/netns; names that went away
// leave the failed set.
func (w *watcher) discover(ctx context.Context) {
	names := namedNetns(w.opts.deps.netnsRunDir)
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		s := runNetnsPrefix + n
		seen[s] = true
		if w.has(s) {
			continue
		}
		if err := w.start(ctx, s); err != nil {
			w.failedOnce(s, err)
		} else {
			delete(w.failed, s)
		}
	}
	for s := range w.failed {
		if !seen[s] {
			delete(w.failed, s)
		}
	}
}

// failedOnce logs a namespace that cannot be watched, once.
func (w *watcher) failedOnce(spec string, err error) {
	if w.failed[spec] {
		return
	}
	w.failed[spec] = true
	w.opts.Logger.Warn("cannot watch namespace (logged once; retried each interval)", slog.String("event", EventError),
		slog.String("netns", specLabel(spec)), slog.String("error", safetext.Show(err.Error())))
}

// specLabel is how a spec is named before its namespace is open.
func specLabel(spec string) string {
	if n, ok := strings.CutPrefix(spec, runNetnsPrefix); ok {
		return netnsLabel(n)
	}
	return netnsLabel(spec)
}

// netnsLabel is a namespace's name in logs, metric labels and hold-file
// names: its label with every byte a terminal could act on, and invalid
// UTF-8 (which a Prometheus label value cannot hold), shown as a visible
// escape (safetext.Show). Ordinary names are unchanged.
func netnsLabel(label string) string { return safetext.Show(label) }

// openSpec opens a spec and names it.
func openSpec(spec, runDir string) (*netns.Target, string, error) {
	if n, ok := strings.CutPrefix(spec, runNetnsPrefix); ok {
		t, err := netns.Open(filepath.Join(runDir, n))
		if err != nil {
			return nil, "", err
		}
		return t, netnsLabel(n), nil
	}
	t, err := netns.Open(spec)
	if err != nil {
		return nil, "", err
	}
	return t, netnsLabel(t.Label()), nil
}

func (w *watcher) has(spec string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.loops[spec]
	return ok
}

// start opens a namespace and runs its loop.
func (w *watcher) start(ctx context.Context, spec string) error {
	t, name, err := openSpec(spec, w.opts.deps.netnsRunDir)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	l, err := newNSLoop(w.opts, w.m, w.mgrScan, t, name)
	if err != nil {
		t.Close()
		return err
	}
	l.procs = w.procs
	lctx, cancel := context.WithCancel(ctx)
	r := &running{cancel: cancel, done: make(chan struct{})}
	w.mu.Lock()
	w.loops[spec] = r
	w.inodes[uint32(t.Inode)] = l.name
	w.mu.Unlock()
	w.opts.Logger.Info("watching namespace", slog.String("event", EventNetnsAdded), slog.String("netns", l.name),
		slog.Int("default_routes", len(l.routes)))
	go func() {
		defer close(r.done)
		defer t.Close()
		err := l.run(lctx)
		if lctx.Err() != nil && !errors.Is(err, errNetnsGone) {
			return // shutting down; series stay until the process exits
		}
		// Out of inodes first, then the series, then out of loops: the
		// tracer counts only namespaces in inodes (under the lock), so
		// none of this one's series comes back after the drop, and
		// discovery starts a namespace of the same name only once loops
		// lets it, after the drop.
		w.mu.Lock()
		delete(w.inodes, uint32(t.Inode))
		w.mu.Unlock()
		w.m.dropNetns(l.name)
		w.mu.Lock()
		delete(w.loops, spec)
		w.mu.Unlock()
		msg := "namespace gone: its series were removed"
		lvl := slog.LevelInfo
		if err != nil && !errors.Is(err, errNetnsGone) {
			msg, lvl = "namespace loop failed: its series were removed", slog.LevelError
		}
		args := []any{slog.String("event", EventNetnsGone), slog.String("netns", l.name)}
		if err != nil && !errors.Is(err, errNetnsGone) {
			args = append(args, slog.String("error", err.Error()))
		}
		w.opts.Logger.Log(context.Background(), lvl, msg, args...)
	}()
	return nil
}

func (w *watcher) stopAll() {
	w.mu.Lock()
	rs := make([]*running, 0, len(w.loops))
	for _, r := range w.loops {
		rs = append(rs, r)
	}
	w.mu.Unlock()
	for _, r := range rs {
		r.cancel()
	}
	for _, r := range rs {
		<-r.done
	}
}

// namedNetns lists the namespaces in dir, /run/netns but in tests (sorted).
func namedNetns(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		out = append(out, filepath.Base(e.Name()))
	}
	sort.Strings(out)
	return out
}

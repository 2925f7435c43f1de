package watch

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/safetext"
	"github.com/synscope/synscope/internal/trace"
)

// SYN tracing modes (--syn-trace).
const (
	SYNTraceAuto = "auto" // per-SYN drops where eBPF loads; counters alone otherwise
	SYNTraceOn   = "on"   // refuse to start without it
	SYNTraceOff  = "off"
)

// synTrace feeds synscope_syn_drops_total{source="trace"} from the trace
// engine: the fate of every SYN to a watched namespace, attributed per SYN
// by the kernel's own hooks (tracepoints only), where the counters can only
// split an interval's totals. One tracer serves every namespace; outcomes
// of namespaces watch does not watch are ignored.
func (w *watcher) startSYNTrace(ctx context.Context) error {
	if w.opts.SYNTrace == SYNTraceOff {
		w.tracing.set(false, "watch runs with --syn-trace off", nil)
		return nil
	}
	tr, err := trace.Open(trace.Options{})
	if err != nil {
		if w.opts.SYNTrace == SYNTraceOn {
			return fmt.Errorf("watch: --syn-trace=on: %w", err)
		}
		w.tracing.set(false, "the eBPF tracer did not load: "+err.Error(), nil)
		w.opts.Logger.Warn("per-SYN drop attribution unavailable: synscope_syn_drops_total comes from the kernel counters only",
			slog.String("event", EventSYNTrace), slog.String("error", safetext.Show(err.Error())))
		return nil
	}
	w.mu.Lock()
	names := make([]string, 0, len(w.inodes))
	for _, n := range w.inodes {
		names = append(names, n)
	}
	// Under the lock: a namespace whose loop ends now is either in names
	// (and its series are dropped after this) or not (and gets none).
	w.m.traceStarted(names)
	w.mu.Unlock()
	var missing []string
	for _, c := range trace.Missing(tr.Capabilities()) {
		missing = append(missing, c.String())
	}
	w.tracing.set(true, "", missing)
	eng := trace.NewWiredEngine(0) // the engine trace and probe run: one answer per SYN
	emit := func(o trace.Outcome) {
		w.publishFate(o)
		if o.Fate != trace.Dropped || o.Cause == "" {
			return
		}
		w.countTraced(o.Netns, o.Cause)
	}
	w.opts.Logger.Info("per-SYN drop attribution on (eBPF tracepoints)", slog.String("event", EventSYNTrace))
	go func() {
		defer tr.Close()
		defer w.m.synTraceUp.Set(0)
		err := trace.Run(ctx, tr, eng, emit)
		why := "watch is stopping"
		if err != nil {
			why = "the eBPF tracer stopped: " + err.Error()
		}
		w.tracing.set(false, why, nil)
		if w.fates != nil {
			w.fates.stopped(why)
		}
		if err != nil && ctx.Err() == nil {
			w.opts.Logger.Error("per-SYN drop attribution stopped", slog.String("event", EventSYNTrace),
				slog.String("error", safetext.Show(err.Error())))
		}
	}()
	return nil
}

// nameOf maps a namespace inode from the tracer to the watched
// namespace's label.
func (w *watcher) nameOf(inode uint32) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, ok := w.inodes[inode]
	return n, ok
}

// countTraced counts a traced drop for the watched namespace with that
// inode; under the lock, so a namespace being dropped never gets a series
// back after its removal (its loop leaves inodes before its series go).
func (w *watcher) countTraced(inode uint32, id causes.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ns, ok := w.inodes[inode]; ok {
		w.m.addTracedDrop(ns, id)
	}
}

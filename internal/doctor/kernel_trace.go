package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/trace"
)

// The kernel's own verdict inside doctor's window: the trace engine runs
// beside the capture, with the same filters, and each SYN's fate (a drop
// reason, a failed reply-route lookup, a reset) becomes evidence.

// kernelTrace is the trace engine running through the window.
type kernelTrace struct {
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	seen   []trace.Outcome
	open   chan error // the attach result
}

// startTrace attaches the trace engine for the namespace, ports and peers
// in the background (attaching takes ~0.15 s; the window runs meanwhile).
func (r *run) startTrace(ctx context.Context) {
	if r.opts.NoTrace {
		r.skip(sourceTrace, "disabled by --no-trace")
		return
	}
	if len(r.sources(sourceTrace)) == 0 {
		return
	}
	opts := trace.Options{Netns: uint32(r.ev.Target.Inode)}
	if len(r.opts.Ports) <= trace.MaxPorts {
		opts.Ports = r.opts.Ports
	}
	for _, p := range r.opts.Peers {
		if len(opts.Peers) < trace.MaxPeers {
			opts.Peers = append(opts.Peers, p.Addr())
		}
	}
	kt := &kernelTrace{done: make(chan error, 1), open: make(chan error, 1)}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	kt.cancel = cancel
	r.trace = kt
	go func() {
		sess, err := trace.OpenSession(opts, answerDue)
		kt.open <- err
		if err != nil {
			kt.done <- nil
			return
		}
		defer sess.Close()
		kt.done <- sess.Run(rctx, func(o trace.Outcome) {
			kt.mu.Lock()
			kt.seen = append(kt.seen, o)
			kt.mu.Unlock()
		})
	}()
}

// stopTrace ends the trace and records its check and outcomes.
func (r *run) stopTrace() {
	kt := r.trace
	if kt == nil {
		return
	}
	kt.cancel()
	began := time.Now()
	openErr := <-kt.open
	runErr := <-kt.done
	waited := float64(time.Since(began).Microseconds()) / 1000
	switch {
	case openErr != nil:
		r.skip(sourceTrace, "the trace engine cannot load here: "+openErr.Error())
	case runErr != nil:
		r.checks = append(r.checks, report.Check{Name: sourceTrace, Status: report.Failed, Detail: runErr.Error()})
		r.ev.unchecked(sourceTrace, runErr.Error())
	default:
		kt.mu.Lock()
		r.ev.Trace = append([]trace.Outcome{}, kt.seen...)
		kt.mu.Unlock()
		r.checks = append(r.checks, report.Check{Name: sourceTrace, Status: report.Ran, DurationMS: waited,
			Detail: fmt.Sprintf("kernel fates of %d handshakes", len(r.ev.Trace))})
	}
}

// kernelFates counts the traced handshakes per cause the kernel named
// (pure); provisional outcomes count too, as the kernel's view so far.
type kernelFate struct {
	cause    causes.ID
	n, syns  int
	evidence []string
	clients  []string
}

func (e *Evidence) kernelFates() []kernelFate {
	by := map[causes.ID]*kernelFate{}
	var order []causes.ID
	for _, o := range e.Trace {
		if o.Cause == "" || o.Fate == trace.Established {
			continue
		}
		k := by[o.Cause]
		if k == nil {
			k = &kernelFate{cause: o.Cause}
			by[o.Cause] = k
			order = append(order, o.Cause)
		}
		k.n++
		k.syns += o.SYNs
		if len(k.evidence) == 0 {
			k.evidence = o.Evidence
		}
		if ap, err := netip.ParseAddrPort(o.Client); err == nil {
			k.clients = append(k.clients, ap.Addr().Unmap().String())
		} else {
			k.clients = append(k.clients, o.Client)
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	out := make([]kernelFate, 0, len(order))
	for _, id := range order {
		k := by[id]
		k.clients = uniq(k.clients)
		out = append(out, *k)
	}
	return out
}

func (k kernelFate) text() string {
	s := fmt.Sprintf("the kernel named %d handshakes %s (%d SYNs, from %s)", k.n, k.cause, k.syns, strings.Join(limit(k.clients, 3), ", "))
	if len(k.evidence) > 0 {
		s += ": " + strings.Join(k.evidence, "; ")
	}
	return s
}

// confirmByKernel gives each finding whose cause the kernel itself named
// in the window the kernel's evidence line, and makes it confirmed. A
// port scan's refusals (the kernel's no-socket resets) confirm nothing.
func confirmByKernel(e *Evidence, fs []report.Finding) {
	if len(e.Trace) == 0 {
		return
	}
	for _, k := range e.kernelFates() {
		for i := range fs {
			f := &fs[i]
			if f.Cause != k.cause || f.Severity == report.Info {
				continue
			}
			f.Evidence = append(f.Evidence, report.Evidence{Source: sourceTrace, Text: k.text(),
				Data: map[string]any{"cause": string(k.cause), "handshakes": k.n, "syns": k.syns}})
			f.Confidence = report.Confirmed
		}
	}
}

// unexplainedFates are the kernel's named fates no finding explains.
func unexplainedFates(e *Evidence, fs []report.Finding) []report.Evidence {
	var out []report.Evidence
	for _, k := range e.kernelFates() {
		explained := false
		for _, f := range fs {
			if f.Cause == k.cause {
				explained = true
			}
		}
		if !explained {
			out = append(out, report.Evidence{Source: sourceTrace, Text: k.text()})
		}
	}
	return out
}

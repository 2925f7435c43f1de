package probe

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/trace"
)

// serverGrace is how long the server's tracer keeps running after the last
// attempt, so a SYN still in flight gets its fate.
const serverGrace = 500 * time.Millisecond

// serverWatch runs the trace engine in the server's namespace while the
// probe makes its attempts, keeping only the outcomes of the probe's own
// flows (its source addresses, the server port); every other flow is
// filtered out in the kernel or dropped here, never reported.
type serverWatch struct {
	rep    *ServerReport
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	seen   []trace.Outcome
}

// startServerWatch opens the server namespace and attaches the tracer
// filtered to port and the sources (when known). Where it cannot, the
// returned watch reports "not checked" with the reason and collects
// nothing.
func startServerWatch(ctx context.Context, spec string, port uint16, sources []netip.Addr) *serverWatch {
	w := &serverWatch{rep: &ServerReport{Netns: spec, Status: ServerNotChecked}}
	t, err := netns.Open(spec)
	if err != nil {
		w.rep.Reason = "server namespace: " + errText(err)
		return w
	}
	w.rep.Netns = t.Label()
	opts := trace.Options{Netns: uint32(t.Inode), Ports: []uint16{port}, SamplesPerSec: -1}
	_ = t.Close()
	uniq := map[netip.Addr]bool{}
	for _, s := range sources {
		if s.IsValid() && !uniq[s] && len(opts.Peers) < trace.MaxPeers {
			uniq[s] = true
			opts.Peers = append(opts.Peers, s)
		}
	}
	sess, err := trace.OpenSession(opts, 2*time.Second)
	if err != nil {
		w.rep.Reason = "trace engine: " + errText(err)
		return w
	}
	w.rep.Status = ServerChecked
	for _, c := range trace.Missing(sess.Capabilities()) {
		w.rep.Missing = append(w.rep.Missing, c.String())
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	w.done = make(chan error, 1)
	go func() {
		defer sess.Close()
		w.done <- sess.Run(rctx, func(o trace.Outcome) {
			w.mu.Lock()
			w.seen = append(w.seen, o)
			w.mu.Unlock()
		})
	}()
	return w
}

// stop ends the trace after the grace period and joins its outcomes to the
// attempts: per attempt, matched on the client's address and port and the
// server port.
func (w *serverWatch) stop(rep *Report, srcs []netip.Addr) {
	rep.Server = w.rep
	if w.cancel == nil {
		rep.Checks = append(rep.Checks, Check{Name: "server", Status: "skipped", Detail: "not checked: " + w.rep.Reason})
		return
	}
	time.Sleep(serverGrace)
	w.cancel()
	if err := <-w.done; err != nil {
		w.rep.Status, w.rep.Reason = ServerNotChecked, "trace engine: "+errText(err)
		rep.Checks = append(rep.Checks, Check{Name: "server", Status: "failed", Detail: w.rep.Reason})
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, ap := range rep.Addresses {
		for j := range ap.Attempts {
			at := &ap.Attempts[j]
			at.Server = joinServer(w.seen, srcs[i], at.LocalPort, rep.Target.Port)
		}
	}
	detail := fmt.Sprintf("trace engine in %s for the probe's flows to port %d", w.rep.Netns, rep.Target.Port)
	if len(w.rep.Missing) > 0 {
		detail += "; not hooked on this kernel: " + strings.Join(w.rep.Missing, "; ")
	}
	rep.Checks = append(rep.Checks, Check{Name: "server", Status: "ok", Detail: detail})
}

// joinServer finds the server's outcomes of one attempt (pure).
func joinServer(seen []trace.Outcome, src netip.Addr, lport, port uint16) *ServerView {
	if lport == 0 {
		return &ServerView{Checked: false, Text: "not checked: the attempt had no source port"}
	}
	v := &ServerView{Checked: true}
	var best *trace.Outcome
	for i := range seen {
		o := &seen[i]
		c, s := o.ClientAddr(), o.ServerAddr()
		if c.Port() != lport || s.Port() != port || (src.IsValid() && c.Addr().Unmap() != src.Unmap()) {
			continue
		}
		v.SYNs += o.SYNs
		v.SynAcks += o.SynAcks
		if best == nil || (best.Cause == "" && o.Cause != "") || (best.Incomplete && !o.Incomplete) {
			best = o
		}
	}
	if best == nil {
		v.Text = "never seen at the server"
		return v
	}
	v.Seen = true
	v.Fate, v.Cause, v.Evidence, v.Incomplete = string(best.Fate), best.Cause, best.Evidence, best.Incomplete
	v.Text = serverText(v)
	return v
}

// serverText is one attempt's server side in words: "arrived, consumed: no
// route back to the client for the SYN-ACK" (pure).
func serverText(v *ServerView) string {
	how := v.Fate
	for _, e := range v.Evidence {
		if strings.Contains(e, "SYN consumed") {
			how = "consumed"
		}
	}
	s := "arrived, " + how
	if v.Cause != "" {
		s += ": " + causeTitle(v.Cause)
	}
	if v.Incomplete {
		s += " (tracing stopped before the handshake ended)"
	}
	return s
}

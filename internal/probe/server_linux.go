package probe

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/trace"
)

// serverGrace is how long the server's tracer keeps running after the last
// attempt, so a SYN still in flight gets its fate.
const serverGrace = 500 * time.Millisecond

// serverFate is one outcome of the server's trace engine, from either
// source: the engine run here in the server's namespace (serverWatch) or
// the server's watch answering over HTTPS (serverEndpoint). Both become
// this, and one join (joinServer) makes the report from it.
type serverFate struct {
	client, server netip.AddrPort
	netns          string // watch's label (endpoint); "" here
	fate           string
	cause          causes.ID
	evidence       []string
	syns, synacks  int
	incomplete     bool
}

func fateOfOutcome(o trace.Outcome) serverFate {
	return serverFate{client: o.ClientAddr(), server: o.ServerAddr(), fate: string(o.Fate), cause: o.Cause,
		evidence: o.Evidence, syns: o.SYNs, synacks: o.SynAcks, incomplete: o.Incomplete}
}

// serverHarvest is what a server source collected while the probe ran.
type serverHarvest struct {
	fates []serverFate
	// failed: nothing was checked (the reason); every attempt is "not
	// checked".
	failed string
	// partial: the source stopped listening or lost fates before the
	// probe ended (the reason); an attempt it has no fate for is "not
	// checked", never "never seen".
	partial string
	// named are the flows the source was asked about (nil: every flow of
	// the probe was covered).
	named map[netip.AddrPort]bool
	// detail is the "server" check's text.
	detail string
	// rules names the server's rules that may drop a SYN from client to
	// server (nil: the server's ruleset was not read).
	rules func(client, server netip.AddrPort) []FWRule
}

// serverSide is a source of the server's fates (--server).
type serverSide interface {
	// finish ends the collection after the grace period.
	finish() serverHarvest
	report() *ServerReport
}

// serverWatch runs the trace engine in the server's namespace while the
// probe makes its attempts, keeping only the outcomes of the probe's own
// flows (its source addresses, the server port); every other flow is
// filtered out in the kernel or dropped here, never reported.
type serverWatch struct {
	rep    *ServerReport
	port   uint16
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	seen   []serverFate
	// ns stays open while the probe runs to read the server's nftables
	// ruleset before and after (fwBefore nil: not readable, no rule is
	// named).
	ns       *netns.Target
	fwBefore *firewall.Ruleset
}

// startServerWatch opens the server namespace and attaches the tracer
// filtered to port and the sources (when known). Where it cannot, the
// returned watch reports "not checked" with the reason and collects
// nothing.
func startServerWatch(ctx context.Context, spec string, port uint16, sources []netip.Addr) *serverWatch {
	w := &serverWatch{rep: &ServerReport{Via: ServerViaNetns, Netns: spec, Status: ServerNotChecked}, port: port}
	t, err := netns.Open(spec)
	if err != nil {
		w.rep.Reason = "server namespace: " + errText(err)
		return w
	}
	w.rep.Netns = t.Label()
	opts := trace.Options{Netns: uint32(t.Inode), Ports: []uint16{port}, SamplesPerSec: -1}
	keep := false
	defer func() {
		if !keep {
			_ = t.Close()
		}
	}()
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
	// The server's ruleset, to name the rule when its kernel calls a drop
	// firewall-drop; unreadable, the drop is still named, its rule is not.
	if fw, err := inspectFirewall(t); err == nil {
		w.ns, w.fwBefore, keep = t, fw, true
	}
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
			w.seen = append(w.seen, fateOfOutcome(o))
			w.mu.Unlock()
		})
	}()
	return w
}

func (w *serverWatch) report() *ServerReport { return w.rep }

// finish ends the trace after the grace period.
func (w *serverWatch) finish() serverHarvest {
	if w.cancel == nil {
		return serverHarvest{failed: w.rep.Reason}
	}
	time.Sleep(serverGrace)
	w.cancel()
	if err := <-w.done; err != nil {
		w.closeNS()
		return serverHarvest{failed: "trace engine: " + errText(err)}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	h := serverHarvest{fates: w.seen,
		detail: fmt.Sprintf("trace engine in %s for the probe's flows to port %d", w.rep.Netns, w.port)}
	if w.ns != nil {
		after, _ := inspectFirewall(w.ns)
		t, before := w.ns, w.fwBefore
		h.rules = func(client, server netip.AddrPort) []FWRule {
			return droppers(t, before, after, firewall.Packet{Dir: firewall.In, Local: server.Addr(), LocalPort: server.Port(),
				Remote: client.Addr(), RemotePort: client.Port()})
		}
		h.detail += fmt.Sprintf("; its nftables ruleset read before and after (%d rules)", len(before.Rules))
	}
	return h
}

// closeNS releases the server namespace (after the report is built).
func (w *serverWatch) closeNS() {
	if w.ns != nil {
		_ = w.ns.Close()
		w.ns = nil
	}
}

// finishServer ends the server side and joins its fates to the attempts:
// per attempt, matched on the client's address and port and the server
// port. One join for every source.
func finishServer(side serverSide, rep *Report, srcs []netip.Addr) {
	h := side.finish()
	rep.Server = side.report()
	if h.failed != "" {
		rep.Server.Status, rep.Server.Reason = ServerNotChecked, h.failed
		for _, ap := range rep.Addresses {
			for j := range ap.Attempts {
				ap.Attempts[j].Server = &ServerView{Checked: false, Text: "not checked: " + h.failed}
			}
		}
		rep.Checks = append(rep.Checks, Check{Name: "server", Status: "skipped", Detail: "not checked: " + h.failed})
		return
	}
	for i, ap := range rep.Addresses {
		for j := range ap.Attempts {
			at := &ap.Attempts[j]
			at.Server = joinServer(h, srcs[i], at.LocalPort, rep.Target.Port)
			if v := at.Server; h.rules != nil && v.Cause == causes.FirewallDrop && v.server.IsValid() {
				v.Firewall = h.rules(netip.AddrPortFrom(srcs[i].Unmap(), at.LocalPort), v.server)
			}
		}
	}
	if w, ok := side.(*serverWatch); ok {
		w.closeNS()
	}
	detail := h.detail
	if h.partial != "" {
		detail += "; " + h.partial
	}
	if len(rep.Server.Missing) > 0 {
		detail += "; not hooked on this kernel: " + strings.Join(rep.Server.Missing, "; ")
	}
	rep.Checks = append(rep.Checks, Check{Name: "server", Status: "ok", Detail: detail})
}

// joinServer finds the server's outcomes of one attempt (pure).
func joinServer(h serverHarvest, src netip.Addr, lport, port uint16) *ServerView {
	if lport == 0 {
		return &ServerView{Checked: false, Text: "not checked: the attempt had no source port"}
	}
	if h.named != nil && !h.named[netip.AddrPortFrom(src.Unmap(), lport)] {
		return &ServerView{Checked: false, Text: "not checked: the flow was not among those named to the server's watch"}
	}
	v := &ServerView{Checked: true}
	var best *serverFate
	for i := range h.fates {
		o := &h.fates[i]
		if o.client.Port() != lport || o.server.Port() != port || (src.IsValid() && o.client.Addr().Unmap() != src.Unmap()) {
			continue
		}
		v.SYNs += o.syns
		v.SynAcks += o.synacks
		if best == nil || (best.cause == "" && o.cause != "") || (best.incomplete && !o.incomplete) {
			best = o
		}
	}
	if best == nil {
		if h.partial != "" {
			return &ServerView{Checked: false, Text: "not checked: " + h.partial}
		}
		v.Text = "never seen at the server"
		if h.named != nil {
			// The watch matched the flow as named: behind NAT the server
			// sees another client address or port.
			v.Text += " as " + netip.AddrPortFrom(src.Unmap(), lport).String() + " (a NAT on the way would change that)"
		}
		return v
	}
	v.Seen = true
	v.Fate, v.Cause, v.Evidence, v.Incomplete = best.fate, best.cause, best.evidence, best.incomplete
	v.server = best.server
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

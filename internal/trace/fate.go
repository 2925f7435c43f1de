package trace

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
)

// Fate is what became of one SYN.
type Fate string

// The fates a SYN can meet.
const (
	Established         Fate = "established"
	Refused             Fate = "refused"
	Dropped             Fate = "dropped"
	SynAckRetransmitted Fate = "synack-retransmitted"
	Unknown             Fate = "unknown"
)

// Outcome is the verdict on one SYN (or one connection attempt whose SYN
// retransmits met an existing request). It is also the --json line.
type Outcome struct {
	Time   time.Time `json:"time"`
	Netns  uint32    `json:"netns"`
	Client string    `json:"client"`
	Server string    `json:"server"`
	Fate   Fate      `json:"fate"`
	// Cause is a causes catalog ID, empty when the fate needs none or none
	// could be established.
	Cause causes.ID `json:"cause"`
	// SynToSynAckUS and SynAckToAckUS are latencies in microseconds
	// (established, or when a SYN-ACK was seen).
	SynToSynAckUS *float64 `json:"syn_to_synack_us,omitempty"`
	SynAckToAckUS *float64 `json:"synack_to_ack_us,omitempty"`
	// SynAcks counts SYN-ACKs seen leaving (first transmit and retransmits).
	SynAcks int `json:"synacks,omitempty"`
	// Retransmits counts tcp_retransmit_synack for the request.
	Retransmits int `json:"synack_retransmits,omitempty"`
	// SYNs counts the client's SYNs merged into this outcome.
	SYNs int `json:"syns"`
	// Evidence: what the kernel showed, one fact per entry.
	Evidence []string `json:"evidence,omitempty"`
	// Incomplete: tracing stopped while the handshake was still under way,
	// so the fate is provisional.
	Incomplete bool `json:"incomplete,omitempty"`

	clientAP, serverAP netip.AddrPort
}

// ClientAddr and ServerAddr return the parsed endpoints.
func (o Outcome) ClientAddr() netip.AddrPort { return o.clientAP }

// ServerAddr returns the listener side of the outcome.
func (o Outcome) ServerAddr() netip.AddrPort { return o.serverAP }

// ListenerState is what sock_diag says about a listener, used to attribute
// SYNs consumed before the reply route lookup (admission drops).
type ListenerState struct {
	AcceptQueue uint32 // sk_ack_backlog
	Backlog     uint32 // sk_max_ack_backlog
	SynRecv     int    // requests in SYN-RECV for this port
}

// ListenerFunc looks up the listener for server in the namespace with inode
// netns; ok is false when it cannot be found.
type ListenerFunc func(netns uint32, server netip.AddrPort) (st ListenerState, ok bool)

type flowKey struct {
	netns          uint32
	client, server netip.AddrPort
}

type flow struct {
	first      Event
	syns       int
	synMono    time.Duration
	synackMono time.Duration // first SYN-ACK
	lastSynack time.Duration
	synacks    int
	retrans    int
	lastSeen   time.Duration
	routeOK    bool // reply route lookup succeeded, SYN-ACK not seen yet
	cookie     bool // answered with a syncookie SYN-ACK
	evidence   []string
}

// Engine turns events into outcomes. It is not safe for concurrent use.
type Engine struct {
	// Pending is how long a SYN-ACKed flow may wait for its final ACK
	// before it is reported as retransmitted or unknown.
	Pending time.Duration
	// Listener, when set, attributes admission drops (accept queue full).
	Listener ListenerFunc
	// Conntrack, when set, tells a firewall drop of a SYN that conntrack
	// found INVALID from any other firewall drop.
	Conntrack ConntrackFunc

	flows map[flowKey]*flow
	stats Stats
}

// NewEngine returns an engine with the given pending timeout (0: 5s).
func NewEngine(pending time.Duration) *Engine {
	if pending <= 0 {
		pending = 5 * time.Second
	}
	return &Engine{Pending: pending, flows: map[flowKey]*flow{}, stats: newStats()}
}

// Add feeds one event and returns the outcomes it decides.
func (e *Engine) Add(ev Event) []Outcome {
	k := flowKey{netns: ev.Netns, client: ev.Client, server: ev.Server}
	switch ev.Kind {
	case KindSYN:
		return e.addSYN(k, ev)
	case KindSynAck:
		if f := e.flows[k]; f != nil {
			f.noteSynAck(ev.Mono)
			f.lastSeen = ev.Mono
		}
	case KindRetrans:
		if f := e.flows[k]; f != nil {
			f.retrans++
			f.lastSeen = ev.Mono
		}
	case KindAck:
		if f := e.flows[k]; f != nil {
			delete(e.flows, k)
			var cause causes.ID
			if f.cookie {
				// Completed, but only because the kernel fell back to
				// cookies: the catalog's syn-flood-cookies, as doctor says.
				f.evidence = append(f.evidence, "completed with a syncookie (SYN queue full)")
				cause = causes.SynFloodCookies
			}
			o := f.outcome(Established, cause)
			if f.synackMono > 0 {
				o.SynToSynAckUS = us(f.synackMono - f.synMono)
				o.SynAckToAckUS = us(ev.Mono - f.lastSynack)
			}
			return e.emit(o)
		}
	case KindDrop:
		f := e.flows[k]
		if f == nil {
			return nil
		}
		delete(e.flows, k)
		what := "SYN-ACK"
		cause := synackDropCause(ev.DropReason)
		if ev.TCPFlags&0x12 != 0x12 {
			what = "final ACK"
			cause = dropCause(ev.DropReason)
		}
		switch {
		case ev.DropReason != "":
			f.evidence = append(f.evidence, fmt.Sprintf("%s dropped: kfree_skb reason %s", what, ev.DropReason))
		case ev.DropSite != "":
			// No drop reasons (before 5.17): the site names the cause
			// where it tells it apart.
			f.evidence = append(f.evidence, fmt.Sprintf("%s dropped in %s (kfree_skb location; this kernel gives no drop reason)", what, ev.DropSite))
			if id, _, _ := causes.ForDropSite(ev.DropFunc, false); id != "" {
				cause = id
			}
		default:
			f.evidence = append(f.evidence, what+" dropped (this kernel gives no drop reason)")
		}
		return e.emit(f.outcome(Dropped, cause))
	}
	return nil
}

func (f *flow) noteSynAck(mono time.Duration) {
	if f.synackMono == 0 {
		f.synackMono = mono
	}
	f.lastSynack = mono
	f.synacks++
}

func us(d time.Duration) *float64 {
	v := float64(d) / float64(time.Microsecond)
	return &v
}

func (e *Engine) addSYN(k flowKey, ev Event) []Outcome {
	var out []Outcome
	f := e.flows[k]
	pending := f != nil
	if f == nil {
		f = &flow{first: ev, synMono: ev.Mono}
	} else {
		// A retransmitted SYN for a request already under way.
		delete(e.flows, k)
	}
	f.syns++
	f.lastSeen = ev.End
	if ev.Flags&FlagFib != 0 && ev.FibErr != 0 {
		f.evidence = append(f.evidence, fmt.Sprintf("reply route lookup %s -> %s failed in table %d: %s",
			ev.Server, ev.Client, ev.FibTable, errnoName(ev.FibErr)))
	}
	switch {
	case ev.Flags&FlagSynAck != 0 && ev.Flags&FlagRST == 0:
		// Answered. A duplicate SYN for an existing request is answered by
		// a resent SYN-ACK and then freed with NOT_SPECIFIED: still answered.
		f.noteSynAck(ev.SynAckMono)
		if ev.Flags&FlagCookie != 0 {
			f.cookie = true
		}
		e.flows[k] = f
		return out
	case pending && ev.Flags&FlagConsumed == 0 && ev.DropReason == causes.DropReasonNotSpecified,
		pending && ev.Flags&(FlagConsumed|FlagRST|FlagRSTSent|FlagFib|FlagSynAckDrop) == FlagConsumed:
		// A SYN retransmit meeting the request (SYN-ACK resend rate-limited):
		// freed with NOT_SPECIFIED since 6.x, consumed before (6.1), and
		// in either case without a route lookup of its own.
		e.flows[k] = f
		return out
	case ev.Flags&FlagConsumed == 0 && ev.DropReason == "":
		return append(out, e.emit(e.siteOutcome(f, ev))...)
	case ev.Flags&FlagConsumed == 0:
		f.evidence = append(f.evidence, fmt.Sprintf("SYN dropped: kfree_skb reason %s", ev.DropReason))
		if ev.TCPReject != "" {
			f.evidence = append(f.evidence, tcpRejectEvidence(ev.TCPReject))
			if ev.Flags&FlagRST == 0 {
				return append(out, e.emit(f.outcome(Dropped, causes.TCPReject))...)
			}
		}
		if ev.Flags&FlagRST != 0 {
			f.evidence = append(f.evidence, "RST sent: "+ev.RSTReason)
			// NO_SOCKET names no-listener in the catalog.
			cause := dropCause(ev.DropReason)
			return append(out, e.emit(f.outcome(Refused, cause))...)
		}
		cause := dropCause(ev.DropReason)
		if cause == causes.FirewallDrop {
			cause = e.firewallCause(f, ev)
		}
		if ev.Flags&FlagRSTSent != 0 {
			// The client gets a RST, but not from TCP: a firewall
			// reject answered and then dropped the SYN.
			f.evidence = append(f.evidence, netfilterRST)
			return append(out, e.emit(f.outcome(Refused, cause))...)
		}
		return append(out, e.emit(f.outcome(Dropped, cause))...)
	case ev.Flags&FlagRST != 0:
		f.evidence = append(f.evidence, "RST sent: "+ev.RSTReason)
		return append(out, e.emit(f.outcome(Refused, causes.NoListener))...)
	case ev.Flags&FlagSynAckDrop != 0:
		cause := synackDropCause(ev.SynAckDropReason)
		switch {
		case ev.SynAckDropReason != "":
			f.evidence = append(f.evidence, fmt.Sprintf("SYN-ACK dropped on the way out: kfree_skb reason %s", ev.SynAckDropReason))
		case ev.SynAckDropSite != "":
			// No drop reasons (before 5.17): the site names the cause
			// where it tells it apart; any other is still a SYN-ACK
			// dropped on its way out.
			f.evidence = append(f.evidence, fmt.Sprintf("SYN-ACK dropped on the way out in %s (kfree_skb location; this kernel gives no drop reason)", ev.SynAckDropSite))
			if id, site, _ := causes.ForDropSite(ev.SynAckDropFunc, false); id != "" {
				f.evidence = append(f.evidence, ev.SynAckDropFunc+": "+site.What)
				cause = id
			}
		default:
			f.evidence = append(f.evidence, "SYN-ACK dropped on the way out (this kernel gives no drop reason)")
		}
		return append(out, e.emit(f.outcome(Dropped, cause))...)
	case ev.Flags&FlagFib != 0 && ev.FibErr != 0:
		f.evidence = append(f.evidence, "SYN consumed without SYN-ACK (dropped in tcp_conn_request)")
		return append(out, e.emit(f.outcome(Dropped, causes.NoRouteToPeer))...)
	case ev.Flags&FlagFib != 0 && ev.Flags&FlagNeighQueued != 0:
		// Route found, SYN-ACK waiting for ARP / neighbour discovery.
		f.evidence = append(f.evidence, "reply route found, SYN-ACK queued waiting for the next hop's neighbour entry")
		f.routeOK = true
		e.flows[k] = f
		return out
	case ev.Flags&FlagFib != 0:
		// tcp_conn_request drops after a successful route lookup only by
		// the "last quarter" rule (syncookies off, tcp_max_syn_backlog
		// nearly used, peer not proven): ListenDrops alone.
		f.evidence = append(f.evidence, "reply route found but SYN consumed without SYN-ACK: admission drop after the route lookup ('last quarter' rule: tcp_syncookies=0 and tcp_max_syn_backlog nearly used)")
		return append(out, e.emit(f.outcome(Dropped, causes.SynQueueOverflow))...)
	default:
		f.evidence = append(f.evidence, "SYN consumed before the reply route lookup (admission drop in tcp_conn_request)")
		cause := causes.UnexplainedDrops
		if e.Listener != nil {
			if st, ok := e.Listener(ev.Netns, ev.Server); ok {
				f.evidence = append(f.evidence, fmt.Sprintf("listener accept queue %d/%d, %d in SYN-RECV", st.AcceptQueue, st.Backlog, st.SynRecv))
				switch {
				case st.AcceptQueue > st.Backlog || (st.Backlog > 0 && st.AcceptQueue >= st.Backlog):
					cause = causes.AcceptQueueOverflow
				// The request queue is full at qlen >= backlog on
				// 5.10 and qlen > backlog on 6.x
				// (inet_csk_reqsk_queue_is_full); read after the
				// drop, the count is at least the backlog on both.
				case st.Backlog > 0 && st.SynRecv >= int(st.Backlog):
					cause = causes.SynQueueOverflow
				}
			} else {
				f.evidence = append(f.evidence, "listener not found by sock_diag")
			}
		}
		return append(out, e.emit(f.outcome(Dropped, cause))...)
	}
}

// netfilterRST is the evidence of a RST a netfilter reject rule sent: it
// leaves a device inside the SYN's window (FlagRSTSent) without TCP's
// tcp_send_reset (FlagRST).
const netfilterRST = "RST sent by a netfilter reject rule (nf_send_reset, no tcp_send_reset)"

// siteOutcome decides a SYN dropped on a kernel without drop reasons
// (before 5.17) by where it was freed: the catalog's drop sites name the
// cause where the site (with the RST evidence) tells it, and otherwise
// list what the site cannot tell apart, naming nothing.
func (e *Engine) siteOutcome(f *flow, ev Event) Outcome {
	rst := ev.Flags&(FlagRST|FlagRSTSent) != 0
	fate := Dropped
	if rst {
		fate = Refused
	}
	if ev.DropSite == "" {
		f.evidence = append(f.evidence, "SYN dropped: this kernel's kfree_skb gives no drop reason and the drop site could not be resolved (/proc/kallsyms)")
		return f.outcome(fate, "")
	}
	f.evidence = append(f.evidence, fmt.Sprintf("SYN dropped in %s (kfree_skb location; this kernel gives no drop reason)", ev.DropSite))
	cause, site, cands := causes.ForDropSite(ev.DropFunc, rst)
	switch {
	case rst && cause == causes.FirewallDrop && ev.Flags&FlagRST == 0:
		f.evidence = append(f.evidence, netfilterRST)
	case rst:
		f.evidence = append(f.evidence, "RST sent answering the SYN")
	}
	if cause != "" {
		f.evidence = append(f.evidence, ev.DropFunc+": "+site.What)
		if cause == causes.FirewallDrop {
			cause = e.firewallCause(f, ev)
		}
		return f.outcome(fate, cause)
	}
	if len(cands) == 0 {
		f.evidence = append(f.evidence, ev.DropFunc+" is not a drop site the catalog knows")
		return f.outcome(fate, "")
	}
	parts := make([]string, len(cands))
	for i, c := range cands {
		parts[i] = fmt.Sprintf("%s (%s)", c.Cause, c.Site.What)
	}
	f.evidence = append(f.evidence, fmt.Sprintf("%s frees SYNs for causes its site cannot tell apart: %s", ev.DropFunc, strings.Join(parts, "; ")))
	return f.outcome(fate, "")
}

// firewallCause tells a SYN that netfilter dropped because conntrack found
// it INVALID ("ct state invalid drop") from other firewall drops.
// nf_conntrack_in clears skb->_nfct of an INVALID packet, but _nfct is also
// empty wherever conntrack is not hooked at all, so an empty _nfct counts
// as INVALID only where the namespace's conntrack has been marking packets
// INVALID (/proc/net/stat/nf_conntrack).
func (e *Engine) firewallCause(f *flow, ev Event) causes.ID {
	if ev.NfCT&NfCTKnown == 0 {
		return causes.FirewallDrop
	}
	if ev.NfCT&NfCTEntry != 0 {
		f.evidence = append(f.evidence, "the SYN was tracked by conntrack (not INVALID): dropped by a firewall rule")
		return causes.FirewallDrop
	}
	if ev.NfCT&7 == ipCTUntracked {
		f.evidence = append(f.evidence, "the SYN was untracked (notrack): dropped by a firewall rule")
		return causes.FirewallDrop
	}
	if e.Conntrack == nil {
		return causes.FirewallDrop
	}
	st, ok := e.Conntrack(ev.Netns)
	switch {
	case !ok:
		return causes.FirewallDrop
	case st.Invalid == 0:
		f.evidence = append(f.evidence, "no conntrack entry on the SYN and conntrack has marked nothing INVALID in this namespace (not hooked): dropped by a firewall rule")
		return causes.FirewallDrop
	}
	f.evidence = append(f.evidence, fmt.Sprintf("no conntrack entry on the SYN when the firewall dropped it, and conntrack has found %d packets INVALID in this namespace (%d entries): a 'ct state invalid' drop", st.Invalid, st.Entries))
	return causes.ConntrackInvalid
}

// Unfinished reports whether a handshake whose first SYN the kernel saw
// before mono time before is still waiting for its next step.
func (e *Engine) Unfinished(before time.Duration) bool {
	for _, f := range e.flows {
		if f.synMono < before {
			return true
		}
	}
	return false
}

// Expire reports flows idle longer than Pending at kernel monotonic time now.
func (e *Engine) Expire(now time.Duration) []Outcome {
	var out []Outcome
	for k, f := range e.flows {
		if now-f.lastSeen < e.Pending {
			continue
		}
		delete(e.flows, k)
		out = append(out, e.emit(f.expired())...)
	}
	sortOutcomes(out)
	return out
}

// Flush reports every flow still waiting (at exit, kernel monotonic time
// now); flows idle for less than Pending are marked Incomplete.
func (e *Engine) Flush(now time.Duration) []Outcome {
	var out []Outcome
	for k, f := range e.flows {
		delete(e.flows, k)
		o := f.expired()
		if now-f.lastSeen < e.Pending {
			o.Incomplete = true
			if o.Fate != Established {
				o.Fate, o.Cause = Unknown, ""
			}
			o.Evidence = append(o.Evidence, "tracing stopped while the handshake was under way")
		}
		out = append(out, e.emit(o)...)
	}
	sortOutcomes(out)
	return out
}

func sortOutcomes(o []Outcome) {
	sort.Slice(o, func(i, j int) bool { return o[i].Time.Before(o[j].Time) })
}

func (f *flow) expired() Outcome {
	switch {
	case f.routeOK && f.synacks == 0:
		// The reply route exists but no SYN-ACK ever reached a device and
		// none was freed: it waits in the neighbour queue of a next hop
		// that does not answer (reference 2.C5).
		f.evidence = append(f.evidence, fmt.Sprintf("no SYN-ACK reached a device (%d retransmits queued): next hop not resolving", f.retrans))
		return f.outcome(Dropped, causes.NeighborUnreachable)
	case f.retrans > 0:
		f.evidence = append(f.evidence, fmt.Sprintf("SYN-ACK retransmitted %d times, no final ACK", f.retrans))
		o := f.outcome(SynAckRetransmitted, causes.SynackUnanswered)
		o.SynToSynAckUS = us(f.synackMono - f.synMono)
		return o
	case f.synacks > 0:
		f.evidence = append(f.evidence, "SYN-ACK sent, no final ACK seen yet")
		o := f.outcome(Unknown, "")
		o.SynToSynAckUS = us(f.synackMono - f.synMono)
		return o
	}
	return f.outcome(Unknown, "")
}

func (f *flow) outcome(fate Fate, cause causes.ID) Outcome {
	return Outcome{
		Time:        f.first.Time,
		Netns:       f.first.Netns,
		Client:      f.first.Client.String(),
		Server:      f.first.Server.String(),
		Fate:        fate,
		Cause:       cause,
		SynAcks:     f.synacks,
		Retransmits: f.retrans,
		SYNs:        f.syns,
		Evidence:    f.evidence,
		clientAP:    f.first.Client,
		serverAP:    f.first.Server,
	}
}

func (e *Engine) emit(o Outcome) []Outcome {
	e.stats.add(o)
	return []Outcome{o}
}

// Stats returns the outcome totals so far.
func (e *Engine) Stats() Stats { return e.stats.clone() }

// dropCause maps a kfree_skb reason of the SYN (or final ACK) to a cause;
// the catalog owns the mapping.
func dropCause(reason string) causes.ID { return causes.ForDropReason(reason) }

// synackDropCause maps a kfree_skb reason of the SYN-ACK to a cause.
func synackDropCause(reason string) causes.ID { return causes.ForSynackDropReason(reason) }

// tcpRejectEvidence explains which TCP check refused the SYN, in the
// catalog's words for the tracepoint that saw it.
func tcpRejectEvidence(tp string) string {
	if _, what := causes.TracepointText(tp); what != "" {
		return tp + ": " + what
	}
	return "rejected by TCP (" + tp + ")"
}

// errnoName shows a failed route lookup's error (a negative errno) and,
// for the route types whose lookups fail with it, which (the catalog's
// RouteTypes): "EINVAL (blackhole route)".
func errnoName(err int32) string {
	e := syscall.Errno(-err)
	name := unix.ErrnoName(e)
	if name == "" {
		return fmt.Sprintf("err %d", err)
	}
	t, ok := causes.ErrnoRouteType(e)
	switch {
	case e == syscall.EAGAIN:
		// fib_table_lookup also returns -EAGAIN when the table has no
		// route at all: the lookup goes on with the next rule.
		return name + " (no route in the table, or a " + t + " route)"
	case ok:
		return name + " (" + t + " route)"
	}
	return name
}

// Stats are totals of outcomes, for the exit summary.
type Stats struct {
	Outcomes  int               `json:"outcomes"`
	ByFate    map[Fate]int      `json:"by_fate"`
	ByCause   map[causes.ID]int `json:"by_cause"`
	Peers     map[string]int    `json:"-"`
	Listeners map[string]int    `json:"-"`
	FateCause map[string]int    `json:"-"`
	Latency   []float64         `json:"-"`
}

func newStats() Stats {
	return Stats{ByFate: map[Fate]int{}, ByCause: map[causes.ID]int{}, Peers: map[string]int{}, Listeners: map[string]int{}, FateCause: map[string]int{}}
}

func (s *Stats) add(o Outcome) {
	s.Outcomes++
	s.ByFate[o.Fate]++
	if o.Cause != "" {
		s.ByCause[o.Cause]++
	}
	s.Peers[o.clientAP.Addr().String()]++
	s.Listeners[o.Server]++
	s.FateCause[string(o.Fate)+" "+string(o.Cause)]++
	if o.SynToSynAckUS != nil {
		s.Latency = append(s.Latency, *o.SynToSynAckUS)
	}
}

func (s Stats) clone() Stats {
	c := newStats()
	c.Outcomes = s.Outcomes
	for k, v := range s.ByFate {
		c.ByFate[k] = v
	}
	for k, v := range s.ByCause {
		c.ByCause[k] = v
	}
	for k, v := range s.Peers {
		c.Peers[k] = v
	}
	for k, v := range s.Listeners {
		c.Listeners[k] = v
	}
	for k, v := range s.FateCause {
		c.FateCause[k] = v
	}
	c.Latency = append([]float64(nil), s.Latency...)
	return c
}

// Top returns up to n keys of m with the highest counts.
func Top(m map[string]int, n int) []KeyCount {
	out := make([]KeyCount, 0, len(m))
	for k, v := range m {
		out = append(out, KeyCount{Key: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// KeyCount is one row of a top list.
type KeyCount struct {
	Key   string `json:"key"`
	Count int    `json:"count"`
}

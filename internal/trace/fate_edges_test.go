package trace

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
)

// The fate logic's edges (review T1-T6): each row sits on one side of a
// boundary the engine decides on, so moving the boundary fails a row.

// TestAdmissionBoundaries: a SYN consumed before the reply route lookup is
// attributed from the listener's queues as sock_diag shows them after the
// drop. The accept queue counts as full from AcceptQueue == Backlog (the
// drop happened at Backlog+1, and the application may have accepted one
// since); the SYN queue counts as full from SynRecv == Backlog (the kernel's
// inet_csk_reqsk_queue_is_full: len >= max on 5.10, len > max on 6.x).
func TestAdmissionBoundaries(t *testing.T) {
	cases := []struct {
		name string
		st   ListenerState
		want causes.ID
	}{
		{"accept queue at backlog", ListenerState{AcceptQueue: 5, Backlog: 5}, causes.AcceptQueueOverflow},
		{"accept queue over backlog", ListenerState{AcceptQueue: 6, Backlog: 5}, causes.AcceptQueueOverflow},
		{"accept queue one below backlog", ListenerState{AcceptQueue: 4, Backlog: 5}, causes.UnexplainedDrops},
		{"backlog 0, empty queue", ListenerState{AcceptQueue: 0, Backlog: 0}, causes.UnexplainedDrops},
		{"backlog 0, one waiting", ListenerState{AcceptQueue: 1, Backlog: 0}, causes.AcceptQueueOverflow},
		{"syn queue over backlog", ListenerState{AcceptQueue: 0, Backlog: 5, SynRecv: 6}, causes.SynQueueOverflow},
		// Full is qlen >= backlog on 5.10 and qlen > backlog on 6.x; read
		// after the drop the count is at least the backlog on both.
		{"syn queue at backlog", ListenerState{AcceptQueue: 0, Backlog: 5, SynRecv: 5}, causes.SynQueueOverflow},
		{"syn queue one below backlog", ListenerState{AcceptQueue: 0, Backlog: 5, SynRecv: 4}, causes.UnexplainedDrops},
		{"both full: accept queue first", ListenerState{AcceptQueue: 5, Backlog: 5, SynRecv: 9}, causes.AcceptQueueOverflow},
	}
	for _, c := range cases {
		eng := NewEngine(time.Second)
		eng.Listener = func(ns uint32, s netip.AddrPort) (ListenerState, bool) {
			if ns != 7 || s != tServer {
				t.Errorf("%s: listener looked up for %d %v", c.name, ns, s)
			}
			return c.st, true
		}
		outs := eng.Add(synEv(time.Millisecond, FlagConsumed, nil))
		if len(outs) != 1 || outs[0].Fate != Dropped || outs[0].Cause != c.want {
			t.Errorf("%s: got %+v, want dropped %s", c.name, outs, c.want)
			continue
		}
		want := fmt.Sprintf("listener accept queue %d/%d, %d in SYN-RECV", c.st.AcceptQueue, c.st.Backlog, c.st.SynRecv)
		if !hasEvidence(outs[0], want) {
			t.Errorf("%s: evidence %q lacks %q", c.name, outs[0].Evidence, want)
		}
	}
	// Listener not found: unexplained, and said so.
	eng := NewEngine(time.Second)
	eng.Listener = func(uint32, netip.AddrPort) (ListenerState, bool) { return ListenerState{}, false }
	outs := eng.Add(synEv(time.Millisecond, FlagConsumed, nil))
	if len(outs) != 1 || outs[0].Cause != causes.UnexplainedDrops || !hasEvidence(outs[0], "listener not found") {
		t.Errorf("listener not found: %+v", outs)
	}
}

// TestConntrackInvalidFromOne: a single INVALID packet in the namespace is
// enough to show conntrack is hooked and marking.
func TestConntrackInvalidFromOne(t *testing.T) {
	for _, c := range []struct {
		invalid uint64
		want    causes.ID
	}{{0, causes.FirewallDrop}, {1, causes.ConntrackInvalid}, {2, causes.ConntrackInvalid}} {
		e := NewEngine(time.Second)
		e.Conntrack = func(uint32) (ConntrackState, bool) { return ConntrackState{Entries: 4, Invalid: c.invalid}, true }
		outs := e.Add(synEv(time.Millisecond, 0, func(ev *Event) { ev.DropReason = "NETFILTER_DROP"; ev.NfCT = NfCTKnown }))
		if len(outs) != 1 || outs[0].Cause != c.want {
			t.Errorf("Invalid=%d: got %+v, want %s", c.invalid, outs, c.want)
			continue
		}
		if c.want == causes.ConntrackInvalid && !hasEvidence(outs[0], fmt.Sprintf("found %d packets INVALID in this namespace (4 entries)", c.invalid)) {
			t.Errorf("Invalid=%d: evidence %q", c.invalid, outs[0].Evidence)
		}
	}
}

// TestNeighbourQueueThenSynAck: a SYN-ACK that waited for the next hop and
// then left is not a neighbour failure; with no final ACK it is an
// unanswered SYN-ACK.
func TestNeighbourQueueThenSynAck(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name   string
		events []Event
		fate   Fate
		cause  causes.ID
	}{
		{"queued, never sent", []Event{
			synEv(ms, FlagConsumed|FlagFib|FlagNeighQueued, nil),
			ev(KindRetrans, time.Second, nil),
		}, Dropped, causes.NeighborUnreachable},
		{"queued, then sent and retransmitted", []Event{
			synEv(ms, FlagConsumed|FlagFib|FlagNeighQueued, nil),
			ev(KindSynAck, 20*ms, nil),
			ev(KindRetrans, time.Second, nil),
		}, SynAckRetransmitted, causes.SynackUnanswered},
		{"queued, then sent and acknowledged", []Event{
			synEv(ms, FlagConsumed|FlagFib|FlagNeighQueued, nil),
			ev(KindSynAck, 20*ms, nil),
			ev(KindAck, 25*ms, nil),
		}, Established, ""},
	} {
		eng := NewEngine(2 * time.Second)
		var outs []Outcome
		for _, e := range c.events {
			outs = append(outs, eng.Add(e)...)
		}
		outs = append(outs, eng.Expire(10*time.Second)...)
		if len(outs) != 1 || outs[0].Fate != c.fate || outs[0].Cause != c.cause {
			t.Errorf("%s: got %+v, want %s %q", c.name, outs, c.fate, c.cause)
		}
	}
}

// TestRouteErrnoEvidence: the failed reply-route lookup names the errno
// the kernel returned (each route type has its own).
func TestRouteErrnoEvidence(t *testing.T) {
	cases := []struct {
		errno int32
		want  []string
		not   []string
	}{
		{-11, []string{"EAGAIN"}, []string{"ENETUNREACH", "EHOSTUNREACH"}},
		{-101, []string{"ENETUNREACH"}, []string{"EHOSTUNREACH", "EAGAIN"}},
		{-113, []string{"EHOSTUNREACH"}, []string{"ENETUNREACH"}},
		{-13, []string{"EACCES"}, []string{"EINVAL"}},
		{-22, []string{"EINVAL"}, []string{"EACCES"}},
		{-99, []string{"EADDRNOTAVAIL"}, []string{"EINVAL", "EACCES", "UNREACH"}},
	}
	for _, c := range cases {
		eng := NewEngine(time.Second)
		outs := eng.Add(synEv(time.Millisecond, FlagConsumed|FlagFib, func(e *Event) { e.FibErr = c.errno; e.FibTable = 254 }))
		if len(outs) != 1 || outs[0].Cause != causes.NoRouteToPeer {
			t.Fatalf("errno %d: got %+v", c.errno, outs)
		}
		line := findEvidence(outs[0], "reply route lookup")
		if !strings.HasPrefix(line, "reply route lookup 10.77.2.2:8080 -> 10.77.1.2:40000 failed in table 254: ") {
			t.Errorf("errno %d: route evidence %q", c.errno, line)
		}
		for _, w := range c.want {
			if !strings.Contains(line, w) {
				t.Errorf("errno %d: %q lacks %q", c.errno, line, w)
			}
		}
		for _, w := range c.not {
			if strings.Contains(line, w) {
				t.Errorf("errno %d: %q names %q", c.errno, line, w)
			}
		}
	}
}

// TestTCPRejectEvidence: each TCP check that refuses a SYN is named with
// what it means; an unknown one is still named.
func TestTCPRejectEvidence(t *testing.T) {
	cases := []struct {
		tp   string
		want []string
	}{
		{"tcp_bad_csum", []string{"checksum"}},
		{"tcp_hash_md5_required", []string{"requires", "MD5", "has none"}},
		{"tcp_hash_md5_unexpected", []string{"carries", "MD5", "no key"}},
		{"tcp_hash_md5_mismatch", []string{"MD5", "does not match"}},
		{"tcp_hash_ao_required", []string{"requires TCP-AO"}},
		{"tcp_hash_bad_header", []string{"malformed"}},
		{"tcp_ao_handshake_failure", []string{"TCP-AO", "does not match"}},
		{"tcp_something_new", []string{"rejected by TCP"}},
	}
	for _, c := range cases {
		eng := NewEngine(time.Second)
		outs := eng.Add(synEv(time.Millisecond, 0, func(e *Event) { e.DropReason = "NOT_SPECIFIED"; e.TCPReject = c.tp }))
		if len(outs) != 1 || outs[0].Fate != Dropped || outs[0].Cause != causes.TCPReject {
			t.Fatalf("%s: got %+v", c.tp, outs)
		}
		line := findEvidence(outs[0], c.tp)
		if line == "" {
			t.Errorf("%s: no evidence names it: %q", c.tp, outs[0].Evidence)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: evidence %q lacks %q", c.tp, line, w)
			}
		}
	}
	// The checks are told apart: no two share a text.
	seen := map[string]string{}
	for _, c := range cases {
		eng := NewEngine(time.Second)
		outs := eng.Add(synEv(time.Millisecond, 0, func(e *Event) { e.DropReason = "NOT_SPECIFIED"; e.TCPReject = c.tp }))
		line := strings.TrimPrefix(findEvidence(outs[0], c.tp), c.tp)
		if other, dup := seen[line]; dup {
			t.Errorf("%s and %s have the same evidence %q", c.tp, other, line)
		}
		seen[line] = c.tp
	}
	// A TCP reject that also sent a RST is a refusal, with both facts.
	eng := NewEngine(time.Second)
	outs := eng.Add(synEv(time.Millisecond, FlagRST, func(e *Event) {
		e.DropReason = "TCP_MD5NOTFOUND"
		e.TCPReject = "tcp_hash_md5_required"
		e.RSTReason = "NOT_SPECIFIED"
	}))
	if len(outs) != 1 || outs[0].Fate != Refused || findEvidence(outs[0], "RST sent") == "" || findEvidence(outs[0], "tcp_hash_md5_required") == "" {
		t.Errorf("reject with RST: %+v", outs)
	}
}

func findEvidence(o Outcome, sub string) string {
	for _, e := range o.Evidence {
		if strings.Contains(e, sub) {
			return e
		}
	}
	return ""
}

func hasEvidence(o Outcome, sub string) bool { return findEvidence(o, sub) != "" }

// TestSyncookieCompletion: a handshake completed with a syncookie is
// established, attributed to the SYN flood that made the kernel use one.
func TestSyncookieCompletion(t *testing.T) {
	eng := NewEngine(time.Second)
	eng.Add(synEv(time.Millisecond, FlagConsumed|FlagSynAck|FlagFib|FlagCookie, func(e *Event) { e.SynAckMono = time.Millisecond }))
	outs := eng.Add(ev(KindAck, 2*time.Millisecond, nil))
	if len(outs) != 1 || outs[0].Fate != Established || outs[0].Cause != causes.SynFloodCookies || !hasEvidence(outs[0], "syncookie") {
		t.Fatalf("got %+v, want established with syn-flood-cookies", outs)
	}
	// Without the cookie flag: established, no cause.
	eng = NewEngine(time.Second)
	eng.Add(synEv(time.Millisecond, FlagConsumed|FlagSynAck|FlagFib, func(e *Event) { e.SynAckMono = time.Millisecond }))
	if outs := eng.Add(ev(KindAck, 2*time.Millisecond, nil)); len(outs) != 1 || outs[0].Cause != "" {
		t.Fatalf("got %+v, want established without a cause", outs)
	}
}

// TestFlushIdleIsFinal: at exit, a flow idle for Pending or longer has
// its final fate (only recent ones are provisional).
func TestFlushIdleIsFinal(t *testing.T) {
	for _, c := range []struct {
		now        time.Duration
		incomplete bool
		fate       Fate
	}{
		{3 * time.Second, false, SynAckRetransmitted},     // idle exactly Pending (2s)
		{3*time.Second - time.Millisecond, true, Unknown}, // 1 ms short of it
		{time.Hour, false, SynAckRetransmitted},           // long idle
	} {
		eng := NewEngine(2 * time.Second)
		eng.Add(synEv(time.Millisecond, FlagConsumed|FlagSynAck|FlagFib, func(e *Event) { e.SynAckMono = time.Millisecond }))
		eng.Add(ev(KindRetrans, time.Second, nil))
		outs := eng.Flush(c.now)
		if len(outs) != 1 || outs[0].Incomplete != c.incomplete || outs[0].Fate != c.fate {
			t.Errorf("flush at %v: got %+v, want incomplete=%v %s", c.now, outs, c.incomplete, c.fate)
		}
	}
}

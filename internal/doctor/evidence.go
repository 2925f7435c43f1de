package doctor

import (
	"net/netip"
	"time"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/dataplane"
	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/netmgr"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sockets"
	"github.com/synscope/synscope/internal/trace"
)

// Evidence is everything the collectors saw. Diagnose is a pure function of
// it, so rules can be table-tested on recorded evidence. A source named in
// Unchecked (or, for recorded evidence, a nil field) is "not checked":
// its reason is in the report's checks, and no finding may read its
// absence as "nothing there".
type Evidence struct {
	Target *netns.Target
	Window time.Duration

	// Counters: since-boot values at the end, and the change over the window.
	Counters      *counters.Snapshot
	CounterDeltas counters.Delta

	// Listeners at the start and the end of the window.
	ListenersStart, Listeners []sockets.Socket
	SynRecv                   []sockets.Socket
	Owners                    map[uint32][]sockets.Proc

	Capture *capture.Result
	// Trace is the kernel's fate of each handshake in the window (the
	// trace engine), nil when it did not run.
	Trace []trace.Outcome

	Routes *routes.State
	// Managers: the network manager owning each device, by ifindex (nil:
	// not checked).
	Managers map[int]netmgr.Owner
	// Replays of the SYN-ACK route lookup, one per (peer, local address).
	Replays []Replay

	Sysctl map[string]string

	ConntrackStart, Conntrack *counters.Conntrack

	FirewallStart, Firewall *firewall.Ruleset
	// FirewallDeltas: packet counter increase per rule key over the window.
	FirewallDeltas map[string]uint64
	// TC: classifiers on the devices' ingress/egress hooks.
	TC []firewall.TCFilter
	// XTables: legacy iptables rules at the window's start and end (their
	// counters tell which dropped in it); Dataplane: BPF programs and
	// socket filters with their verdicts on synthesized SYNs.
	XTablesStart, XTables []dataplane.XTRule
	Dataplane             *dataplane.Inventory

	// Unchecked names the collectors that did not run or failed, with the
	// reason: their evidence is "not checked", not "absent", and no
	// finding may be confirmed on it.
	Unchecked map[string]string

	// Indexes built on first use; a host can have tens of thousands of
	// listeners.
	startDrops    map[uint32]uint32
	synRecvByPort map[uint16]int
}

// PeerSource says how a peer became known.
type PeerSource string

// Peer sources.
const (
	FromFlag    PeerSource = "flag"
	FromCapture PeerSource = "capture"
	FromSockets PeerSource = "syn-recv"
)

// Peer is a client whose handshake the doctor looks at.
type Peer struct {
	Addr   netip.Addr
	Port   uint16 // client port, 0 when unknown
	Source PeerSource
	// Flow is the captured handshake, when the peer came from the capture
	// (the first one; Flows and SYNs count all of this client's attempts
	// to the same server address).
	Flow  *capture.Flow
	Flows int
	SYNs  int
}

// Replay is one replayed SYN-ACK route lookup and what it was for.
type Replay struct {
	Peer     Peer
	Listener *sockets.Socket
	Result   routes.Result
}

// counter returns a counter's change over the window, and false when the
// counters were not read: "not checked", which is not "did not move".
func (e *Evidence) counter(name string) (int64, bool) {
	if e.CounterDeltas == nil || !e.checked(sourceCounters) {
		return 0, false
	}
	return e.CounterDeltas[name], true
}

// delta is counter's value, 0 when not read: only for rules that declare
// the counters among their needs, whose findings Diagnose keeps at
// "possible", saying why, when the counters were not read.
func (e *Evidence) delta(name string) int64 {
	v, _ := e.counter(name)
	return v
}

// attributed splits the window's counter deltas into causes: the
// catalog's attribution, the one every mode reports.
func (e *Evidence) attributed() causes.Attribution {
	return causes.Attribute(e.delta)
}

func (e *Evidence) total(name string) uint64 {
	if e.Counters == nil {
		return 0
	}
	return e.Counters.Values[name]
}

// checked reports whether a collector ran and succeeded. Recorded
// evidence without a source's data counts as not checked too.
func (e *Evidence) checked(name string) bool {
	if _, bad := e.Unchecked[name]; bad {
		return false
	}
	switch name {
	case sourceCounters:
		return e.CounterDeltas != nil
	case sourceCapture:
		return e.Capture != nil
	case sourceRoutes:
		return e.Routes != nil
	case sourceSysctls:
		return e.Sysctl != nil
	case sourceFirewall:
		return e.Firewall != nil
	case sourceConntrack:
		return e.Conntrack != nil
	case sourceTC:
		return e.TC != nil
	case sourceXTables:
		return e.XTables != nil
	case sourceDataplane:
		return e.Dataplane != nil
	}
	return true
}

// whyUnchecked is the reason a source was not checked.
func (e *Evidence) whyUnchecked(name string) string {
	if why := e.Unchecked[name]; why != "" {
		return why
	}
	return "not collected"
}

func (e *Evidence) unchecked(name, why string) {
	if e.Unchecked == nil {
		e.Unchecked = map[string]string{}
	}
	e.Unchecked[name] = why
}

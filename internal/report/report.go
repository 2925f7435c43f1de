// Package report holds the result of a doctor run and renders it. Renderers
// only format: every judgement is made before a Report is built.
package report

import (
	"sort"
	"time"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/causes"
)

// Schema versions the JSON document; bump on incompatible change.
const Schema = "synscope.doctor/v1"

// Severity of a finding.
type Severity string

// Severities, most severe first.
const (
	Critical Severity = "critical"
	Warning  Severity = "warning"
	Info     Severity = "info"
)

func (s Severity) rank() int {
	switch s {
	case Critical:
		return 0
	case Warning:
		return 1
	default:
		return 2
	}
}

// Confidence says how a finding was established.
type Confidence string

// Confidence levels.
const (
	// Confirmed: packets, counters and a replayed kernel decision agree.
	Confirmed Confidence = "confirmed"
	// Likely: counters or state point at it, not confirmed per flow.
	Likely Confidence = "likely"
	// Possible: a remaining candidate after narrowing down.
	Possible Confidence = "possible"
)

// Evidence is one observation a finding rests on.
type Evidence struct {
	// Source is the collector: counters, sockets, routes, capture, sysctl,
	// firewall, neighbours, conntrack.
	Source string `json:"source"`
	// Text is the human sentence.
	Text string `json:"text"`
	// Data carries the machine-readable values (counter deltas, tuples).
	Data map[string]any `json:"data,omitempty"`
}

// Finding is one diagnosed cause.
type Finding struct {
	Cause      causes.ID  `json:"cause"`
	Title      string     `json:"title"`
	Severity   Severity   `json:"severity"`
	Confidence Confidence `json:"confidence"`
	// Why explains the confidence.
	Why      string     `json:"why,omitempty"`
	Summary  string     `json:"summary"`
	Evidence []Evidence `json:"evidence"`
	// Fix is a command (or commands, one per line) that fixes it; it may
	// contain <placeholders> when a value could not be inferred.
	Fix string `json:"fix"`
	// Drops is how many SYNs this cause explains in the window (for ranking).
	Drops     int64    `json:"drops"`
	Listeners []string `json:"listeners,omitempty"`
	Peers     []string `json:"peers,omitempty"`
}

// CheckStatus says whether a check ran.
type CheckStatus string

// Check statuses.
const (
	Ran     CheckStatus = "ok"
	Skipped CheckStatus = "skipped"
	Failed  CheckStatus = "failed"
)

// Check records one collector run or skip.
type Check struct {
	Name   string      `json:"name"`
	Status CheckStatus `json:"status"`
	// Detail: what was seen (ok) or why it did not run (skipped/failed).
	Detail     string  `json:"detail,omitempty"`
	DurationMS float64 `json:"duration_ms"`
}

// Target identifies what was inspected.
type Target struct {
	Netns      string `json:"netns"`
	NetnsInode uint64 `json:"netns_inode"`
	Kernel     string `json:"kernel,omitempty"`
	Hostname   string `json:"hostname,omitempty"`
}

// Report is the whole result of one doctor run.
type Report struct {
	Schema string `json:"schema"`
	// Version is the synscope that wrote the report (`synscope version --json`).
	Version       buildinfo.Info `json:"version"`
	Time          time.Time      `json:"time"`
	Target        Target         `json:"target"`
	WindowSeconds float64        `json:"window_seconds"`
	// OverheadMS is the wall time spent after the window closed (final
	// samples, replays, diagnosis): what doctor adds to the window.
	OverheadMS float64   `json:"overhead_ms"`
	Findings   []Finding `json:"findings"`
	Checks     []Check   `json:"checks"`
	// Counters: deltas over the window of the counters that matter
	// (non-zero only), nstat names.
	Counters map[string]int64 `json:"counter_deltas"`
	// Listeners observed, for context.
	Listeners []Listener `json:"listeners"`
	// Peers whose handshakes were looked at.
	Peers []Peer `json:"peers"`
	// DefaultRoutes per family and table, as the SYN-ACK's lookup sees them.
	DefaultRoutes []DefaultRoute `json:"default_routes"`
	// Sysctls that decide a handshake's fate, as read in the namespace.
	Sysctls map[string]string `json:"sysctls"`
	// Dataplane lists what beside nftables can drop a SYN, one line per
	// item: BPF programs (XDP, tc, tcx, cgroup_skb) with their verdict on
	// a synthesized SYN, listeners' socket filters, legacy iptables DROP
	// and REJECT rules. Information: a finding names an item only when
	// the evidence ties the lost SYNs to it.
	Dataplane []string `json:"dataplane,omitempty"`
}

// DefaultRoute is one default route ("" Via for a device route).
type DefaultRoute struct {
	Family string `json:"family"` // "ipv4" or "ipv6"
	Table  int    `json:"table"`
	Type   string `json:"type"`
	Via    string `json:"via,omitempty"`
	Dev    string `json:"dev,omitempty"`
	// Manager says which network manager owns the device, e.g. "s0 is
	// managed by systemd-networkd (configured)"; empty when none runs or
	// the network-managers source was not read.
	Manager string `json:"manager,omitempty"`
}

// Listener summarises one listening socket.
type Listener struct {
	Local      string   `json:"local"`
	AcceptQ    uint32   `json:"accept_queue"`
	Backlog    uint32   `json:"backlog"`
	Drops      uint64   `json:"drops"`
	DropsDelta int64    `json:"drops_delta"`
	SynRecv    int      `json:"syn_recv"`
	Process    string   `json:"process,omitempty"`
	Device     string   `json:"device,omitempty"`
	Mark       uint32   `json:"mark,omitempty"`
	Notes      []string `json:"notes,omitempty"`
}

// Peer summarises what happened with one client in the window.
type Peer struct {
	Addr     string `json:"addr"`
	Server   string `json:"server,omitempty"`
	Source   string `json:"source"` // flag, capture, sockets
	SYNs     int    `json:"syns"`
	SYNACKs  int    `json:"synacks"`
	RSTs     int    `json:"rsts"`
	Route    string `json:"route,omitempty"` // replayed SYN-ACK lookup result
	RouteErr string `json:"route_error,omitempty"`
}

// Sort orders findings: severity, then drops explained, then confidence.
func (r *Report) Sort() {
	conf := map[Confidence]int{Confirmed: 0, Likely: 1, Possible: 2}
	sort.SliceStable(r.Findings, func(i, j int) bool {
		a, b := r.Findings[i], r.Findings[j]
		if a.Severity.rank() != b.Severity.rank() {
			return a.Severity.rank() < b.Severity.rank()
		}
		if a.Drops != b.Drops {
			return a.Drops > b.Drops
		}
		return conf[a.Confidence] < conf[b.Confidence]
	})
}

// Exit codes shared by every mode.
const (
	ExitHealthy  = 0
	ExitProblems = 1
	ExitError    = 2
)

// ExitCode is 1 when any finding is critical or warning, else 0.
func (r *Report) ExitCode() int {
	for _, f := range r.Findings {
		if f.Severity == Critical || f.Severity == Warning {
			return ExitProblems
		}
	}
	return ExitHealthy
}

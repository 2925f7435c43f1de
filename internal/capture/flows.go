package capture

import (
	"net"
	"net/netip"
	"slices"
	"time"
)

// DefaultMaxFlows is the flow-table bound when Options.MaxFlows is 0.
const DefaultMaxFlows = 65536

// Options configure a capture session.
type Options struct {
	// Ports, if set, keeps only handshakes whose server port (the SYN's
	// destination port) is listed. The kernel filter applies it loosely
	// (either port matches, up to 64 ports); Go applies it
	// exactly.
	Ports []uint16
	// MaxFlows bounds the flow table (default DefaultMaxFlows); SYNs of
	// flows beyond it are counted in Result.OverflowFlows.
	MaxFlows int
}

// Direction says which side of the namespace the client is on.
type Direction int

const (
	// Inbound: a remote client's SYN arrived here; this namespace is (or
	// forwards to) the server. Loopback handshakes are Inbound too.
	Inbound Direction = iota
	// Outbound: a local client's SYN left through an interface.
	Outbound
)

func (d Direction) String() string {
	switch d {
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	default:
		return "unknown"
	}
}

// Flow is one attempted connection, keyed by its 4-tuple.
type Flow struct {
	Dir        Direction
	Client     netip.AddrPort   // the SYN's source
	Server     netip.AddrPort   // the SYN's destination
	Ifindex    int              // where the first SYN was seen
	ClientMAC  net.HardwareAddr // link-layer source of the first SYN (nil on loopback and raw-IP links)
	SYNs       int              // SYNs seen (retransmissions included)
	SYNACKs    int              // SYN-ACKs seen in reply
	RSTs       int              // RSTs from the server side (refusals)
	ClientRSTs int              // RSTs from the client side
	FirstSYN   time.Time
	LastSYN    time.Time
	// FirstSYNACK is zero if no SYN-ACK was seen.
	FirstSYNACK time.Time
	TTL         uint8  // IP TTL / hop limit of the first SYN
	MSS         uint16 // MSS option of the first SYN (0 if none)
}

// Answered reports whether a SYN-ACK was seen.
func (f Flow) Answered() bool { return f.SYNACKs > 0 }

// Refused reports a RST from the server side and no SYN-ACK.
func (f Flow) Refused() bool { return f.SYNACKs == 0 && f.RSTs > 0 }

// Result is what a session saw.
type Result struct {
	// Flows in order of their first SYN.
	Flows []Flow
	// Packets is the number of frames the filter passed and Go read
	// (handshake packets only, including ones not matching Ports loosely).
	Packets uint64
	// KernelDrops counts packets that passed the filter but were dropped
	// because the socket's receive buffer was full (tp_drops).
	KernelDrops uint32
	// OverflowFlows counts SYNs that would have started a new flow while the
	// table was full (an upper bound on untracked flows: retransmissions of
	// an untracked flow count again).
	OverflowFlows uint64
	// Duration is the capture window.
	Duration time.Duration
}

// Unanswered returns the flows in direction dir whose SYNs got neither a
// SYN-ACK nor a RST from the server side.
func (r *Result) Unanswered(dir Direction) []Flow {
	var out []Flow
	for _, f := range r.Flows {
		if f.Dir == dir && f.SYNs > 0 && f.SYNACKs == 0 && f.RSTs == 0 {
			out = append(out, f)
		}
	}
	return out
}

// flowKey identifies a handshake; netip values are comparable and carry no
// allocation for plain addresses.
type flowKey struct {
	client, server netip.AddrPort
}

// flowState is Flow without the allocated MAC slice, so that tracking a new
// flow costs only the map slot.
type flowState struct {
	Flow
	mac     [6]byte
	hasMAC  bool
	replyIf int // interface of the first SYN-ACK/RST counted, 0 before
}

// seen is how the read loop describes where a packet was observed.
type seen struct {
	at       time.Time
	ifindex  int
	outgoing bool // sll_pkttype == PACKET_OUTGOING
	loopback bool // seen on a loopback device: direction is meaningless
}

// table aggregates packets into flows. It is owned by one goroutine.
type table struct {
	ports    []uint16
	max      int
	flows    []flowState
	index    map[flowKey]int
	packets  uint64
	overflow uint64
}

func newTable(opts Options) *table {
	max := opts.MaxFlows
	if max <= 0 {
		max = DefaultMaxFlows
	}
	return &table{
		ports: slices.Clone(opts.Ports),
		max:   max,
		index: make(map[flowKey]int, min(max, 1024)),
	}
}

func (t *table) portWanted(p uint16) bool {
	return len(t.ports) == 0 || slices.Contains(t.ports, p)
}

// add accounts one decoded packet. A packet can be seen more than once: a
// forwarding namespace sees a SYN arrive on one interface and leave on
// another, and stacked devices (vlan, bridge, bond) show it on the upper
// and the lower device. So: a SYN counts only in the direction and on the
// interface where the flow was first seen; a reply (SYN-ACK, server RST)
// only in the opposite direction and on the interface of the first reply,
// which need not be the SYN's (asymmetric routing); a client RST only in
// the SYN's direction. On loopback each packet is seen once (the filter
// drops the outgoing copy), and its direction means nothing.
func (t *table) add(p *Packet, s seen) {
	t.packets++
	dir := Inbound
	if s.outgoing {
		dir = Outbound
	}
	switch {
	case p.SYN():
		if !t.portWanted(p.Dst.Port()) {
			return
		}
		k := flowKey{client: p.Src, server: p.Dst}
		i, ok := t.index[k]
		if !ok {
			if len(t.flows) >= t.max {
				t.overflow++
				return
			}
			t.flows = append(t.flows, flowState{
				Flow: Flow{
					Dir: dir, Client: p.Src, Server: p.Dst, Ifindex: s.ifindex,
					SYNs: 1, FirstSYN: s.at, LastSYN: s.at, TTL: p.TTL, MSS: p.MSS,
				},
				// Loopback's Ethernet header is all zeros: no information.
				mac: p.SrcMAC, hasMAC: p.HasMAC && !s.loopback,
			})
			t.index[k] = len(t.flows) - 1
			return
		}
		f := &t.flows[i]
		if s.loopback || (f.Dir == dir && f.Ifindex == s.ifindex) {
			f.SYNs++
			f.LastSYN = s.at
		}
	case p.SYNACK(), p.RST():
		// Replies travel server → client; a client RST travels client → server.
		if i, ok := t.index[flowKey{client: p.Dst, server: p.Src}]; ok {
			f := &t.flows[i]
			if !s.loopback && f.Dir == dir {
				return
			}
			// Stacked devices (vlan on a NIC, bridge and port, bond and
			// slave) show one reply once per device: count it on the
			// first device it was seen on only.
			if f.replyIf == 0 {
				f.replyIf = s.ifindex
			} else if f.replyIf != s.ifindex {
				return
			}
			if p.RST() {
				f.RSTs++
				return
			}
			if f.SYNACKs == 0 {
				f.FirstSYNACK = s.at
			}
			f.SYNACKs++
			return
		}
		if p.RST() {
			if i, ok := t.index[flowKey{client: p.Src, server: p.Dst}]; ok {
				f := &t.flows[i]
				if s.loopback || f.Dir == dir {
					f.ClientRSTs++
				}
			}
		}
	}
}

// result copies the table out; flows are ordered by first SYN.
func (t *table) result() []Flow {
	out := make([]Flow, len(t.flows))
	for i := range t.flows {
		fs := &t.flows[i]
		out[i] = fs.Flow
		if fs.hasMAC {
			out[i].ClientMAC = net.HardwareAddr(slices.Clone(fs.mac[:]))
		}
	}
	slices.SortStableFunc(out, func(a, b Flow) int { return a.FirstSYN.Compare(b.FirstSYN) })
	return out
}

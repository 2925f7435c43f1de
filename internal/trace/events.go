package trace

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
)

// Kind says which kernel moment an Event records.
type Kind uint32

// Event kinds; values match bpf/synscope.c.
const (
	// KindSYN: a SYN's processing ended (its skb was freed), with what was
	// seen meanwhile: reply route lookup, SYN-ACK queued or dropped, RST.
	KindSYN Kind = 1
	// KindSynAck: a later SYN-ACK of a followed flow left a device.
	KindSynAck Kind = 2
	// KindAck: the handshake's final ACK of a followed flow arrived.
	KindAck Kind = 3
	// KindRetrans: tcp_retransmit_synack for a followed flow.
	KindRetrans Kind = 4
	// KindDrop: kfree_skb of a followed flow's SYN-ACK or final ACK.
	KindDrop Kind = 5
)

func (k Kind) String() string {
	switch k {
	case KindSYN:
		return "syn"
	case KindSynAck:
		return "synack"
	case KindAck:
		return "ack"
	case KindRetrans:
		return "synack-retransmit"
	case KindDrop:
		return "drop"
	}
	return "unknown"
}

// SYN event flags; values match bpf/synscope.c.
const (
	FlagConsumed   = 1 << 0
	FlagSynAck     = 1 << 1
	FlagRST        = 1 << 2
	FlagFib        = 1 << 3
	FlagSynAckDrop = 1 << 4
	FlagSampled    = 1 << 5
	// FlagNeighQueued: the SYN-ACK was handed to a neighbour still being
	// resolved (neigh_event_send_done with rc != 0).
	FlagNeighQueued = 1 << 6
	// FlagRSTSent: a RST answering the SYN was queued to a device. Without
	// FlagRST it was built outside TCP, by a netfilter reject
	// (nf_send_reset), which fires no TCP tracepoint.
	FlagRSTSent = 1 << 7
	// FlagCookie: the SYN-ACK was sent without a request socket owning it,
	// which tcp_make_synack does only for a syncookie SYN-ACK.
	FlagCookie = 1 << 8
)

// Counter indexes; values match bpf/synscope.c.
const (
	cSyn = iota
	cSynUnsampled
	cSynSynack
	cSynRouteFail
	cSynConsumedSilent
	cSynRst
	cSynDropped
	cSynackDropped
	cSynackRetrans
	cAck
	cLost
	cSynCookie
	c_max
)

const dropSlots = 1024

// Event is one decoded kernel observation. Client is always the side that
// sent the SYN, Server the listener side, whatever the packet's direction.
type Event struct {
	Kind Kind
	// Time is when the SYN arrived (KindSYN) or the packet was seen.
	Time time.Time
	// Mono is the kernel's CLOCK_MONOTONIC time of Time, for latencies.
	Mono time.Duration
	// End is when the SYN's processing ended (KindSYN only).
	End    time.Duration
	Netns  uint32
	Client netip.AddrPort
	Server netip.AddrPort
	// TCPFlags of the packet concerned.
	TCPFlags uint8
	// Flags are the Flag* bits (KindSYN).
	Flags uint32
	// DropReason names the kfree_skb reason: of the SYN (KindSYN when not
	// FlagConsumed) or of the packet (KindDrop). Empty when none.
	DropReason string
	// Location is the kernel address that freed the skb.
	Location uint64
	// DropSite is Location as function+offset ("tcp_v4_rcv+0x5a3") and
	// DropFunc its function, for a drop on a kernel without drop reasons
	// (DropReason empty); empty when it could not be resolved.
	DropSite, DropFunc string
	// RSTReason names tcp_send_reset's reason when FlagRST.
	RSTReason string
	// FibErr and FibTable are the last reply route lookup's result (FlagFib).
	FibErr   int32
	FibTable uint32
	// SynAckDropReason names the kfree_skb reason of the SYN-ACK
	// (FlagSynAckDrop).
	SynAckDropReason string
	// SynAckLocation is the kernel address that freed the SYN-ACK
	// (FlagSynAckDrop); SynAckDropSite and SynAckDropFunc resolve it on a
	// kernel without drop reasons, as DropSite does for the SYN.
	SynAckLocation                 uint64
	SynAckDropSite, SynAckDropFunc string
	// SynAckMono is when the SYN-ACK was queued (FlagSynAck).
	SynAckMono time.Duration
	// TCPReject names the TCP tracepoint that rejected the SYN
	// ("tcp_hash_md5_required", "tcp_bad_csum", ...); empty when none did.
	TCPReject string
	// NfCT is what conntrack had attached to a dropped SYN (NfCT* bits and
	// ctinfo in the low 3 bits); 0 when unknown.
	NfCT uint32
}

// Event.NfCT bits; values match bpf/synscope.c.
const (
	// NfCTKnown: the kernel has skb->_nfct and it was read at the drop.
	NfCTKnown = 1 << 8
	// NfCTEntry: a conntrack entry was attached (the packet was tracked
	// and not INVALID).
	NfCTEntry = 1 << 9
	// ipCTUntracked is ctinfo IP_CT_UNTRACKED ("notrack").
	ipCTUntracked = 7
)

func tcpRejectName(v uint32) string {
	if v == 0 {
		return ""
	}
	// R_n is the catalog's n-th tcp-reject tracepoint (caps.go rejectHooks).
	if tps := causes.Tracepoints(causes.TCPReject); int(v) <= len(tps) {
		return tps[v-1].Name
	}
	return fmt.Sprintf("tcp-reject-%d", v)
}

// clockOffset converts CLOCK_MONOTONIC (bpf_ktime_get_ns) to wall time.
type clockOffset struct{ wallMinusMono time.Duration }

func newClockOffset() clockOffset {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return clockOffset{wallMinusMono: time.Duration(time.Now().UnixNano()) - time.Duration(ts.Nano())}
}

func (c clockOffset) wall(mono uint64) time.Time {
	return time.Unix(0, int64(c.wallMinusMono)+int64(mono))
}

// addr unmaps always: the BPF side stores IPv4 as ::ffff:a.b.c.d, and a
// request on a dual-stack listener reports even IPv4 peers as AF_INET6.
func addr(b [16]uint8, _ uint8) netip.Addr {
	return netip.AddrFrom16(b).Unmap()
}

func decode(r *synscopeEvent, n *Names, clk clockOffset) Event {
	src := netip.AddrPortFrom(addr(r.T.Saddr, r.T.Family), r.T.Sport)
	dst := netip.AddrPortFrom(addr(r.T.Daddr, r.T.Family), r.T.Dport)
	e := Event{
		Kind:     Kind(r.Kind),
		Time:     clk.wall(r.Ts),
		Mono:     time.Duration(r.Ts),
		End:      time.Duration(r.TsEnd),
		Netns:    r.Netns,
		TCPFlags: r.T.Flags,
		Flags:    r.Flags,
		Location: r.Location,
		FibErr:   r.FibErr,
		FibTable: r.FibTable,
	}
	// SYN and final ACK travel client→server; SYN-ACKs server→client.
	switch e.Kind {
	case KindSYN, KindAck:
		e.Client, e.Server = src, dst
	case KindDrop:
		if r.T.Flags&0x12 == 0x12 {
			e.Client, e.Server = dst, src
		} else {
			e.Client, e.Server = src, dst
		}
	default:
		e.Client, e.Server = dst, src
	}
	if e.Kind == KindSYN {
		if e.Flags&FlagConsumed == 0 {
			e.DropReason = n.DropReason(r.Reason)
		}
		if e.Flags&FlagRST != 0 {
			e.RSTReason = n.RstReason(r.RstReason)
		}
		if e.Flags&FlagSynAckDrop != 0 {
			e.SynAckDropReason = n.DropReason(r.SynackReason)
			e.SynAckLocation = r.SynackLocation
		}
		if e.Flags&FlagSynAck != 0 {
			e.SynAckMono = time.Duration(r.SynackTs)
		}
		e.TCPReject = tcpRejectName(r.TcpReject)
		e.NfCT = r.Nfct
	}
	if e.Kind == KindDrop {
		e.DropReason = n.DropReason(r.Reason)
	}
	return e
}

// Counters are the kernel-side totals for every SYN that passed the
// filters, sampled or not.
type Counters struct {
	SYNs              uint64 `json:"syns"`
	Unsampled         uint64 `json:"unsampled"`
	SynAcked          uint64 `json:"synacked"`
	RouteFailed       uint64 `json:"route_failed"`
	ConsumedSilently  uint64 `json:"consumed_silently"`
	Reset             uint64 `json:"reset"`
	Dropped           uint64 `json:"dropped"`
	SynackDropped     uint64 `json:"synack_dropped"`
	SynackRetransmits uint64 `json:"synack_retransmits"`
	// Acks counts final ACKs of reported (sampled) flows only: flows beyond
	// the sampling budget are not followed after their SYN.
	Acks uint64 `json:"acks"`
	// Lost counts events the ring buffer had no room for.
	Lost uint64 `json:"lost"`
	// Cookies counts SYNs answered with a syncookie SYN-ACK.
	Cookies           uint64            `json:"syncookies"`
	SYNDropReasons    map[string]uint64 `json:"syn_drop_reasons,omitempty"`
	SynackDropReasons map[string]uint64 `json:"synack_drop_reasons,omitempty"`
}

// Package pcap analyses TCP handshakes in packet captures: per connection
// it computes Zeek-compatible conn_state and history plus finer verdicts
// (SYN timed out with its retransmission schedule, refused, ICMP
// unreachable, SYN-ACK unanswered, ACK instead of SYN-ACK, one direction
// only, established with RTT) mapped to the cause catalog; it compares a
// client-side and a server-side capture of the same traffic to say where
// each connection died; and it renders text, JSON, ladders, HTML and
// annotated pcapng. Analysis is streaming: memory grows with open flows,
// not with packets (unless per-packet records are requested).
package pcap

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/packet"
	"github.com/synscope/synscope/internal/pcap/capfile"
)

// Config controls an analysis.
type Config struct {
	// VerifyChecksums drops packets with a bad IPv4 header checksum and
	// ignores (history c/C) TCP segments with a bad checksum, as Zeek
	// does without -C. Off by default: endpoint captures carry offloaded
	// checksums.
	VerifyChecksums bool
	// LikelyServerPorts decides direction for connections whose first
	// packet is not a bare SYN (Zeek's likely_server_ports). Nil means
	// DefaultLikelyServerPorts.
	LikelyServerPorts map[uint16]bool
	// Filter keeps only matching packets (nil = all).
	Filter *Filter
	// KeepPackets records every packet of every connection (needed for
	// ladders, annotation and two-capture comparison).
	KeepPackets bool
	// IdleTimeout ends an established connection after this much
	// silence (Zeek's tcp_inactivity_timeout, 5 min by default).
	IdleTimeout time.Duration
	// OnConn, if set, receives each connection when it ends and the
	// analyzer keeps nothing; otherwise connections are collected.
	OnConn func(*Conn)
	// ReuseConns (with OnConn) lets the analyzer recycle each Conn once
	// OnConn returns: the callback must not keep the pointer or any
	// slice in it. This removes per-connection garbage in streaming use.
	ReuseConns bool
	// MaxAttempts caps the half-open attempts tracked one by one (a
	// connection with only the client's SYNs so far, kept until its
	// report is written). Beyond it, new attempts and the SYN-ACKs
	// answering them are summed per server:port (Stats.Untracked), so a
	// SYN flood costs constant memory. 0 means DefaultMaxAttempts; a
	// negative value removes the cap.
	MaxAttempts int
	// ZeekRows splits connections into rows exactly where Zeek's timers
	// do: an attempt nobody answered ends tcp_attempt_delay (5 s) after
	// its first SYN, so a later retransmission starts a new row, and
	// every connection ends once idle for the inactivity timeout (ended
	// at, not after, the timeout, in every state). Off by default: one
	// row per attempt keeps the whole SYN retransmission schedule (and
	// the client's RTO pattern) together (ZEEK.md, difference 4).
	ZeekRows bool
	// Now is the analysis time: a packet stamped more than a day after
	// it cannot have been captured yet (a corrupt timestamp) and is
	// taken at the time of the packet before it. Zero means time.Now().
	Now time.Time
}

// DefaultMaxAttempts is the default Config.MaxAttempts: about 100 MB of
// per-attempt state at most.
const DefaultMaxAttempts = 100_000

// DefaultLikelyServerPorts approximates default-mode Zeek's
// likely_server_ports (the ports its bundled analyzers register).
var DefaultLikelyServerPorts = func() map[uint16]bool {
	m := map[uint16]bool{}
	for _, p := range []uint16{21, 2811, 22, 23, 25, 587, 53, 80, 81, 631, 1080, 3128, 8000, 8080, 8888,
		88, 750, 110, 995, 143, 993, 389, 3268, 636, 443, 563, 585, 614, 989, 990, 992, 5223, 502,
		1434, 3306, 3389, 5222, 5269, 6379, 135, 139, 445, 1812, 5060, 5432, 1883, 161, 162, 123,
		137, 138, 67, 68, 500, 4500, 5353, 5355, 1723, 179, 873, 5900, 9200, 11211, 27017, 2049} {
		m[p] = true
	}
	return m
}()

// Verdict is synscope's finer classification of a handshake.
type Verdict string

// Verdicts.
const (
	VerdictEstablished     Verdict = "established"
	VerdictSynTimeout      Verdict = "syn-timeout"
	VerdictRefused         Verdict = "refused"
	VerdictICMPUnreachable Verdict = "icmp-unreachable"
	// VerdictSynackNoAck is the catalog cause it names, spelled once.
	VerdictSynackNoAck    Verdict = Verdict(causes.SynackUnanswered)
	VerdictAckInsteadOfSA Verdict = "ack-instead-of-synack"
	VerdictOneDirection   Verdict = "one-direction"
	VerdictMidstream      Verdict = "midstream"
	VerdictClientAbort    Verdict = "client-abort"
	// VerdictUnfinished: the capture ended before the next SYN (or
	// SYN-ACK) retransmission or the answer was due.
	VerdictUnfinished Verdict = "unfinished"
)

// PacketRec is one packet of a connection (kept with Config.KeepPackets).
type PacketRec struct {
	Index    int    `json:"index"` // 1-based frame number in the file
	TS       int64  `json:"ts_ns"`
	FromOrig bool   `json:"from_orig"`
	Flags    uint8  `json:"flags"`
	Seq      uint32 `json:"seq"`
	Ack      uint32 `json:"ack"`
	Len      int    `json:"len"`
	TSval    uint32 `json:"tsval,omitempty"`
	IPID     uint16 `json:"ip_id,omitempty"`
	Dup      bool   `json:"dup,omitempty"`
	ICMP     string `json:"icmp,omitempty"`
	Bad      bool   `json:"bad_checksum,omitempty"`
	Opt      packet.Options
}

// Conn is one connection: Zeek's fields, then synscope's.
type Conn struct {
	// Per-packet state comes first and is kept small and together: the
	// analysis is bound by cache misses on it, one connection per packet.
	key    flowKey
	lastTS int64
	z      zconn
	// synscope's handshake tracking, by role: cli = sender of the first
	// bare SYN.
	origIsA   bool // the originator is the key's first address/port
	haveCli   bool
	cliIsOrig bool
	rstAnswer bool
	cliRST    bool
	ackAnswer bool
	dataSeen  bool
	// cliAcks: the client sent an ACK (no SYN, no RST) after its SYN,
	// which it does only once a SYN-ACK reached it.
	cliAcks bool
	// srvAcked: a server segment (not a SYN-ACK) acknowledged the SYN,
	// i.e. an ACK number within the client's sequence space.
	srvAcked bool
	// attempt: counted in Analyzer.attempts (only client SYNs so far).
	attempt bool
	// tfoAck: the first SYN-ACK acknowledged the SYN's data.
	tfoAck bool
	synTTL uint8
	isn    uint32
	// synLen is the payload the SYN carried (TCP Fast Open).
	synLen    uint32
	synackSeq uint32
	// cliHigh is the end of the client's sequence space seen so far.
	cliHigh     uint32
	synLayout   uint32
	firstCliAck uint32
	pktsCli     int
	pktsSrv     int
	firstSynack int64
	ackTime     int64
	firstAckTS  int64
	synTimes    []int64
	synackTimes []int64

	TS        float64 `json:"ts"`
	OrigH     string  `json:"orig_h"`
	OrigP     uint16  `json:"orig_p"`
	RespH     string  `json:"resp_h"`
	RespP     uint16  `json:"resp_p"`
	ConnState string  `json:"conn_state"`
	History   string  `json:"history"`
	OrigPkts  uint64  `json:"orig_pkts"`
	RespPkts  uint64  `json:"resp_pkts"`

	Verdict  Verdict   `json:"verdict"`
	Cause    causes.ID `json:"cause,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	Duration float64   `json:"duration"`
	// SynAttempts counts distinct SYN transmissions (duplicates removed).
	SynAttempts int `json:"syn_attempts"`
	// SynSchedule holds each SYN's offset in seconds from the first.
	SynSchedule []float64 `json:"syn_schedule,omitempty"`
	// RTOPattern names the retransmission pattern (e.g. "1s doubling").
	RTOPattern   string   `json:"rto_pattern,omitempty"`
	SynackCount  int      `json:"synack_count"`
	HandshakeRTT *float64 `json:"handshake_rtt,omitempty"`
	Duplicates   int      `json:"capture_duplicates,omitempty"`
	ICMP         string   `json:"icmp,omitempty"`
	// Notes say what the verdict rests on when the capture does not show
	// it directly (an inferred SYN-ACK, TCP Fast Open, an ICMP error for
	// a SYN that never reached the wire).
	Notes []string `json:"notes,omitempty"`
	// TFO is "accepted" or "declined" when the SYN carried data.
	TFO          string      `json:"tfo,omitempty"`
	ClientIsOrig bool        `json:"-"`
	Packets      []PacketRec `json:"-"`
	ID           int         `json:"id"`

	rtt         float64   // HandshakeRTT points here
	schedBuf    []float64 // SynSchedule's backing array, kept for reuse
	v6          bool
	origA, resA packet.Addr
	firstTS     int64
	icmp        string
	icmpCause   causes.ID
	// icmpOnly: the connection is known only from an ICMP error quoting
	// its SYN; icmpFrom sent the error.
	icmpOnly bool
	icmpFrom packet.Addr
	// badTS: a note names a packet of it with an implausible timestamp.
	badTS bool
}

// Stats counts what the analyzer saw.
type Stats struct {
	Packets    int `json:"packets"`
	TCP        int `json:"tcp_packets"`
	ICMPErrors int `json:"icmp_errors"`
	Undecoded  int `json:"undecoded"`
	BadIPCsum  int `json:"bad_ip_checksum"`
	BadTCPCsum int `json:"bad_tcp_checksum"`
	Duplicates int `json:"capture_duplicates"`
	Flows      int `json:"connections"`
	MaxOpen    int `json:"max_open_flows"`
	// UndecodedBy splits Undecoded by reason (packet.Reasons).
	UndecodedBy map[string]int `json:"undecoded_by_reason,omitempty"`
	// Encapsulations counts the TCP segments and ICMP errors decoded
	// from inside each encapsulation (packet.EncapNames).
	Encapsulations map[string]int `json:"encapsulations,omitempty"`
	// OutOfOrder counts packets timestamped earlier than one before
	// them; MaxBackstep is the largest such step, seconds.
	OutOfOrder  int     `json:"out_of_order,omitempty"`
	MaxBackstep float64 `json:"max_backstep,omitempty"`
	// FirstTS and LastTS are the earliest and latest packet times
	// (seconds since the epoch).
	FirstTS float64 `json:"first_ts,omitempty"`
	LastTS  float64 `json:"last_ts,omitempty"`
	// ICMPUnmatched counts ICMP errors quoting a TCP segment of no
	// connection in the capture that was not a SYN.
	ICMPUnmatched int `json:"icmp_unmatched,omitempty"`
	// ImplausibleTS counts packets stamped after the analysis time (a
	// corrupt timestamp), each analysed at the time of the packet before
	// it; ImplausibleFrame and ImplausibleAt are the first one's frame
	// number and timestamp (seconds since the epoch).
	ImplausibleTS    int     `json:"implausible_timestamps,omitempty"`
	ImplausibleFrame int     `json:"implausible_first_frame,omitempty"`
	ImplausibleAt    float64 `json:"implausible_first_ts,omitempty"`
	// MaxAttempts is the cap on attempts tracked one by one; Untracked
	// sums what came beyond it, per server:port.
	MaxAttempts   int         `json:"max_attempts"`
	UntrackedSYNs int         `json:"untracked_syns,omitempty"`
	Untracked     []Aggregate `json:"untracked,omitempty"`
}

// Analyzer consumes packets and produces connections.
type Analyzer struct {
	cfg    Config
	dec    packet.Decoder
	flows  flowTable
	done   []*Conn
	free   []*Conn // recycled connections (Config.ReuseConns)
	stats  Stats
	now    int64
	nextID int
	pkt    packet.Packet
	likely map[uint16]bool
	idle   int64
	strs   strCache
	// sweepCredit is the slots owed to the sweep by new connections.
	sweepCredit int
	// dups remembers recent packets' signatures (capture duplicates
	// over a window, not only the previous packet of a direction).
	dups     *dupTable
	first    int64
	backstep int64
	encaps   [packet.NumEncaps]int
	undec    [len(packet.Reasons)]int
	// attempts counts the connections held that are half-open attempts
	// (live ones, and ended ones kept for the report).
	attempts    int
	maxAttempts int
	agg         aggregates
	// srvRTT is the largest handshake RTT seen per server (bounded).
	srvRTT map[srvAddr]int64
	// latest is the latest plausible timestamp (Config.Now + a day).
	latest int64
	// zeekRows: Config.ZeekRows.
	zeekRows bool
}

type srvAddr struct {
	a  packet.Addr
	v6 bool
}

// maxRTTServers bounds Analyzer.srvRTT.
const maxRTTServers = 1 << 16

// closeDelay is Zeek's tcp_close_delay; attemptIdle ends handshake-only
// connections (Zeek's initial inactivity timeout is 1 min as well).
const (
	closeDelay  = int64(5 * time.Second)
	attemptIdle = int64(time.Minute)
	dupWindow   = int64(200 * time.Millisecond)
	// attemptDelay is Zeek's tcp_attempt_delay (Config.ZeekRows).
	attemptDelay = int64(5 * time.Second)
	// clockSlack is how far after the analysis time a timestamp may be
	// (a capture host's clock running ahead) before it is implausible.
	clockSlack = 24 * time.Hour
)

// The idle sweep is incremental: every sweepEvery packets it examines
// sweepSlots table slots plus sweepPerConn for each connection created
// since. Only new connections grow the table, and a full pass over its C
// slots (kept at most half full) spans at most C/4 of them, so
// ended-but-unswept connections stay below a quarter of the table:
// memory follows the open flows, without a stop-the-world scan. The
// per-packet part ends idle connections promptly when few new ones come.
const (
	sweepEvery   = 64
	sweepSlots   = 64
	sweepPerConn = 4
)

// NewAnalyzer returns an analyzer.
func NewAnalyzer(cfg Config) *Analyzer {
	a := &Analyzer{cfg: cfg, flows: newFlowTable(), likely: cfg.LikelyServerPorts, dups: &dupTable{}, srvRTT: map[srvAddr]int64{}}
	a.maxAttempts = cfg.MaxAttempts
	if a.maxAttempts == 0 {
		a.maxAttempts = DefaultMaxAttempts
	}
	a.agg.init()
	a.dec.VerifyChecksums = cfg.VerifyChecksums
	if a.likely == nil {
		a.likely = DefaultLikelyServerPorts
	}
	now := cfg.Now
	if now.IsZero() {
		now = time.Now()
	}
	a.latest = now.Add(clockSlack).UnixNano()
	a.zeekRows = cfg.ZeekRows
	a.idle = int64(cfg.IdleTimeout)
	if a.idle <= 0 {
		a.idle = int64(5 * time.Minute)
	}
	return a
}

// Stats returns the counters so far.
func (a *Analyzer) Stats() Stats {
	st := a.stats
	st.UndecodedBy, st.Encapsulations = nil, nil
	for i, n := range a.undec {
		if n > 0 {
			if st.UndecodedBy == nil {
				st.UndecodedBy = map[string]int{}
			}
			st.UndecodedBy[packet.Reasons[i]] = n
		}
	}
	for i, n := range a.encaps {
		if n > 0 {
			if st.Encapsulations == nil {
				st.Encapsulations = map[string]int{}
			}
			st.Encapsulations[packet.EncapNames[i]] = n
		}
	}
	if st.Packets > 0 {
		st.FirstTS, st.LastTS = float64(a.first)/1e9, float64(a.now)/1e9
	}
	st.MaxBackstep = round6(float64(a.backstep) / 1e9)
	st.MaxAttempts = a.maxAttempts
	st.Untracked, st.UntrackedSYNs = a.agg.report()
	return st
}

// Add feeds one captured packet; index is its 1-based frame number.
func (a *Analyzer) Add(cp capfile.Packet, index int) {
	a.stats.Packets++
	badTS, rawTS := false, cp.TS
	if cp.TS > a.latest && a.stats.Packets > 1 {
		// A corrupt timestamp: taking it would end every open
		// connection as idle and split the one it belongs to. Its
		// sequence numbers still pair it; its time is the previous
		// packet's.
		if a.stats.ImplausibleTS == 0 {
			a.stats.ImplausibleFrame, a.stats.ImplausibleAt = index, float64(cp.TS)/1e9
		}
		a.stats.ImplausibleTS++
		cp.TS, badTS = a.now, true
	}
	switch {
	case a.stats.Packets == 1:
		a.now, a.first = cp.TS, cp.TS
		a.flows.base = cp.TS
	case cp.TS > a.now:
		a.now = cp.TS
	case cp.TS < a.now:
		a.stats.OutOfOrder++
		a.backstep = max(a.backstep, a.now-cp.TS)
		a.first = min(a.first, cp.TS)
	}
	if a.stats.Packets%sweepEvery == 0 {
		a.flows.rebase(a.now)
		a.sweep(sweepSlots + a.sweepCredit)
		a.sweepCredit = 0
	}
	p := &a.pkt
	if err := a.dec.Decode(cp.Link, cp.Data, p); err != nil || p.Kind == packet.KindOther {
		if err != nil {
			a.stats.Undecoded++
			a.undec[packet.ReasonIndex(err)]++
		}
		return
	}
	if p.Encaps != 0 {
		for e := range packet.NumEncaps {
			if p.Encaps&(1<<e) != 0 {
				a.encaps[e]++
			}
		}
	}
	if p.IPChecksumBad {
		a.stats.BadIPCsum++
		return
	}
	if a.cfg.Filter != nil && !a.cfg.Filter.match(p) {
		return
	}
	if p.Kind == packet.KindICMPError {
		a.stats.ICMPErrors++
		a.icmp(p, cp.TS, index)
		return
	}
	a.stats.TCP++
	key, srcIsA := keyOf(&p.Src, &p.Dst, p.SrcPort, p.DstPort, p.V6)
	h := a.flows.hash(&key)
	si, c := a.flows.find(&key, h)
	if c != nil {
		switch {
		case c.z.removeAt != 0 && cp.TS >= c.z.removeAt,
			a.zeekRows && c.z.attemptExpired(cp.TS),
			a.zeekRows && cp.TS-c.lastTS >= a.idle,
			!a.zeekRows && cp.TS-c.lastTS > c.idleLimit(a.idle),
			bothInactive(&c.z) && cp.TS-c.z.lastTime > closeDelay,
			c.z.isReuse(p):
			a.finish(si)
			c = nil
		}
	}
	bareSYN := p.Flags&(packet.SYN|packet.ACK|packet.RST) == packet.SYN
	if c == nil && a.maxAttempts > 0 && a.attempts >= a.maxAttempts && a.agg.take(p, cp.TS, bareSYN) {
		// Beyond the cap: summed, not tracked.
		return
	}
	if c == nil {
		a.sweepCredit += sweepPerConn
		// Ending connections or growing the table moved slots.
		a.flows.reserve()
		si, _ = a.flows.find(&key, h)
		if a.flows.tooLong(si, h) {
			a.flows.reseed()
			h = a.flows.hash(&key)
			si, _ = a.flows.find(&key, h)
		}
		flip := wantFlip(p.Flags, p.SrcPort, p.DstPort, func(port uint16) bool { return a.likely[port] })
		c = a.newConn()
		c.key, c.v6, c.firstTS, c.ID = key, p.V6, cp.TS, a.nextID+1
		c.origIsA = srcIsA != flip
		c.z.init(flip)
		a.nextID++
		c.z.lastTime = cp.TS
		if flip {
			c.origA, c.resA, c.OrigP, c.RespP = p.Dst, p.Src, p.DstPort, p.SrcPort
		} else {
			c.origA, c.resA, c.OrigP, c.RespP = p.Src, p.Dst, p.SrcPort, p.DstPort
		}
		a.flows.insert(si, h, c)
		a.stats.Flows++
		a.stats.MaxOpen = max(a.stats.MaxOpen, a.flows.n)
		if a.zeekRows {
			c.z.attemptDelay = attemptDelay
		}
		if bareSYN {
			c.attempt = true
			a.attempts++
		}
	} else if c.attempt && srcIsA == c.origIsA && !bareSYN {
		// The client did more than send SYNs (its final ACK, data or a
		// RST): no longer a half-open attempt. Server SYN-ACKs and RSTs
		// leave it one, as in a SYN flood.
		c.attempt = false
		a.attempts--
	}
	// The key's orientation says which end sent the packet, without
	// touching the (cold) addresses.
	isOrig := srcIsA == c.origIsA
	if p.SrcPort == p.DstPort && p.Src == p.Dst {
		isOrig = true
	}
	c.lastTS = cp.TS
	if badTS && !c.badTS {
		c.badTS = true
		c.Notes = append(c.Notes, fmt.Sprintf("frame %d carries an implausible timestamp (%s, after the analysis time): it was taken at the time of the packet before it", index, time.Unix(0, rawTS).UTC().Format(time.RFC3339)))
	}
	if p.TCPChecksumBad {
		a.stats.BadTCPCsum++
		c.z.checksumError(isOrig)
		if a.cfg.KeepPackets {
			c.Packets = append(c.Packets, PacketRec{Index: index, TS: cp.TS, FromOrig: isOrig, Flags: p.Flags, Seq: p.Seq, Ack: p.Ack, Len: p.PayloadLen, Bad: true})
		}
		a.flows.setDeadline(si, c.deadline(a.idle))
		return
	}
	wasFlipped := c.z.flipped
	c.z.process(p, isOrig, cp.TS, closeDelay)
	if c.z.flipped != wasFlipped {
		c.origA, c.resA = c.resA, c.origA
		c.OrigP, c.RespP = c.RespP, c.OrigP
		c.origIsA = !c.origIsA
		for i := range c.Packets {
			c.Packets[i].FromOrig = !c.Packets[i].FromOrig
		}
		c.cliIsOrig = !c.cliIsOrig
		isOrig = !isOrig
	}
	a.flows.setDeadline(si, c.deadline(a.idle))
	dup := a.dups.seen(h, p, isOrig, cp.TS)
	if !dup {
		c.ours(p, isOrig, cp.TS)
	} else {
		c.Duplicates++
	}
	if dup {
		a.stats.Duplicates++
	}
	if a.cfg.KeepPackets {
		c.Packets = append(c.Packets, PacketRec{Index: index, TS: cp.TS, FromOrig: isOrig, Flags: p.Flags, Seq: p.Seq, Ack: p.Ack,
			Len: p.PayloadLen, TSval: p.Opt.TSval, IPID: p.IPID, Dup: dup, Opt: p.Opt})
	}
}

// newConn returns a zeroed connection, recycled when possible; the
// recycled one keeps its slices' backing arrays.
func (a *Analyzer) newConn() *Conn {
	n := len(a.free)
	if n == 0 {
		return &Conn{}
	}
	c := a.free[n-1]
	a.free = a.free[:n-1]
	hist, st, sa, sb, nb := c.z.hist[:0], c.synTimes[:0], c.synackTimes[:0], c.schedBuf[:0], c.Notes[:0]
	*c = Conn{}
	c.z.hist, c.synTimes, c.synackTimes, c.schedBuf = hist, st, sa, sb
	c.Notes = nb[:0:0]
	if cap(nb) > 0 {
		c.Notes = nb
	}
	return c
}

// deadline is when the sweep may end the connection: Zeek's delete timer
// after a close, else the inactivity timeout (ended when strictly
// exceeded, as Add does).
func (c *Conn) deadline(idle int64) int64 {
	d := c.lastTS + c.idleLimit(idle) + 1
	if c.z.attemptDelay != 0 {
		// Zeek's timers (Config.ZeekRows).
		d = c.lastTS + idle
		if c.z.attemptAt != 0 && c.z.attemptAt < d && c.z.attempting() {
			d = c.z.attemptAt
		}
	}
	if c.z.removeAt != 0 && c.z.removeAt < d {
		d = c.z.removeAt
	}
	return d
}

func bothInactive(z *zconn) bool { return z.orig.state == stInactive && z.resp.state == stInactive }

func (c *Conn) idleLimit(idle int64) int64 {
	if !c.z.established {
		return min(idle, attemptIdle)
	}
	return idle
}

// ours updates synscope's own handshake tracking with a packet that is
// not a capture duplicate.
func (c *Conn) ours(p *packet.Packet, isOrig bool, ts int64) {
	syn, ack, rst := p.Flags&packet.SYN != 0, p.Flags&packet.ACK != 0, p.Flags&packet.RST != 0
	if syn && !ack && !rst {
		if !c.haveCli {
			c.haveCli, c.cliIsOrig, c.isn = true, isOrig, p.Seq
			c.synTTL, c.synLayout = p.TTL, p.Opt.Layout
		}
		if isOrig == c.cliIsOrig {
			if p.Seq != c.isn || c.icmpOnly && len(c.synTimes) == 0 {
				// A new ISN on the same 4-tuple: a fresh attempt; keep
				// the schedule of the latest one.
				c.isn = p.Seq
				c.synTimes = c.synTimes[:0]
				c.synackTimes = c.synackTimes[:0]
				c.rstAnswer, c.ackAnswer, c.cliAcks, c.srvAcked, c.cliRST = false, false, false, false, false
				c.ackTime, c.synLen = 0, 0
				c.synTTL, c.synLayout = p.TTL, p.Opt.Layout
			}
			c.synLen = max(c.synLen, uint32(p.PayloadLen))
			c.cliHigh = max32seq(c.cliHigh, c.isn+1+c.synLen)
			c.synTimes = append(c.synTimes, ts)
		}
	}
	if p.PayloadLen > 0 {
		c.dataSeen = true
	}
	if !c.haveCli {
		if isOrig {
			c.pktsCli++
		} else {
			c.pktsSrv++
		}
		return
	}
	fromCli := isOrig == c.cliIsOrig
	if fromCli {
		c.pktsCli++
	} else {
		c.pktsSrv++
	}
	switch {
	case fromCli:
		if rst {
			if c.ackTime == 0 {
				c.cliRST = true
			}
			return
		}
		if syn {
			return
		}
		end := p.Seq + uint32(p.PayloadLen)
		if p.Flags&packet.FIN != 0 {
			end++
		}
		if len(c.synTimes) > 0 {
			c.cliHigh = max32seq(c.cliHigh, end)
		}
		if !ack || len(c.synTimes) == 0 {
			return
		}
		if !c.cliAcks {
			c.cliAcks, c.firstCliAck, c.firstAckTS = true, p.Ack, ts
		}
		if len(c.synackTimes) > 0 && c.ackTime == 0 && c.acksSynack(p.Ack) {
			c.ackTime = ts
		}
	case syn && ack && c.acksSyn(p.Ack, true):
		if len(c.synackTimes) == 0 {
			c.firstSynack = ts
			c.synackSeq = p.Seq
			c.tfoAck = c.synLen > 0 && p.Ack != c.isn+1
			// A final ACK captured just before the SYN-ACK (packets
			// taken on different CPUs) still completes the handshake.
			if c.cliAcks && c.ackTime == 0 && c.acksSynack(c.firstCliAck) {
				c.ackTime = c.firstAckTS
			}
		}
		c.synackTimes = append(c.synackTimes, ts)
	case rst:
		if len(c.synackTimes) == 0 && !c.srvAcked && !c.cliAcks && (!ack || c.acksSyn(p.Ack, false)) {
			c.rstAnswer = true
		}
	case syn:
	case ack && len(c.synackTimes) == 0 && len(c.synTimes) > 0:
		if c.acksSyn(p.Ack, false) {
			c.srvAcked = true
		} else if !c.srvAcked {
			c.ackAnswer = true
		}
	}
}

// acksSyn reports whether a server's ACK number acknowledges the SYN: for
// a SYN-ACK, the SYN and at most the data it carried (TCP Fast Open); for
// other segments, anything up to the end of the client's sequence space
// seen (the SYN-ACK itself may be missing from the capture).
func (c *Conn) acksSyn(ackNo uint32, synack bool) bool {
	if seqDelta(ackNo, c.isn+1) < 0 {
		return false
	}
	if synack {
		return seqDelta(ackNo, c.isn+1+c.synLen) <= 0
	}
	return seqDelta(ackNo, c.cliHigh) <= 0
}

// acksSynack reports whether a client's ACK number acknowledges the
// SYN-ACK: at or beyond its sequence number + 1 (it may also cover early
// server data), within the largest possible window.
func (c *Conn) acksSynack(ackNo uint32) bool {
	d := seqDelta(ackNo, c.synackSeq+1)
	return d >= 0 && d < 1<<30
}

func max32seq(a, b uint32) uint32 {
	if seqDelta(b, a) > 0 {
		return b
	}
	return a
}

func (a *Analyzer) icmp(p *packet.Packet, ts int64, index int) {
	// The quoted packet went InnerSrc:InnerSport -> InnerDst:InnerDport.
	key, srcIsA := keyOf(&p.InnerSrc, &p.InnerDst, p.InnerSport, p.InnerDport, p.V6)
	h := a.flows.hash(&key)
	si, c := a.flows.find(&key, h)
	if c == nil {
		if !p.InnerHasFlags || p.InnerFlags&(packet.SYN|packet.ACK|packet.RST) != packet.SYN {
			a.stats.ICMPUnmatched++
			return
		}
		// The error quotes a SYN the capture never saw: rejected before
		// it reached the wire (a local REJECT rule or route), or sent
		// where this capture does not look. It is still a failed
		// connect, so it gets a connection.
		a.flows.reserve()
		si, _ = a.flows.find(&key, h)
		if a.flows.tooLong(si, h) {
			a.flows.reseed()
			h = a.flows.hash(&key)
			si, _ = a.flows.find(&key, h)
		}
		c = a.newConn()
		c.key, c.v6, c.firstTS, c.lastTS, c.ID = key, p.V6, ts, ts, a.nextID+1
		a.nextID++
		c.origIsA = srcIsA
		c.z.init(false)
		c.z.lastTime = ts
		c.origA, c.resA, c.OrigP, c.RespP = p.InnerSrc, p.InnerDst, p.InnerSport, p.InnerDport
		c.haveCli, c.cliIsOrig, c.isn = true, true, p.InnerSeq
		c.icmpOnly, c.icmpFrom = true, p.Src
		a.flows.insert(si, h, c)
		a.flows.setDeadline(si, c.deadline(a.idle))
		a.stats.Flows++
		a.stats.MaxOpen = max(a.stats.MaxOpen, a.flows.n)
	}
	desc, cause := icmpDescribe(p.V6, p.ICMPType, p.ICMPCode)
	if c.icmp == "" {
		c.icmp, c.icmpCause = desc, cause
	}
	if a.cfg.KeepPackets {
		c.Packets = append(c.Packets, PacketRec{Index: index, TS: ts, FromOrig: p.InnerSrc != c.origA, ICMP: desc})
	}
}

// icmpDescribe names an ICMP error quoting a SYN and its cause, from the
// catalog.
func icmpDescribe(v6 bool, typ, code uint8) (string, causes.ID) {
	id, text, ok := causes.ForICMP(v6, typ, code)
	if !ok {
		return fmt.Sprintf("ICMP type %d code %d", typ, code), ""
	}
	return text, id
}

// sweep examines up to n table slots from where it last stopped and
// finalizes idle and closed connections, so memory tracks open flows.
func (a *Analyzer) sweep(n int) {
	t := &a.flows
	n = min(n, len(t.slots))
	for range n {
		s := &t.slots[t.hand]
		if s.c != nil && t.expired(t.hand, a.now) {
			// remove shifts a later entry into this slot: look again.
			a.finish(t.hand)
			continue
		}
		t.hand = (t.hand + 1) & t.mask
	}
}

// finish ends the connection in table slot i.
func (a *Analyzer) finish(i uint64) {
	c := a.flows.slots[i].c
	a.flows.remove(i)
	a.end(c)
}

func (a *Analyzer) end(c *Conn) { a.endAt(c, 0) }

// endAt ends a connection; capEnd is the capture's end when the capture
// ended with the connection still open (else 0).
func (a *Analyzer) endAt(c *Conn, capEnd int64) {
	fc := finalCtx{capEnd: capEnd}
	if capEnd != 0 {
		fc.rtt = a.srvRTT[c.serverAddr()]
	}
	c.finalize(&a.strs, &fc)
	if rtt, ok := c.rttNS(); ok {
		k := c.serverAddr()
		if old, have := a.srvRTT[k]; have || len(a.srvRTT) < maxRTTServers {
			a.srvRTT[k] = max(old, rtt)
		}
	}
	if c.attempt && a.cfg.OnConn != nil {
		c.attempt = false
		a.attempts--
	}
	if a.cfg.OnConn != nil {
		a.cfg.OnConn(c)
		if a.cfg.ReuseConns {
			a.free = append(a.free, c)
		}
		return
	}
	a.done = append(a.done, c)
}

// Finish ends the analysis and returns all connections in start order
// (nil when Config.OnConn consumed them).
func (a *Analyzer) Finish() []*Conn {
	open := make([]*Conn, 0, a.flows.n)
	for _, s := range a.flows.slots {
		if s.c != nil {
			open = append(open, s.c)
		}
	}
	a.flows = newFlowTable()
	sort.Slice(open, func(i, j int) bool { return open[i].ID < open[j].ID })
	// Whether an open attempt is unfinished depends on the RTTs the
	// capture shows for its server: learn them from the open ones first.
	for _, c := range open {
		if rtt, ok := c.rttNS(); ok {
			k := c.serverAddr()
			if old, have := a.srvRTT[k]; have || len(a.srvRTT) < maxRTTServers {
				a.srvRTT[k] = max(old, rtt)
			}
		}
	}
	for _, c := range open {
		a.endAt(c, a.now)
	}
	out := a.done
	a.done = nil
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// OrigAddr and RespAddr return the Zeek originator/responder addresses.
func (c *Conn) OrigAddr() netip.Addr { return c.origA.IP(c.v6) }

// RespAddr returns the responder address.
func (c *Conn) RespAddr() netip.Addr { return c.resA.IP(c.v6) }

// finalCtx is what classification needs beyond the connection.
type finalCtx struct {
	capEnd int64 // the capture's end, if it ended with the connection open
	rtt    int64 // largest handshake RTT the capture shows for the server
}

// serverAddr is the server's address (the receiver of the first SYN).
func (c *Conn) serverAddr() srvAddr {
	if !c.haveCli || c.cliIsOrig {
		return srvAddr{c.resA, c.v6}
	}
	return srvAddr{c.origA, c.v6}
}

// rttNS is the handshake round trip: last SYN to the final ACK (or the
// SYN-ACK when the final ACK is missing).
func (c *Conn) rttNS() (int64, bool) {
	if len(c.synackTimes) == 0 || len(c.synTimes) == 0 {
		return 0, false
	}
	end := c.ackTime
	if end == 0 || end < c.firstSynack {
		end = c.firstSynack
	}
	last := c.synTimes[len(c.synTimes)-1]
	if end < last {
		return 0, false
	}
	return end - last, true
}

func (c *Conn) finalize(sc *strCache, fc *finalCtx) {
	z := &c.z
	c.TS = float64(c.firstTS) / 1e9
	c.OrigH, c.RespH = sc.addr(&c.origA, c.v6), sc.addr(&c.resA, c.v6)
	c.ConnState = z.connState()
	c.History = sc.history(z.hist)
	if c.icmpOnly && z.orig.pkts+z.resp.pkts == 0 {
		c.ConnState = "-" // Zeek logs no TCP connection for it
	}
	c.OrigPkts, c.RespPkts = z.orig.pkts, z.resp.pkts
	c.Duration = float64(c.lastTS-c.firstTS) / 1e9
	c.ClientIsOrig = !c.haveCli || c.cliIsOrig
	c.SynAttempts = len(c.synTimes)
	c.SynackCount = len(c.synackTimes)
	c.ICMP = c.icmp
	if len(c.synTimes) > 0 {
		c.schedBuf = c.schedBuf[:0]
		for _, t := range c.synTimes {
			c.schedBuf = append(c.schedBuf, round3(float64(t-c.synTimes[0])/1e9))
		}
		c.SynSchedule = c.schedBuf
		c.RTOPattern = rtoPattern(c.SynSchedule, guessOS(c.synTTL, c.synLayout))
	}
	c.classify(fc)
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func (c *Conn) classify(fc *finalCtx) {
	if c.synLen > 0 && len(c.synackTimes) > 0 {
		// TCP Fast Open: the SYN-ACK acknowledges the SYN's data or not.
		c.TFO = "declined"
		if c.synackAckedData() {
			c.TFO = "accepted"
		}
		c.Notes = append(c.Notes, fmt.Sprintf("TCP Fast Open: the SYN carried %d bytes; the server %s them", c.synLen, map[string]string{"accepted": "acknowledged", "declined": "did not acknowledge"}[c.TFO]))
	}
	answered := len(c.synackTimes) > 0
	switch {
	case c.icmpOnly && len(c.synTimes) == 0:
		c.Verdict, c.Cause = VerdictICMPUnreachable, c.icmpCause
		c.Detail = fmt.Sprintf("an ICMP error (%s) from %s quotes a SYN that is not in the capture: the connect was rejected before the SYN reached the wire (a local REJECT rule or route), or the capture does not see the client's packets", c.icmp, c.icmpFrom.IP(c.v6))
		c.Notes = append(c.Notes, "known only from an ICMP error quoting its SYN (Zeek logs no TCP connection for it)")
	case !c.haveCli:
		if c.pktsCli == 0 || c.pktsSrv == 0 {
			c.Verdict = VerdictOneDirection
			c.Detail = "only one direction of the connection is in the capture (asymmetric routing, or a capture point that sees one way)"
		} else {
			c.Verdict = VerdictMidstream
			c.Detail = "no SYN in the capture: the connection started before it"
		}
	case c.rstAnswer:
		c.Verdict, c.Cause = VerdictRefused, causes.NoListener
		c.Detail = "the SYN was answered with RST: nothing listens on that address and port"
	case answered && c.ackTime != 0:
		c.established()
	case answered && c.cliRST:
		c.Verdict = VerdictClientAbort
		c.Detail = "the client answered the SYN-ACK with RST (a port scan, or the client socket was already gone)"
	case answered && c.cliAcks:
		// The client's ACKs do not acknowledge this SYN-ACK but prove
		// one reached it.
		c.established()
		c.Notes = append(c.Notes, "the client's ACKs do not acknowledge the captured SYN-ACK's sequence number")
	case answered:
		// A retransmitted SYN-ACK already went unanswered for an RTO;
		// a single one may only be waiting for the final ACK.
		if len(c.synackTimes) == 1 && c.unfinished(fc, c.synackTimes[0], 0) {
			c.Verdict = VerdictUnfinished
			c.Detail = fmt.Sprintf("%d SYN-ACK(s) without the final ACK when the capture ended, %s after the last; the final ACK was not yet due", len(c.synackTimes), fmtDur(float64(fc.capEnd-c.synackTimes[len(c.synackTimes)-1])/1e9))
			break
		}
		c.Verdict, c.Cause = VerdictSynackNoAck, causes.SynackUnanswered
		c.Detail = fmt.Sprintf("%d SYN-ACK(s) without the client's final ACK", len(c.synackTimes))
	case c.cliAcks && (c.srvAcked || c.pktsSrv > 0 && !c.ackAnswer):
		c.established()
		c.Notes = append(c.Notes, "the SYN-ACK is not in the capture, but the server's packets acknowledge the SYN and the client's ACKs show it was answered")
		c.Detail = "established; the SYN-ACK is missing from the capture (data flows both ways)"
	case c.cliAcks && c.pktsSrv == 0:
		c.Verdict = VerdictOneDirection
		c.Detail = "only the client's packets are in the capture (an egress-only or asymmetric capture): its ACKs after the SYN prove a SYN-ACK reached it, so the handshake completed"
		c.Notes = append(c.Notes, "SYN-ACK inferred from the client's ACKs")
	case c.srvAcked:
		c.Verdict = VerdictOneDirection
		c.Detail = "the server's packets acknowledge the SYN (its SYN-ACK is not in the capture) and no later client packet is: a capture that sees one way"
		c.Notes = append(c.Notes, "answer inferred from the server's ACK numbers")
	case c.icmp != "":
		c.Verdict, c.Cause = VerdictICMPUnreachable, c.icmpCause
		c.Detail = "the SYN drew an ICMP error: " + c.icmp
	case c.ackAnswer:
		c.Verdict, c.Cause = VerdictAckInsteadOfSA, causes.PAWSReject
		c.Detail = "the server answered the SYN with a bare ACK for another sequence (a TIME_WAIT socket or a PAWS reject), not a SYN-ACK"
	case c.cliRST:
		c.Verdict = VerdictClientAbort
		c.Detail = "the client gave up (RST) before any answer"
	case len(c.synTimes) == 1 && c.unfinished(fc, c.synTimes[0], c.nextSynRetry()):
		// A single SYN the capture ended on: nothing timed out yet.
		c.Verdict = VerdictUnfinished
		c.Detail = fmt.Sprintf("one SYN, %s before the capture ended: neither its retransmission (due %s after it) nor an answer (server RTT in this capture: %s) was due yet",
			fmtDur(float64(fc.capEnd-c.synTimes[0])/1e9), fmtDur(float64(c.nextSynRetry())/1e9), rttText(fc.rtt))
	default:
		c.Verdict = VerdictSynTimeout
		c.Detail = fmt.Sprintf("%d SYN(s), no answer in the capture", len(c.synTimes))
		if n := len(c.synTimes); n > 1 && c.unfinished(fc, c.synTimes[n-1], c.nextSynRetry()) {
			// Retransmissions prove earlier SYNs timed out; only the
			// last one's fate is open.
			c.Detail += fmt.Sprintf(" (%d timed out; the capture ended %s after the last, before its retransmission was due)", n-1, fmtDur(float64(fc.capEnd-c.synTimes[n-1])/1e9))
		}
	}
}

func rttText(rtt int64) string {
	if rtt == 0 {
		return "unknown"
	}
	return fmtDur(float64(rtt) / 1e9)
}

// established sets the established verdict and the handshake RTT.
func (c *Conn) established() {
	c.Verdict = VerdictEstablished
	if rtt, ok := c.rttNS(); ok {
		c.rtt = round6(float64(rtt) / 1e9)
		c.HandshakeRTT = &c.rtt
	}
}

// synackAckedData reports whether the SYN-ACK acknowledged the SYN's
// data (not only the SYN).
func (c *Conn) synackAckedData() bool { return c.tfoAck }

// Retransmission timers used to judge whether a capture ended too early.
const (
	initialRTO = int64(time.Second) // RFC 6298; Linux, Windows, macOS
	minRTO     = int64(200 * time.Millisecond)
)

// nextSynRetry is when the client's next SYN was due after its last: the
// initial RTO after the first, twice the last gap after later ones.
func (c *Conn) nextSynRetry() int64 {
	n := len(c.synTimes)
	if n < 2 {
		return initialRTO
	}
	return 2 * (c.synTimes[n-1] - c.synTimes[n-2])
}

// unfinished reports whether the capture ended, with the connection open,
// before the next retransmission (next after last) or an answer (1.5 ×
// the server's RTT seen in the capture, at least the minimum RTO) was
// due.
func (c *Conn) unfinished(fc *finalCtx, last, next int64) bool {
	if fc == nil || fc.capEnd == 0 {
		return false
	}
	wait := max(next, minRTO, fc.rtt+fc.rtt/2)
	return fc.capEnd-last < wait
}

func round6(f float64) float64 { return float64(int64(f*1e6+0.5)) / 1e6 }

// guessOS names the client's TCP stack from its SYN: the initial TTL
// (128 for Windows, 64 for Linux and macOS) and the order of its options.
func guessOS(ttl uint8, layout uint32) string {
	kinds := func(ks ...uint32) bool {
		for i, k := range ks {
			if layout>>(4*i)&15 != k {
				return false
			}
		}
		return true
	}
	switch {
	case ttl > 64 && ttl <= 128 && kinds(2, 1, 3):
		return "windows" // MSS, NOP, WS, NOP, NOP, SACK_PERM
	case ttl <= 64 && (kinds(2, 4, 8, 1, 3) || kinds(2, 1, 1, 4, 1, 3)):
		return "linux" // MSS, SACK_PERM, TS, NOP, WS (or without TS)
	case ttl <= 64 && kinds(2, 1, 3, 1, 1, 8, 4):
		return "macos" // MSS, NOP, WS, NOP, NOP, TS, SACK_PERM, EOL
	}
	return ""
}

// rtoPattern names a SYN retransmission schedule, and the client stack
// it points to (os from guessOS, "" when the SYN does not say).
func rtoPattern(s []float64, os string) string {
	if len(s) < 2 {
		return ""
	}
	near := func(v, want float64) bool { return v > want*0.8 && v < want*1.3 }
	gaps := make([]float64, 0, 8)
	for i := 1; i < len(s); i++ {
		gaps = append(gaps, s[i]-s[i-1])
	}
	first := gaps[0]
	doubling := true
	for i := 1; i < len(gaps); i++ {
		if gaps[i-1] <= 0 || gaps[i]/gaps[i-1] < 1.6 || gaps[i]/gaps[i-1] > 2.4 {
			doubling = false
		}
	}
	// macOS and the BSDs: tcp_syn_backoff {1, 1, 1, 1, 1, 2, 4, 8, ...}.
	flat := 0
	for _, g := range gaps {
		if !near(g, 1) {
			break
		}
		flat++
	}
	bsd := len(gaps) >= 3 && flat >= 3 && (flat == len(gaps) || flat >= 5)
	if bsd {
		for i := flat + 1; i < len(gaps); i++ {
			if gaps[i]/gaps[i-1] < 1.6 || gaps[i]/gaps[i-1] > 2.4 {
				bsd = false
			}
		}
	}
	kind := "irregular"
	switch {
	case bsd:
		return fmt.Sprintf("1s ×%d then doubling (macOS/BSD: tcp_syn_backoff)", flat)
	case doubling:
		kind = "doubling"
	}
	hint := ""
	switch {
	case doubling && near(first, 1) && os == "windows":
		hint = " (Windows: 1 s initial RTO, doubling, MaxSynRetransmissions 2-4)"
	case doubling && near(first, 1) && os == "linux":
		hint = " (Linux: tcp_syn_retries with a 1 s initial RTO)"
	case doubling && near(first, 1) && os == "macos":
		hint = " (macOS SYN, but not its 1 s × 5 backoff)"
	case doubling && near(first, 1):
		hint = " (1 s initial RTO: Linux, or Windows; the SYN's options do not say which)"
	case doubling && near(first, 3):
		hint = " (3 s initial RTO: older Windows / RFC 2988 stacks)"
	}
	return fmt.Sprintf("%.3gs %s%s", first, kind, hint)
}

// AnalyzeReader reads a whole capture. On a truncated file it returns the
// connections read so far together with the error.
func AnalyzeReader(r io.Reader, cfg Config) ([]*Conn, Stats, error) {
	rd, err := capfile.NewReader(r)
	if err != nil {
		return nil, Stats{}, err
	}
	return analyzeCapture(rd, cfg, nil)
}

// analyzeCapture runs the analysis over rd; progress, if set, is called
// every few thousand packets (mapped files release what was read).
func analyzeCapture(rd *capfile.Reader, cfg Config, progress func()) ([]*Conn, Stats, error) {
	a := NewAnalyzer(cfg)
	var readErr error
	for i := 1; ; i++ {
		p, err := rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
		a.Add(p, i)
		if progress != nil && i%8192 == 0 {
			progress()
		}
	}
	conns := a.Finish()
	return conns, a.Stats(), readErr
}

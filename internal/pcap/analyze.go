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
	"github.com/synscope/synscope/internal/pcap/capfile"
	"github.com/synscope/synscope/internal/pcap/decode"
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
}

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
	VerdictSynackNoAck     Verdict = "synack-unanswered"
	VerdictAckInsteadOfSA  Verdict = "ack-instead-of-synack"
	VerdictOneDirection    Verdict = "one-direction"
	VerdictMidstream       Verdict = "midstream"
	VerdictClientAbort     Verdict = "client-abort"
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
	Opt      decode.Options
}

// Conn is one connection: Zeek's fields, then synscope's.
type Conn struct {
	// Per-packet state comes first and is kept small and together: the
	// analysis is bound by cache misses on it, one connection per packet.
	key    flowKey
	lastTS int64
	z      zconn
	// lastSig holds each direction's previous packet (capture duplicates).
	lastSig [2]pktSig
	// synscope's handshake tracking, by role: cli = sender of the first
	// bare SYN.
	origIsA     bool // the originator is the key's first address/port
	haveCli     bool
	cliIsOrig   bool
	rstAnswer   bool
	cliRST      bool
	ackAnswer   bool
	dataSeen    bool
	isn         uint32
	synackSeq   uint32
	pktsCli     int
	pktsSrv     int
	firstSynack int64
	ackTime     int64
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
	RTOPattern   string      `json:"rto_pattern,omitempty"`
	SynackCount  int         `json:"synack_count"`
	HandshakeRTT *float64    `json:"handshake_rtt,omitempty"`
	Duplicates   int         `json:"capture_duplicates,omitempty"`
	ICMP         string      `json:"icmp,omitempty"`
	ClientIsOrig bool        `json:"-"`
	Packets      []PacketRec `json:"-"`
	ID           int         `json:"id"`

	rtt         float64   // HandshakeRTT points here
	schedBuf    []float64 // SynSchedule's backing array, kept for reuse
	v6          bool
	origA, resA decode.Addr
	firstTS     int64
	icmp        string
	icmpCause   causes.ID
}

type pktSig struct {
	ts    int64
	seq   uint32
	ack   uint32
	ln    int32
	tsval uint32
	ipid  uint16
	flags uint8
	valid bool
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
}

// Analyzer consumes packets and produces connections.
type Analyzer struct {
	cfg    Config
	dec    decode.Decoder
	flows  flowTable
	done   []*Conn
	free   []*Conn // recycled connections (Config.ReuseConns)
	stats  Stats
	now    int64
	nextID int
	pkt    decode.Packet
	likely map[uint16]bool
	idle   int64
	strs   strCache
	// sweepCredit is the slots owed to the sweep by new connections.
	sweepCredit int
}

// closeDelay is Zeek's tcp_close_delay; attemptIdle ends handshake-only
// connections (Zeek's initial inactivity timeout is 1 min as well).
const (
	closeDelay  = int64(5 * time.Second)
	attemptIdle = int64(time.Minute)
	dupWindow   = int64(200 * time.Millisecond)
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
	a := &Analyzer{cfg: cfg, flows: newFlowTable(), likely: cfg.LikelyServerPorts}
	a.dec.VerifyChecksums = cfg.VerifyChecksums
	if a.likely == nil {
		a.likely = DefaultLikelyServerPorts
	}
	a.idle = int64(cfg.IdleTimeout)
	if a.idle <= 0 {
		a.idle = int64(5 * time.Minute)
	}
	return a
}

// Stats returns the counters so far.
func (a *Analyzer) Stats() Stats { return a.stats }

// Add feeds one captured packet; index is its 1-based frame number.
func (a *Analyzer) Add(cp capfile.Packet, index int) {
	a.stats.Packets++
	if cp.TS > a.now {
		a.now = cp.TS
	}
	if a.stats.Packets == 1 {
		a.now = cp.TS
		a.flows.base = cp.TS
	}
	if a.stats.Packets%sweepEvery == 0 {
		a.flows.rebase(a.now)
		a.sweep(sweepSlots + a.sweepCredit)
		a.sweepCredit = 0
	}
	p := &a.pkt
	if err := a.dec.Decode(cp.Link, cp.Data, p); err != nil || p.Kind == decode.KindOther {
		if err != nil {
			a.stats.Undecoded++
		}
		return
	}
	if p.IPChecksumBad {
		a.stats.BadIPCsum++
		return
	}
	if a.cfg.Filter != nil && !a.cfg.Filter.match(p) {
		return
	}
	if p.Kind == decode.KindICMPError {
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
			cp.TS-c.lastTS > c.idleLimit(a.idle),
			bothInactive(&c.z) && cp.TS-c.z.lastTime > closeDelay,
			c.z.isReuse(p):
			a.finish(si)
			c = nil
		}
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
	}
	// The key's orientation says which end sent the packet, without
	// touching the (cold) addresses.
	isOrig := srcIsA == c.origIsA
	if p.SrcPort == p.DstPort && p.Src == p.Dst {
		isOrig = true
	}
	c.lastTS = cp.TS
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
	dup := c.ours(p, isOrig, cp.TS)
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
	hist, st, sa, sb := c.z.hist[:0], c.synTimes[:0], c.synackTimes[:0], c.schedBuf[:0]
	*c = Conn{}
	c.z.hist, c.synTimes, c.synackTimes, c.schedBuf = hist, st, sa, sb
	return c
}

// deadline is when the sweep may end the connection: Zeek's delete timer
// after a close, else the inactivity timeout (ended when strictly
// exceeded, as Add does).
func (c *Conn) deadline(idle int64) int64 {
	d := c.lastTS + c.idleLimit(idle) + 1
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

// ours updates synscope's own handshake tracking; it reports whether the
// packet is a capture duplicate (ignored for retransmission logic).
func (c *Conn) ours(p *decode.Packet, isOrig bool, ts int64) bool {
	dir := 0
	if !isOrig {
		dir = 1
	}
	sig := pktSig{ts: ts, seq: p.Seq, ack: p.Ack, flags: p.Flags, ln: int32(p.PayloadLen), ipid: p.IPID, tsval: p.Opt.TSval, valid: true}
	prev := c.lastSig[dir]
	c.lastSig[dir] = sig
	if prev.valid && ts-prev.ts < dupWindow && prev.seq == sig.seq && prev.ack == sig.ack && prev.flags == sig.flags &&
		prev.ln == sig.ln && prev.ipid == sig.ipid && prev.tsval == sig.tsval {
		c.Duplicates++
		return true
	}
	syn, ack, rst := p.Flags&decode.SYN != 0, p.Flags&decode.ACK != 0, p.Flags&decode.RST != 0
	if syn && !ack && !rst {
		if !c.haveCli {
			c.haveCli, c.cliIsOrig, c.isn = true, isOrig, p.Seq
		}
		if isOrig == c.cliIsOrig {
			if p.Seq != c.isn {
				// A new ISN on the same 4-tuple: a fresh attempt; keep
				// the schedule of the latest one.
				c.isn = p.Seq
				c.synTimes = c.synTimes[:0]
				c.synackTimes = c.synackTimes[:0]
				c.rstAnswer, c.ackAnswer = false, false
			}
			c.synTimes = append(c.synTimes, ts)
		}
	}
	if !c.haveCli {
		if isOrig {
			c.pktsCli++
		} else {
			c.pktsSrv++
		}
		if p.PayloadLen > 0 {
			c.dataSeen = true
		}
		return false
	}
	fromCli := isOrig == c.cliIsOrig
	if fromCli {
		c.pktsCli++
	} else {
		c.pktsSrv++
	}
	if p.PayloadLen > 0 {
		c.dataSeen = true
	}
	switch {
	case fromCli:
		if rst && c.ackTime == 0 {
			c.cliRST = true
		}
		if !syn && ack && len(c.synackTimes) > 0 && c.ackTime == 0 && p.Ack == c.synackSeq+1 {
			c.ackTime = ts
		}
	case syn && ack && p.Ack == c.isn+1:
		if len(c.synackTimes) == 0 {
			c.firstSynack = ts
			c.synackSeq = p.Seq
		}
		c.synackTimes = append(c.synackTimes, ts)
	case rst && len(c.synackTimes) == 0 && (p.Ack == c.isn+1 || !ack):
		c.rstAnswer = true
	case !syn && !rst && ack && len(c.synackTimes) == 0 && len(c.synTimes) > 0 && p.Ack != c.isn+1:
		c.ackAnswer = true
	}
	return false
}

func (a *Analyzer) icmp(p *decode.Packet, ts int64, index int) {
	// The quoted packet went InnerSrc:InnerSport -> InnerDst:InnerDport.
	key, _ := keyOf(&p.InnerSrc, &p.InnerDst, p.InnerSport, p.InnerDport, p.V6)
	_, c := a.flows.find(&key, a.flows.hash(&key))
	if c == nil {
		return
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

func (a *Analyzer) end(c *Conn) {
	c.finalize(&a.strs)
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
	for _, c := range open {
		a.end(c)
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

func (c *Conn) finalize(sc *strCache) {
	z := &c.z
	c.TS = float64(c.firstTS) / 1e9
	c.OrigH, c.RespH = sc.addr(&c.origA, c.v6), sc.addr(&c.resA, c.v6)
	c.ConnState = z.connState()
	c.History = sc.history(z.hist)
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
		c.RTOPattern = rtoPattern(c.SynSchedule)
	}
	c.classify()
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func (c *Conn) classify() {
	switch {
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
	case c.icmp != "" && len(c.synackTimes) == 0:
		c.Verdict, c.Cause = VerdictICMPUnreachable, c.icmpCause
		c.Detail = "the SYN drew an ICMP error: " + c.icmp
	case c.ackAnswer && len(c.synackTimes) == 0:
		c.Verdict, c.Cause = VerdictAckInsteadOfSA, causes.PAWSReject
		c.Detail = "the server answered the SYN with a bare ACK for another sequence (a TIME_WAIT socket or a PAWS reject), not a SYN-ACK"
	case len(c.synackTimes) > 0 && c.ackTime == 0 && c.cliRST:
		c.Verdict = VerdictClientAbort
		c.Detail = "the client answered the SYN-ACK with RST (a port scan, or the client socket was already gone)"
	case len(c.synackTimes) > 0 && c.ackTime == 0:
		c.Verdict, c.Cause = VerdictSynackNoAck, causes.SynackUnanswered
		c.Detail = fmt.Sprintf("%d SYN-ACK(s) without the client's final ACK", len(c.synackTimes))
		if c.pktsCli == 0 {
			c.Verdict = VerdictOneDirection
		}
	case len(c.synackTimes) > 0:
		c.Verdict = VerdictEstablished
		end := c.ackTime
		if end == 0 {
			end = c.firstSynack
		}
		c.rtt = 0
		if len(c.synTimes) > 0 {
			c.rtt = round6(float64(end-c.synTimes[len(c.synTimes)-1]) / 1e9)
		}
		c.HandshakeRTT = &c.rtt
	case c.cliRST:
		c.Verdict = VerdictClientAbort
		c.Detail = "the client gave up (RST) before any answer"
	default:
		c.Verdict = VerdictSynTimeout
		c.Detail = fmt.Sprintf("%d SYN(s), no answer in the capture", len(c.synTimes))
	}
}

func round6(f float64) float64 { return float64(int64(f*1e6+0.5)) / 1e6 }

// rtoPattern names a SYN retransmission schedule.
func rtoPattern(s []float64) string {
	if len(s) < 2 {
		return ""
	}
	first := s[1] - s[0]
	doubling := true
	for i := 2; i < len(s); i++ {
		gap, prev := s[i]-s[i-1], s[i-1]-s[i-2]
		if prev <= 0 || gap/prev < 1.6 || gap/prev > 2.4 {
			doubling = false
		}
	}
	kind := "irregular"
	if doubling {
		kind = "doubling"
	}
	hint := ""
	switch {
	case doubling && first > 0.8 && first < 1.3:
		hint = " (Linux: tcp_syn_retries with a 1 s initial RTO)"
	case doubling && first > 2.5 && first < 3.5:
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

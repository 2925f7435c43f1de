package pcap

// This file re-implements the part of Zeek's TCP analyzer that decides a
// connection's conn_state and history (Zeek's TCPSessionAdapter and
// TCP_Endpoint, conn/main.zeek's conn_state()). It is a clean
// re-implementation from the documented behaviour; differences are listed
// in ZEEK.md.

import "github.com/synscope/synscope/internal/packet"

type epState uint8

const (
	stInactive epState = iota
	stSynSent
	stSynAckSent
	stPartial
	stEstablished
	stClosed
	stReset
)

func isHandshake(s epState) bool { return s <= stSynAckSent }

// History bits: one per letter class and direction (responder <<16).
const (
	histSYN = 1 << iota
	histFIN
	histRST
	histFinRst
	histData
	histAck
	histMulti
)

// zendpoint is one side of a connection as Zeek's TCP_Endpoint sees it.
type zendpoint struct {
	pkts        uint64
	startSeq    uint32
	lastSeq     uint32
	ackSeq      uint32
	lastSYN     uint32
	lastFIN     uint32
	lastRST     uint32
	finCnt      uint32
	chkCnt      uint32
	chkThresh   uint32
	w0Cnt       uint32
	w0Thresh    uint32
	state, prev epState
	inited      bool
	didClose    bool
	isOrig      bool
}

func (e *zendpoint) setState(s epState, z *zconn) {
	if s != e.state {
		if !isHandshake(s) && isHandshake(e.state) && isHandshake(e.peer(z).state) {
			z.established = true
		}
		e.prev, e.state = e.state, s
	}
}

func (e *zendpoint) peer(z *zconn) *zendpoint {
	if e == &z.orig {
		return &z.resp
	}
	return &z.orig
}

// size mirrors TCP_Endpoint::Size closely enough for the REJ test.
func (e *zendpoint) size(z *zconn) uint64 {
	if e.prev == stSynSent && e.state == stReset && e.peer(z).state == stInactive {
		return 0
	}
	top := e.lastSeq
	if seqDelta(e.ackSeq, e.lastSeq) > 0 {
		top = e.ackSeq
	}
	sz := uint64(uint32(top - e.startSeq))
	if sz != 0 {
		sz--
	}
	if e.finCnt > 0 && sz != 0 {
		sz--
	}
	return sz
}

func seqDelta(a, b uint32) int32 { return int32(a - b) }

const tooLargeSeqDelta = 1048576

// zconn is Zeek's view of one connection.
type zconn struct {
	// removeAt is when Zeek's delete timer would drop the connection
	// (tcp_close_delay after a complete close); 0 = not scheduled.
	removeAt    int64
	lastTime    int64
	histSeen    uint32
	flipped     bool
	established bool // left the handshake states at least once
	// attemptDelay, when set (Config.ZeekRows), arms Zeek's attempt
	// timer: attemptAt is when it fires, tcp_attempt_delay after the
	// originator's first SYN.
	attemptDelay int64
	attemptAt    int64
	orig, resp   zendpoint
	hist         []byte
}

func (z *zconn) init(flip bool) {
	z.orig.isOrig = true
	z.orig.chkThresh, z.resp.chkThresh = 1, 1
	z.orig.w0Thresh, z.resp.w0Thresh = 1, 1
	if flip {
		z.flip()
	}
}

func (z *zconn) addHist(e *zendpoint, c byte) {
	if !e.isOrig {
		c += 'a' - 'A'
	}
	z.hist = append(z.hist, c)
}

// checkHist records a once-per-direction letter and reports whether the
// class had been seen before.
func (z *zconn) checkHist(e *zendpoint, mask uint32, c byte) bool {
	if !e.isOrig {
		mask <<= 16
	}
	if z.histSeen&mask == 0 {
		z.histSeen |= mask
		z.addHist(e, c)
		return false
	}
	return true
}

func (z *zconn) scaled(e *zendpoint, c byte, cnt, thresh *uint32) {
	*cnt++
	if *cnt == *thresh {
		z.addHist(e, c)
		if *thresh == 1 {
			*thresh = 10
		} else {
			*thresh *= 10
		}
	}
}

// flip swaps originator and responder, as Zeek's FlipRoles does.
func (z *zconn) flip() {
	z.orig, z.resp = z.resp, z.orig
	z.orig.isOrig, z.resp.isOrig = true, false
	z.histSeen = z.histSeen>>16 | z.histSeen<<16
	z.flipped = !z.flipped
	z.hist = append(z.hist, '^')
}

// wantFlip is Zeek's WantConnection heuristic for a connection whose
// first packet is not a bare SYN.
func wantFlip(flags uint8, sport, dport uint16, likely func(uint16) bool) bool {
	if flags&packet.SYN != 0 && flags&packet.ACK == 0 {
		return false
	}
	if !likely(sport) {
		return false
	}
	if likely(dport) {
		return flags&packet.SYN == 0 && sport < dport
	}
	return true
}

// isReuse is Zeek's IsReuse: does this SYN start a new connection?
func (z *zconn) isReuse(p *packet.Packet) bool {
	if p.Flags&packet.SYN == 0 {
		return false
	}
	co := &z.orig
	if p.Flags&packet.ACK != 0 {
		if z.orig.state != stInactive {
			return false
		}
		co = &z.resp
	}
	if !(z.orig.didClose || z.resp.didClose) {
		if p.Seq == co.startSeq {
			return false
		}
		if p.Flags&packet.ACK == 0 && co.state == stSynAckSent && z.resp.state == stInactive && p.Seq == z.resp.startSeq {
			return false
		}
	}
	return true
}

// attempting is the state Zeek's attempt timer ends: the originator sent
// a SYN (or SYN-ACK) and the responder nothing.
func (z *zconn) attempting() bool {
	return (z.orig.state == stSynSent || z.orig.state == stSynAckSent) && z.resp.state == stInactive
}

// attemptExpired reports whether Zeek's attempt timer (armed only under
// Config.ZeekRows) ended the connection before a packet at ts.
func (z *zconn) attemptExpired(ts int64) bool {
	return z.attemptAt != 0 && ts >= z.attemptAt && z.attempting()
}

// checksumError is what Zeek does with a bad TCP checksum: a scaled c/C
// history letter, and the packet is otherwise ignored.
func (z *zconn) checksumError(isOrig bool) {
	e := &z.resp
	if isOrig {
		e = &z.orig
	}
	z.scaled(e, 'C', &e.chkCnt, &e.chkThresh)
}

// process runs one accepted packet through the state machine.
func (z *zconn) process(p *packet.Packet, isOrig bool, ts int64, closeDelay int64) {
	ep, peer := &z.resp, &z.orig
	if isOrig {
		ep, peer = &z.orig, &z.resp
	}
	flags := p.Flags
	syn, fin, rst, ack := flags&packet.SYN != 0, flags&packet.FIN != 0, flags&packet.RST != 0, flags&packet.ACK != 0
	length := p.PayloadLen
	segLen := uint32(length)
	if syn {
		segLen++
	}
	if fin {
		segLen++
	}
	if rst {
		segLen -= uint32(length)
	}
	ep.pkts++
	base := p.Seq
	end := base + segLen

	// init_endpoint
	switch ep.state {
	case stInactive:
		last := end
		if syn {
			ep.startSeq, ep.ackSeq = base, base
		} else {
			ep.startSeq, ep.ackSeq = base-1, base-1
			last = base
		}
		ep.lastSeq = last
		ep.inited = true
	case stSynSent, stSynAckSent:
		if syn && base != ep.startSeq {
			ep.startSeq, ep.ackSeq, ep.lastSeq = base, base, end
		}
	case stEstablished, stPartial:
		if syn {
			ep.startSeq, ep.ackSeq, ep.lastSeq = base, base, end
		}
	case stReset:
		if syn && ep.prev == stInactive {
			ep.startSeq, ep.ackSeq, ep.lastSeq = base, base, end
		}
	}
	rel := base - ep.startSeq

	// update_history
	bits := 0
	if syn {
		bits++
	}
	if fin {
		bits++
	}
	if rst {
		bits++
	}
	switch {
	case bits > 1:
		if fin && rst {
			z.checkHist(ep, histFinRst, 'I')
		} else {
			z.checkHist(ep, histMulti, 'Q')
		}
	case bits == 1:
		if syn {
			code := byte('S')
			if ack {
				code = 'H'
			}
			if z.checkHist(ep, histSYN, code) && rel != ep.lastSYN {
				z.addHist(ep, code)
			}
			ep.lastSYN = rel
		}
		if fin {
			if z.checkHist(ep, histFIN, 'F') && rel+uint32(length) != ep.lastFIN {
				z.addHist(ep, 'F')
			}
			ep.lastFIN = rel + uint32(length)
		}
		if rst {
			if z.checkHist(ep, histRST, 'R') && rel != ep.lastRST {
				z.addHist(ep, 'R')
			}
			ep.lastRST = rel
		}
	default:
		if length > 0 {
			z.checkHist(ep, histData, 'D')
		} else if ack {
			z.checkHist(ep, histAck, 'A')
		}
	}
	// update_window: only the zero-window letter matters here.
	if p.Window == 0 && !rst && peer.state != stClosed && ep.state != stReset {
		z.scaled(ep, 'W', &ep.w0Cnt, &ep.w0Thresh)
	}
	if !z.orig.didClose || !z.resp.didClose {
		z.lastTime = ts
	}
	if fin {
		ep.finCnt++
	}
	if ack {
		if peer.state == stInactive {
			peer.startSeq, peer.ackSeq, peer.lastSeq = p.Ack-1, p.Ack-1, p.Ack-1
			peer.inited = true
		} else if !rst {
			d := seqDelta(p.Ack, peer.ackSeq)
			if !(p.Ack == 0 && d > tooLargeSeqDelta) && d > 0 {
				peer.ackSeq = p.Ack
			}
		}
	}
	// update_last_seq
	dl := seqDelta(end, ep.lastSeq)
	switch {
	case (syn || rst) && (dl > tooLargeSeqDelta || dl < -tooLargeSeqDelta):
	case fin && ep.lastSeq == ep.startSeq+1:
		ep.lastSeq = end
	case ep.state == stReset:
	case dl > 0:
		ep.lastSeq = end
	}

	doClose := false
	switch ep.state {
	case stInactive:
		doClose = z.inactive(ep, peer, p, isOrig)
	case stSynSent, stSynAckSent:
		if fin {
			ep.setState(stClosed, z)
			doClose = true
		}
		if rst {
			ep.setState(stReset, z)
			doClose = true
		}
	case stEstablished, stPartial:
		if syn && ep.state == stPartial && peer.state == stInactive && !ack {
			ep.setState(stSynSent, z)
		}
		if fin && !rst {
			ep.setState(stClosed, z)
			if peer.state == stReset && peer.prev == stClosed {
				peer.setState(stClosed, z)
			}
			doClose = true
		}
		if rst {
			ep.setState(stReset, z)
			doClose = true
		}
	case stClosed:
		if rst && peer.state != stClosed {
			ep.setState(stReset, z)
			if !ep.didClose {
				doClose = true
			}
		}
	case stReset:
	}
	if doClose && !ep.didClose {
		ep.didClose = true
		if ep.state == stReset || peer.didClose || peer.state == stInactive {
			if z.removeAt == 0 {
				z.removeAt = z.lastTime + closeDelay
			}
		}
	}
}

func (z *zconn) inactive(ep, peer *zendpoint, p *packet.Packet, isOrig bool) bool {
	flags := p.Flags
	syn, fin, rst, ack := flags&packet.SYN != 0, flags&packet.FIN != 0, flags&packet.RST != 0, flags&packet.ACK != 0
	doClose := false
	if syn {
		if isOrig {
			if ack {
				ep.setState(stSynAckSent, z)
			} else {
				ep.setState(stSynSent, z)
			}
			if z.attemptDelay != 0 {
				z.attemptAt = z.lastTime + z.attemptDelay
			}
		} else {
			if !ack && peer.state == stSynAckSent && p.Seq == ep.startSeq {
				// SYN and SYN-ACK seen in reverse order: flip and
				// establish.
				z.flip()
				// After the flip, ep is the originator's slot.
				ep, peer = &z.orig, &z.resp
				peer.setState(stEstablished, z)
			}
			if peer.state == stSynSent {
				peer.setState(stEstablished, z)
			}
			ep.setState(stEstablished, z)
		}
	}
	if fin {
		ep.setState(stClosed, z)
		doClose = true
	}
	if rst {
		ep.setState(stReset, z)
		doClose = true
	}
	if ep.state == stInactive {
		switch {
		case !isOrig && p.PayloadLen == 0 && z.orig.state == stSynSent:
			// An ACK of the SYN before the SYN-ACK: not partial.
		case ack && peer.state == stEstablished:
			ep.setState(stEstablished, z)
		default:
			ep.setState(stPartial, z)
		}
	}
	return doClose
}

// connState is conn/main.zeek's conn_state().
func (z *zconn) connState() string {
	os, rs := z.orig.state, z.resp.state
	oInactive := os == stInactive || os == stPartial
	rInactive := rs == stInactive || rs == stPartial
	switch {
	case rs == stReset:
		if os == stSynSent || os == stSynAckSent || (os == stReset && z.orig.size(z) == 0 && z.resp.size(z) == 0) {
			return "REJ"
		}
		if oInactive {
			return "RSTRH"
		}
		return "RSTR"
	case os == stReset:
		if rInactive {
			if rstos0(z.hist) {
				return "RSTOS0"
			}
			return "OTH"
		}
		return "RSTO"
	case rs == stClosed && os == stClosed:
		return "SF"
	case os == stClosed:
		if rInactive {
			return "SH"
		}
		return "S2"
	case rs == stClosed:
		if oInactive {
			return "SHR"
		}
		return "S3"
	case os == stSynSent && rs == stInactive:
		return "S0"
	case os == stEstablished && rs == stEstablished:
		return "S1"
	}
	return "OTH"
}

// rstos0 matches ^\^?S[^HAFGIQ]*R.* without regexp.
func rstos0(h []byte) bool {
	if len(h) > 0 && h[0] == '^' {
		h = h[1:]
	}
	if len(h) == 0 || h[0] != 'S' {
		return false
	}
	for _, c := range h[1:] {
		switch c {
		case 'R':
			return true
		case 'H', 'A', 'F', 'G', 'I', 'Q':
			return false
		}
	}
	return false
}

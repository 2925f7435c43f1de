package pcap

import "github.com/synscope/synscope/internal/packet"

// dupTable remembers the signatures of recent packets so that a packet
// captured several times finds its first copy even when other packets
// came in between (Windows pktmon records one packet at several layers;
// a capture on several interfaces interleaves them). It is a direct-
// mapped cache: a collision forgets the older entry (a duplicate may then
// be missed), and a match needs all 64 signature bits, so a distinct
// packet is never taken for a duplicate.
type dupTable struct {
	e [dupSlots]dupEntry
}

type dupEntry struct {
	sig uint64
	ts  int64
}

// dupSlots is sized for the packets of a dupWindow at about 20,000
// packets/s without collisions; 64 KiB.
const dupSlots = 4096

// seen reports whether p (of the flow with hash h) repeats a packet seen
// within dupWindow before: same direction, sequence and ACK numbers,
// flags, length, IP ID and TSval. It records p otherwise.
func (t *dupTable) seen(h uint64, p *packet.Packet, isOrig bool, ts int64) bool {
	dir := uint64(0)
	if isOrig {
		dir = 1
	}
	sig := mix(h^uint64(p.Seq)<<32^uint64(p.Ack), uint64(p.Flags)<<48^uint64(uint32(p.PayloadLen))<<16^uint64(p.IPID)^dir<<63^0x9e3779b97f4a7c15)
	sig = mix(sig, uint64(p.Opt.TSval)|1<<40)
	if sig == 0 {
		sig = 1
	}
	e := &t.e[sig&(dupSlots-1)]
	if e.sig == sig && ts >= e.ts && ts-e.ts < dupWindow {
		return true
	}
	e.sig, e.ts = sig, ts
	return false
}

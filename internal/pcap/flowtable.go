package pcap

import (
	"encoding/binary"
	"math"
	"math/bits"
	"math/rand/v2"

	"github.com/synscope/synscope/internal/packet"
)

// flowKey is a connection's 4-tuple in a canonical order (the lower
// address/port pair first) packed into words, so equality is five
// integer compares and hashing needs no byte loop.
type flowKey struct {
	a0, a1, b0, b1 uint64
	// ports packs the lower pair's port, the other port and the v6 bit.
	ports uint64
}

// keyOf also reports whether the source is the key's first pair.
func keyOf(src, dst *packet.Addr, sp, dp uint16, v6 bool) (flowKey, bool) {
	s0, s1 := binary.BigEndian.Uint64(src[:8]), binary.BigEndian.Uint64(src[8:])
	d0, d1 := binary.BigEndian.Uint64(dst[:8]), binary.BigEndian.Uint64(dst[8:])
	var v uint64
	if v6 {
		v = 1 << 32
	}
	if s0 < d0 || (s0 == d0 && (s1 < d1 || (s1 == d1 && sp <= dp))) {
		return flowKey{s0, s1, d0, d1, uint64(sp)<<16 | uint64(dp) | v}, true
	}
	return flowKey{d0, d1, s0, s1, uint64(dp)<<16 | uint64(sp) | v}, false
}

// eq is k == o spelled out: the compiler would call memequal for a
// 40-byte struct.
func (k *flowKey) eq(o *flowKey) bool {
	return k.a0 == o.a0 && k.a1 == o.a1 && k.b0 == o.b0 && k.b1 == o.b1 && k.ports == o.ports
}

// slot is one entry of the open-addressing flow table, 16 bytes. The
// deadline (when the sweep may end the connection) lives here rather
// than in the Conn so the incremental sweep walks a dense array and
// touches a Conn only to end it.
type slot struct {
	h  uint32 // low bits of the hash
	dl uint32 // deadline in tick units after the table's base time
	c  *Conn
}

// tickShift sets the deadline unit: 2^24 ns (16.8 ms), so 32 bits span
// 2.3 years; rebase moves the base forward on captures that span more.
// Sweeping a little late only delays freeing. A deadline beyond the
// range is stored as never (MaxUint32): the connection then ends at its
// next packet or at the end, as without a sweep.
const tickShift = 24

// flowTable maps flow keys to connections: linear probing with
// backward-shift deletion (no tombstones), kept at most half full.
type flowTable struct {
	slots []slot
	mask  uint64
	n     int
	// seed is fixed, so the table's layout, hence the sweep's order and
	// Stats.MaxOpen, are the same on every run; a probe chain grown past
	// maxProbe (a crafted capture aiming flows at one chain) makes the
	// table rehash under a random seed.
	seed [3]uint64
	// hand is the incremental sweep's position.
	hand uint64
	// base is the time deadlines count from (the first packet's).
	base int64
}

const maxProbe = 64

func newFlowTable() flowTable {
	return flowTable{slots: make([]slot, 1024), mask: 1023,
		seed: [3]uint64{0x2d358dccaa6c78a5, 0x8bb84b93962eacc9, 0x4b33a62ed433d4a3}}
}

// tooLong reports whether the empty slot i found for hash h lies beyond
// maxProbe of its home.
func (t *flowTable) tooLong(i, h uint64) bool {
	return (i-h)&t.mask > maxProbe
}

// reseed rebuilds the table under a random seed.
func (t *flowTable) reseed() {
	for i := range t.seed {
		t.seed[i] = rand.Uint64() | 1
	}
	old := t.slots
	t.slots = make([]slot, len(old))
	for _, s := range old {
		if s.c != nil {
			s.h = uint32(t.hash(&s.c.key))
			t.place(s)
		}
	}
	t.hand = 0
}

func (t *flowTable) place(s slot) {
	i := uint64(s.h) & t.mask
	for t.slots[i].c != nil {
		i = (i + 1) & t.mask
	}
	t.slots[i] = s
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (t *flowTable) hash(k *flowKey) uint64 {
	h := mix(k.a0^t.seed[0], k.a1^t.seed[1]) ^ mix(k.b0^t.seed[1], k.b1^t.seed[2])
	return mix(h^k.ports, t.seed[0]^0x9e3779b97f4a7c15)
}

// find returns the slot index holding k, or the empty slot where it
// would go, and the connection (nil when absent).
func (t *flowTable) find(k *flowKey, h uint64) (uint64, *Conn) {
	i := h & t.mask
	for {
		s := &t.slots[i]
		if s.c == nil {
			return i, nil
		}
		if s.h == uint32(h) && s.c.key.eq(k) {
			return i, s.c
		}
		i = (i + 1) & t.mask
	}
}

// reserve makes room for one more entry; it reports whether the table
// was rebuilt (slot indices from before are then stale).
func (t *flowTable) reserve() bool {
	if (t.n+1)*2 <= len(t.slots) {
		return false
	}
	old := t.slots
	t.slots = make([]slot, 2*len(old))
	t.mask = uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.c != nil {
			t.place(s)
		}
	}
	t.hand = 0
	return true
}

func (t *flowTable) insert(i, h uint64, c *Conn) {
	t.slots[i] = slot{h: uint32(h), dl: math.MaxUint32, c: c}
	t.n++
}

// setDeadline records that slot i's connection may be ended from time
// d on, rounded up to a tick (never early).
func (t *flowTable) setDeadline(i uint64, d int64) {
	var dl uint32
	if d > t.base {
		dl = uint32(min((uint64(d-t.base)+1<<tickShift-1)>>tickShift, math.MaxUint32))
	}
	t.slots[i].dl = dl
}

// rebase moves the base to now once now is half the tick range past it,
// so tick counts never overflow.
func (t *flowTable) rebase(now int64) {
	if uint64(now-t.base)>>tickShift < 1<<31 {
		return
	}
	shift := uint64(now-t.base) >> tickShift
	t.base += int64(shift << tickShift)
	for i := range t.slots {
		s := &t.slots[i]
		switch {
		case s.dl == math.MaxUint32:
		case uint64(s.dl) > shift:
			s.dl -= uint32(shift)
		default:
			s.dl = 0
		}
	}
}

// expired reports whether slot i's deadline has passed at time now
// (base <= now < base + 2^31 ticks).
func (t *flowTable) expired(i uint64, now int64) bool {
	dl := t.slots[i].dl
	return dl != math.MaxUint32 && uint64(now-t.base)>>tickShift >= uint64(dl)
}

// remove empties slot i, shifting later members of its probe chain back
// so lookups never need tombstones.
func (t *flowTable) remove(i uint64) {
	j := i
	for {
		j = (j + 1) & t.mask
		s := t.slots[j]
		if s.c == nil {
			break
		}
		home := uint64(s.h) & t.mask
		// Move s into the hole unless its home lies cyclically in (i, j].
		if (i <= j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
			t.slots[i] = s
			i = j
		}
	}
	t.slots[i] = slot{}
	t.n--
}

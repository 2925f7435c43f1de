package pcap

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sort"

	"github.com/synscope/synscope/internal/packet"
)

// Aggregate sums the half-open attempts to one server:port that came
// beyond Config.MaxAttempts and were not tracked one by one.
type Aggregate struct {
	Server string `json:"server"`
	Port   uint16 `json:"port"`
	// SYNs counts SYN packets, SynAcks the SYN-ACKs and RSTs the resets
	// the server sent back.
	SYNs    int `json:"syns"`
	SynAcks int `json:"synacks"`
	RSTs    int `json:"rsts"`
	// Sources and Prefixes estimate the distinct client addresses and
	// /24 (IPv4) or /48 (IPv6) prefixes (HyperLogLog, about ±7%).
	Sources  int     `json:"sources"`
	Prefixes int     `json:"source_prefixes"`
	First    float64 `json:"first_ts"`
	Last     float64 `json:"last_ts"`
	// Other is set on the bucket summing server:ports beyond
	// maxAggregates.
	Other bool `json:"other,omitempty"`
}

// String says what the aggregate shows, for people.
func (g Aggregate) String() string {
	what := "none answered"
	switch {
	case g.RSTs > 0 && g.RSTs >= g.SYNs/2:
		what = fmt.Sprintf("%d refused with RST", g.RSTs)
	case g.SynAcks > 0 && g.SynAcks >= g.SYNs/2:
		what = fmt.Sprintf("%d SYN-ACKs sent back, none completed in the capture", g.SynAcks)
	case g.SynAcks > 0:
		what = fmt.Sprintf("%d answered with a SYN-ACK", g.SynAcks)
	}
	flood := ""
	if g.Sources >= 100 && g.SYNs >= 1000 {
		flood = " — a SYN flood"
	}
	target := hostPort(g.Server, g.Port)
	if g.Other {
		target = "other servers"
	}
	return fmt.Sprintf("%d SYNs from about %d sources (%d prefixes) to %s over %s, %s%s", g.SYNs, g.Sources, g.Prefixes, target,
		fmtDur(g.Last-g.First), what, flood)
}

// aggregates holds the per server:port sums, bounded.
type aggregates struct {
	m     map[aggKey]*aggregate
	other aggregate
	syns  int
}

type aggKey struct {
	a    packet.Addr
	v6   bool
	port uint16
}

type aggregate struct {
	syns, synacks, rsts int
	first, last         int64
	src, pfx            hll
}

// maxAggregates bounds the server:port buckets (about 600 B each).
const maxAggregates = 4096

func (g *aggregates) init() { g.m = map[aggKey]*aggregate{} }

// take sums a packet of a flow that is not tracked, when it is a new
// attempt (bare SYN) or a SYN-ACK or RST answering one; it reports
// whether it did (other packets start a connection as usual).
func (g *aggregates) take(p *packet.Packet, ts int64, bareSYN bool) bool {
	synack := p.Flags&(packet.SYN|packet.ACK|packet.RST) == packet.SYN|packet.ACK
	rst := p.Flags&(packet.SYN|packet.RST) == packet.RST
	if !bareSYN && !synack && !rst {
		return false
	}
	k := aggKey{p.Dst, p.V6, p.DstPort}
	cli := &p.Src
	if !bareSYN {
		k = aggKey{p.Src, p.V6, p.SrcPort}
		cli = &p.Dst
	}
	e := g.m[k]
	if e == nil {
		if !bareSYN {
			// A SYN-ACK for an attempt tracked one by one, or one
			// before the cap was reached: not ours to sum.
			return false
		}
		if len(g.m) < maxAggregates {
			e = &aggregate{first: ts}
			g.m[k] = e
		} else {
			e = &g.other
			if e.first == 0 {
				e.first = ts
			}
		}
	}
	switch {
	case synack:
		e.synacks++
		return true
	case rst:
		e.rsts++
		return true
	}
	g.syns++
	e.syns++
	e.first, e.last = min(e.first, ts), max(e.last, ts)
	h0, h1 := addrWords(cli)
	e.src.add(mix(h0^0x2d358dccaa6c78a5, h1^0x8bb84b93962eacc9))
	if p.V6 {
		e.pfx.add(mix(h0&^0xffff^0x4b33a62ed433d4a3, 0x8bb84b93962eacc9))
	} else {
		e.pfx.add(mix(h0&^(0xff<<32)^0x4b33a62ed433d4a3, 0x8bb84b93962eacc9))
	}
	return true
}

// report lists the buckets by SYNs (the 20 largest, then the rest as
// one "other" bucket) and the total SYNs.
func (g *aggregates) report() ([]Aggregate, int) {
	if g.syns == 0 {
		return nil, 0
	}
	out := make([]Aggregate, 0, len(g.m)+1)
	for k, e := range g.m {
		out = append(out, e.export(k.a.IP(k.v6).String(), k.port))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].SYNs != out[j].SYNs {
			return out[i].SYNs > out[j].SYNs
		}
		return out[i].Server < out[j].Server || out[i].Server == out[j].Server && out[i].Port < out[j].Port
	})
	const keep = 20
	rest := g.other
	if len(out) > keep {
		// Merge the tail into the other bucket.
		for k, e := range g.m {
			if !inTop(out[:keep], k) {
				rest.merge(e)
			}
		}
		out = out[:keep]
	}
	if rest.syns > 0 {
		o := rest.export("", 0)
		o.Other = true
		out = append(out, o)
	}
	return out, g.syns
}

func inTop(top []Aggregate, k aggKey) bool {
	s := k.a.IP(k.v6).String()
	for _, a := range top {
		if a.Server == s && a.Port == k.port {
			return true
		}
	}
	return false
}

func (e *aggregate) merge(o *aggregate) {
	if e.syns == 0 || o.first < e.first {
		e.first = o.first
	}
	e.last = max(e.last, o.last)
	e.syns += o.syns
	e.synacks += o.synacks
	e.rsts += o.rsts
	e.src.merge(&o.src)
	e.pfx.merge(&o.pfx)
}

func (e *aggregate) export(server string, port uint16) Aggregate {
	return Aggregate{Server: server, Port: port, SYNs: e.syns, SynAcks: e.synacks, RSTs: e.rsts, Sources: e.src.estimate(), Prefixes: e.pfx.estimate(),
		First: float64(e.first) / 1e9, Last: float64(e.last) / 1e9}
}

// addrWords returns an address as two 64-bit words.
func addrWords(a *packet.Addr) (uint64, uint64) {
	return binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
}

// hll is a HyperLogLog distinct counter with 256 registers (±6.5%).
type hll struct{ r [256]uint8 }

func (h *hll) add(x uint64) {
	// splitmix64's finalizer: every input bit reaches the index bits.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	i := x >> 56
	rank := uint8(bits.LeadingZeros64(x<<8|1<<7) + 1)
	if rank > h.r[i] {
		h.r[i] = rank
	}
}

func (h *hll) merge(o *hll) {
	for i, v := range o.r {
		h.r[i] = max(h.r[i], v)
	}
}

func (h *hll) estimate() int {
	const m = 256.0
	sum, zeros := 0.0, 0
	for _, v := range h.r {
		sum += math.Ldexp(1, -int(v))
		if v == 0 {
			zeros++
		}
	}
	e := 0.7213 / (1 + 1.079/m) * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros))
	}
	return int(e + 0.5)
}

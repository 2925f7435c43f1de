package firewall

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sort"
	"strings"
)

// Direction says which handshake packet is asked about.
type Direction int

const (
	// In is a SYN arriving for a local listener (ingress, prerouting, input).
	In Direction = iota
	// Out is the SYN-ACK a local listener sends (output, postrouting, egress).
	Out
	// OutSYN is a SYN this host sends as a client (output, postrouting,
	// egress; conntrack state new, so NAT chains see it). Local and
	// LocalPort are then the client's side, Remote and RemotePort the
	// server's.
	OutSYN
)

func (d Direction) String() string {
	switch d {
	case Out:
		return "out"
	case OutSYN:
		return "out-syn"
	}
	return "in"
}

// Packet describes a handshake packet from the listener's point of view.
// Zero values mean "unknown": a rule that tests an unknown property may match.
type Packet struct {
	Family        int // 4 or 6; 0 = from Local/Remote
	Dir           Direction
	LocalPort     uint16
	RemotePort    uint16
	Local, Remote netip.Addr
	Iif, Oif      string // interface names (In: Iif, Out: Oif)
}

// tri is a three-valued match result.
type tri int8

const (
	no tri = iota
	maybe
	yes
)

func and(a, b tri) tri { return min(a, b) }

// pktModel is the handshake packet as rule conditions see it. Properties
// that can legitimately vary (ECN bits on a SYN, an INVALID conntrack state)
// have several candidate values.
type pktModel struct {
	p     Packet
	fam   int
	flags []byte
	ct    []uint32
}

// newModel builds the packet model. The strict model is the normal case
// (a SYN is ct state new, a SYN-ACK established); the loose one adds the
// possibility that conntrack marked it invalid, so that "ct state invalid
// drop" shows up as a possible dropper without making "ct state new accept"
// look uncertain.
func newModel(p Packet, loose bool) *pktModel {
	m := &pktModel{p: p, fam: p.Family}
	if m.fam != 4 && m.fam != 6 {
		for _, a := range []netip.Addr{p.Local, p.Remote} {
			if a.IsValid() {
				if a.Unmap().Is4() {
					m.fam = 4
				} else {
					m.fam = 6
				}
				break
			}
		}
	}
	if p.Dir == In {
		m.flags = []byte{0x02, 0x02 | 0x40 | 0x80} // SYN, ECN-setup SYN
		m.ct = []uint32{8}                         // new
	} else if p.Dir == OutSYN {
		m.flags = []byte{0x02, 0x02 | 0x40 | 0x80} // SYN, ECN-setup SYN
		m.ct = []uint32{8}                         // new
	} else {
		m.flags = []byte{0x12, 0x12 | 0x40} // SYN-ACK, ECN-setup SYN-ACK
		m.ct = []uint32{2}                  // established (reply direction)
	}
	if loose {
		m.ct = append(m.ct, 1) // invalid
	}
	return m
}

func pad(s string, n int) []byte {
	b := make([]byte, n)
	copy(b, s)
	return b
}

// raw returns the candidate values of a whole property, ok=false if unknown.
func (m *pktModel) raw(f field) ([][]byte, bool) {
	in := m.p.Dir == In
	one := func(b []byte) ([][]byte, bool) { return [][]byte{b}, true }
	port := func(v uint16) ([][]byte, bool) {
		if v == 0 {
			return nil, false
		}
		return one(be16(v))
	}
	addr := func(a netip.Addr) ([][]byte, bool) {
		if !a.IsValid() {
			return nil, false
		}
		a = a.Unmap()
		if a.Is4() == f.v6 {
			return nil, false
		}
		return one(a.AsSlice())
	}
	switch f.kind {
	case fL4Proto:
		return one([]byte{6})
	case fNfproto:
		switch m.fam {
		case 4:
			return one([]byte{2})
		case 6:
			return one([]byte{10})
		}
	case fEtherType:
		switch m.fam {
		case 4:
			return one([]byte{0x08, 0x00})
		case 6:
			return one([]byte{0x86, 0xdd})
		}
	case fIifname:
		if !in {
			return one(make([]byte, 16))
		}
		if m.p.Iif != "" {
			return one(pad(m.p.Iif, 16))
		}
	case fOifname:
		if in {
			return one(make([]byte, 16))
		}
		if m.p.Oif != "" {
			return one(pad(m.p.Oif, 16))
		}
	case fIif:
		if !in {
			return one(make([]byte, 4))
		}
	case fOif:
		if in {
			return one(make([]byte, 4))
		}
	case fSport:
		if in {
			return port(m.p.RemotePort)
		}
		return port(m.p.LocalPort)
	case fDport:
		if in {
			return port(m.p.LocalPort)
		}
		return port(m.p.RemotePort)
	case fTCPFlags:
		out := make([][]byte, len(m.flags))
		for i, f := range m.flags {
			out[i] = []byte{f}
		}
		return out, true
	case fSaddr:
		if in {
			return addr(m.p.Remote)
		}
		return addr(m.p.Local)
	case fDaddr:
		if in {
			return addr(m.p.Local)
		}
		return addr(m.p.Remote)
	case fCtState:
		out := make([][]byte, len(m.ct))
		for i, s := range m.ct {
			out[i] = binary.NativeEndian.AppendUint32(nil, s)
		}
		return out, true
	case fConst:
		return one(f.konst)
	}
	return nil, false
}

// values returns the candidate register contents for field f.
func (m *pktModel) values(f field) ([][]byte, bool) {
	raw, ok := m.raw(f)
	if !ok {
		return nil, false
	}
	out := make([][]byte, 0, len(raw))
	for _, v := range raw {
		if f.kind != fConst {
			if f.off+f.len > len(v) || f.len == 0 {
				return nil, false
			}
			v = v[f.off : f.off+f.len]
		}
		if f.mask != nil {
			w := make([]byte, len(v))
			for i := range v {
				w[i] = v[i]
				if i < len(f.mask) {
					w[i] &= f.mask[i]
				}
				if i < len(f.xor) {
					w[i] ^= f.xor[i]
				}
			}
			v = w
		}
		out = append(out, v)
	}
	return out, true
}

func clip(a, b []byte) ([]byte, []byte) {
	n := min(len(a), len(b))
	return a[:n], b[:n]
}

func inRange(v, lo, hi []byte) bool {
	a, l := clip(v, lo)
	b, h := clip(v, hi)
	return bytes.Compare(a, l) >= 0 && bytes.Compare(b, h) <= 0
}

// holds evaluates c on one concrete register value.
func holds(c *cond, v []byte) bool {
	switch c.op {
	case opRange, opNotRange:
		return inRange(v, c.data, c.to) == (c.op == opRange)
	case opSet, opNotSet:
		found := false
		for _, iv := range c.set.ivs {
			if inRange(v, iv.lo, iv.hi) {
				found = true
				break
			}
		}
		return found == (c.op == opSet)
	}
	a, d := clip(v, c.data)
	cmp := bytes.Compare(a, d)
	switch c.op {
	case opEq:
		return cmp == 0
	case opNeq:
		return cmp != 0
	case opLt:
		return cmp < 0
	case opLte:
		return cmp <= 0
	case opGt:
		return cmp > 0
	case opGte:
		return cmp >= 0
	}
	return false
}

func (m *pktModel) evalCond(c *cond) tri {
	if c.sub != nil {
		r := no
		for i := range c.sub {
			r = max(r, m.evalCond(&c.sub[i]))
		}
		if c.subNeg {
			r = yes - r
		}
		return r
	}
	if c.op == opMaybe || ((c.op == opSet || c.op == opNotSet) && (c.set == nil || !c.set.ok)) {
		return maybe
	}
	vals, ok := m.values(c.f)
	if !ok {
		return maybe
	}
	sawT, sawF := false, false
	for _, v := range vals {
		if holds(c, v) {
			sawT = true
		} else {
			sawF = true
		}
	}
	switch {
	case sawT && sawF:
		return maybe
	case sawT:
		return yes
	}
	return no
}

func (m *pktModel) match(r *Rule) tri {
	res := yes
	for i := range r.conds {
		res = and(res, m.evalCond(&r.conds[i]))
		if res == no {
			return no
		}
	}
	return res
}

// summarize fills the Rule's descriptive fields from its conditions.
func summarize(r *Rule) {
	var flagConds []*cond
	for i := range r.conds {
		c := &r.conds[i]
		if c.sub != nil || c.op == opMaybe {
			continue
		}
		f := c.f
		switch f.kind {
		case fL4Proto:
			if c.op == opEq && f.whole() && len(c.data) == 1 && r.L4Proto == "" {
				r.L4Proto = protoName(c.data[0])
			}
		case fSport, fDport:
			if strings.HasPrefix(f.name, "tcp ") && r.L4Proto == "" {
				r.L4Proto = "tcp"
			}
			if !f.whole() {
				continue
			}
			pr := portRanges(c)
			if f.kind == fSport {
				r.SPorts = append(r.SPorts, pr...)
			} else {
				r.DPorts = append(r.DPorts, pr...)
			}
		case fTCPFlags:
			flagConds = append(flagConds, c)
		case fCtState:
			var v uint32
			switch {
			case f.mask != nil && c.op == opNeq && hostU32(c.data) == 0:
				v = hostU32(f.mask)
			case f.mask == nil && c.op == opEq:
				v = hostU32(c.data)
			}
			for _, b := range ctStateBits {
				if v&b.bit != 0 {
					r.CtStates = append(r.CtStates, b.name)
				}
			}
		case fSaddr, fDaddr:
			var ps []netip.Prefix
			switch c.op {
			case opEq:
				if p, ok := addrPrefix(f, c.data); ok {
					ps = append(ps, p)
				}
			case opSet:
				if f.whole() && c.set != nil && c.set.ok {
					for _, iv := range c.set.ivs {
						if p, ok := rangePrefix(iv); ok {
							ps = append(ps, p)
						}
					}
				}
			}
			if f.kind == fSaddr {
				r.Saddrs = append(r.Saddrs, ps...)
			} else {
				r.Daddrs = append(r.Daddrs, ps...)
			}
		case fIifname, fOifname, fIif, fOif:
			if c.op != opEq {
				continue
			}
			s := formatValue(f, c.data)
			if f.kind == fIif || f.kind == fOif {
				s = "ifindex " + s
			} else {
				s = strings.Trim(s, `"`)
			}
			if f.kind == fIifname || f.kind == fIif {
				r.IIf = s
			} else {
				r.OIf = s
			}
		}
	}
	if len(flagConds) > 0 {
		r.L4Proto = cmpOr(r.L4Proto, "tcp")
		m := func(v byte) bool {
			for _, c := range flagConds {
				w := v
				if len(c.f.mask) > 0 {
					w &= c.f.mask[0]
				}
				if len(c.f.xor) > 0 {
					w ^= c.f.xor[0]
				}
				if !holds(c, []byte{w}) {
					return false
				}
			}
			return true
		}
		r.SYNOnly = m(0x02) && !m(0x12) && !m(0x10)
		r.SYNACK = m(0x12) && !m(0x10)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func portRanges(c *cond) []PortRange {
	u := func(b []byte) uint16 {
		if len(b) < 2 {
			return 0
		}
		return binary.BigEndian.Uint16(b)
	}
	switch c.op {
	case opEq:
		return []PortRange{{u(c.data), u(c.data)}}
	case opRange:
		return []PortRange{{u(c.data), u(c.to)}}
	case opGte:
		return []PortRange{{u(c.data), 0xffff}}
	case opGt:
		if v := u(c.data); v < 0xffff {
			return []PortRange{{v + 1, 0xffff}}
		}
	case opLte:
		return []PortRange{{0, u(c.data)}}
	case opLt:
		if v := u(c.data); v > 0 {
			return []PortRange{{0, v - 1}}
		}
	case opSet:
		if c.set == nil || !c.set.ok {
			return nil
		}
		var out []PortRange
		for _, iv := range c.set.ivs {
			out = append(out, PortRange{u(iv.lo), u(iv.hi)})
		}
		return out
	}
	return nil
}

// hookOrder ranks the hooks a handshake packet of direction d traverses; -1
// for hooks it does not.
func hookOrder(d Direction, hook string) int {
	order := []string{"ingress", "prerouting", "input"}
	if d == Out || d == OutSYN {
		order = []string{"output", "postrouting", "egress"}
	}
	for i, h := range order {
		if h == hook {
			return i
		}
	}
	return -1
}

func familySees(family string, fam int) bool {
	switch family {
	case "inet", "netdev":
		return true
	case "ip":
		return fam != 6
	case "ip6":
		return fam != 4
	}
	return false
}

type outcome int

// mayDrop says whether Droppers can report r: its verdict drops, rejects
// or is a verdict map's (which can do either). Refresh re-reads the
// counters of exactly these rules.
func mayDrop(r *Rule) bool {
	verb, _, _ := strings.Cut(r.Verdict, " ")
	return verb == "drop" || verb == "reject" || verb == "vmap"
}

const (
	fellThrough outcome = iota
	accepted
	dropped
)

// maxJumpDepth is the kernel's limit on nested jumps (NFT_JUMP_STACK_SIZE).
const maxJumpDepth = 16

// Droppers returns the rules that could drop or reject handshake packet p,
// in evaluation order: drop/reject rules that may match (Unknown ones and
// verdict maps included), and a base chain's drop policy as a pseudo-rule
// (Handle 0, Text "policy drop") when the packet can reach the end of that
// chain without a certain accept. Evaluation stops at the first rule that
// certainly drops the packet.
func (rs *Ruleset) Droppers(p Packet) []Rule {
	if rs == nil {
		return nil
	}
	strict, loose := newModel(p, false), newModel(p, true)
	var bases []*chainInfo
	for _, c := range rs.chains {
		if !c.base || hookOrder(p.Dir, c.hook) < 0 || !familySees(c.family, strict.fam) {
			continue
		}
		// NAT chains see only a connection's first packet, never a reply.
		if p.Dir == Out && c.typ == "nat" {
			continue
		}
		bases = append(bases, c)
	}
	sort.SliceStable(bases, func(i, j int) bool {
		oi, oj := hookOrder(p.Dir, bases[i].hook), hookOrder(p.Dir, bases[j].hook)
		if oi != oj {
			return oi < oj
		}
		return bases[i].prio < bases[j].prio
	})
	w := &walker{rs: rs, strict: strict, loose: loose, seen: map[string]bool{}, walkedMaybe: map[*chainInfo]bool{}}
	for _, c := range bases {
		res := w.walk(c, true, 0)
		if res == dropped {
			break
		}
		if res == fellThrough && c.policy == "drop" {
			w.add(Rule{Family: c.family, Table: c.table, Chain: c.name, Hook: c.hook, Priority: c.prio,
				Policy: c.policy, Text: "policy drop", Verdict: "drop"})
			break
		}
	}
	return w.out
}

type walker struct {
	rs            *Ruleset
	strict, loose *pktModel
	out           []Rule
	seen          map[string]bool
	// walkedMaybe marks chains already walked on an uncertain path: such a
	// walk only collects droppers, and a second one would collect the same,
	// so skipping it keeps evaluation linear however the chains jump.
	walkedMaybe map[*chainInfo]bool
}

func (w *walker) add(r Rule) {
	if k := r.Key(); !w.seen[k] {
		w.seen[k] = true
		w.out = append(w.out, r)
	}
}

// walk evaluates chain c. certain says the packet surely got here; only then
// can a verdict end the evaluation.
func (w *walker) walk(c *chainInfo, certain bool, depth int) outcome {
	if !certain {
		if w.walkedMaybe[c] {
			return fellThrough
		}
		w.walkedMaybe[c] = true
	}
	for _, idx := range c.rules {
		r := &w.rs.Rules[idx]
		if w.loose.match(r) == no {
			continue
		}
		definite := certain && w.strict.match(r) == yes
		verb, target, _ := strings.Cut(r.Verdict, " ")
		if mayDrop(r) {
			w.add(*r)
		}
		switch verb {
		case "drop", "reject":
			if definite {
				return dropped
			}
		case "accept", "queue":
			if definite {
				return accepted
			}
		case "jump", "goto":
			callee := w.rs.byName[c.family+"/"+c.table+"/"+target]
			if callee == nil || depth >= maxJumpDepth {
				continue
			}
			res := w.walk(callee, definite, depth+1)
			if definite && (res != fellThrough || verb == "goto") {
				return res
			}
		case "return":
			if definite {
				return fellThrough
			}
		}
	}
	return fellThrough
}

package firewall

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// fieldKind is a packet property an expression loads into a register.
type fieldKind int

const (
	fOther     fieldKind = iota // understood or not, its value for our packet is unknowable
	fL4Proto                    // meta l4proto, ip protocol, ip6 nexthdr (1 byte)
	fNfproto                    // meta nfproto (1 byte)
	fEtherType                  // meta protocol (2 bytes, network order)
	fIifname                    // 16 bytes, NUL padded
	fOifname
	fIif // ifindex, 4 bytes host order
	fOif
	fSport // 2 bytes network order
	fDport
	fTCPFlags // 1 byte
	fSaddr    // 4 or 16 bytes
	fDaddr
	fCtState // 4 bytes host order bitmask
	fConst   // an immediate value
)

// field is what a register holds: a (part of a) packet property, maybe
// masked by a bitwise expression.
type field struct {
	kind     fieldKind
	name     string // nft spelling: "tcp dport", "ip saddr", "ct state", ...
	v6       bool   // address fields
	off, len int    // the bytes of the property that were loaded
	host     bool   // a host-order integer (meta mark, ct mark, ...)
	mask     []byte // from bitwise (nil: none)
	xor      []byte
	konst    []byte // fConst
}

func fullLen(k fieldKind, v6 bool) int {
	switch k {
	case fL4Proto, fNfproto, fTCPFlags:
		return 1
	case fEtherType, fSport, fDport:
		return 2
	case fIifname, fOifname:
		return 16
	case fIif, fOif, fCtState:
		return 4
	case fSaddr, fDaddr:
		if v6 {
			return 16
		}
		return 4
	}
	return 0
}

// whole reports whether the register holds the entire property, unmasked.
func (f field) whole() bool {
	return f.off == 0 && f.len == fullLen(f.kind, f.v6) && f.mask == nil
}

type condOp int

const (
	opEq condOp = iota
	opNeq
	opLt
	opLte
	opGt
	opGte
	opRange
	opNotRange
	opSet
	opNotSet
	opMaybe // a condition we cannot evaluate: always "may match"
)

// interval is an inclusive range of register values, compared as memcmp does.
type interval struct{ lo, hi []byte }

// setInfo is a set as a lookup sees it.
type setInfo struct {
	name      string
	anonymous bool
	ok        bool // elements known and usable (not a concatenation)
	isMap     bool
	ivs       []interval
}

// cond is one condition of a rule.
type cond struct {
	f      field
	op     condOp
	data   []byte // eq/neq/lt.../range lo
	to     []byte // range hi
	set    *setInfo
	text   string // rendering
	hidden bool   // an implicit dependency nft does not print
	// sub, when set, replaces evaluation: the condition holds when any sub
	// condition does (xt multiport "either"), negated by subNeg.
	sub    []cond
	subNeg bool
}

// piece is one rendered part of a rule, a condition or a statement.
type piece struct {
	text    string
	cond    int  // index into conds, -1 for statements
	counter bool // the counter statement, left out of Rule.Plain
}

type decoder struct {
	family  nftables.TableFamily
	sets    map[string]*setInfo
	regs    map[int]field
	l3      int    // 4, 6 or 0 (unknown) for the network header
	l4      string // "tcp", "udp", ... for the transport header
	conds   []cond
	pieces  []piece
	unknown bool
	verdict string
	counter *expr.Counter
}

// regIndex folds the 16-byte and 4-byte register numbers into one space.
func regIndex(r uint32) int {
	switch {
	case r >= unix.NFT_REG_1 && r <= unix.NFT_REG_4:
		return int(r-unix.NFT_REG_1) * 4
	case r >= unix.NFT_REG32_00 && r <= unix.NFT_REG32_15:
		return int(r - unix.NFT_REG32_00)
	}
	return -1
}

// decodeRule interprets a rule's expressions.
func decodeRule(fam nftables.TableFamily, exprs []expr.Any, sets map[string]*setInfo) Rule {
	d := &decoder{family: fam, sets: sets, regs: map[int]field{}}
	switch fam {
	case nftables.TableFamilyIPv4:
		d.l3 = 4
	case nftables.TableFamilyIPv6:
		d.l3 = 6
	}
	for _, e := range exprs {
		d.expr(e)
	}
	d.hideDependencies()
	r := Rule{Verdict: d.verdict, Unknown: d.unknown, conds: d.conds}
	if d.counter != nil {
		r.HasCounter = true
		r.Packets, r.Bytes = d.counter.Packets, d.counter.Bytes
	}
	var parts, plain []string
	for _, p := range d.pieces {
		if p.cond >= 0 && d.conds[p.cond].hidden {
			continue
		}
		if p.text != "" {
			parts = append(parts, p.text)
			if !p.counter {
				plain = append(plain, p.text)
			}
		}
	}
	r.Text = strings.Join(parts, " ")
	r.plain = strings.Join(plain, " ")
	summarize(&r)
	return r
}

func (d *decoder) stmt(s string) { d.pieces = append(d.pieces, piece{text: s, cond: -1}) }

func (d *decoder) addCond(c cond) {
	if c.text == "" {
		c.text = renderCond(c)
	}
	d.conds = append(d.conds, c)
	d.pieces = append(d.pieces, piece{text: c.text, cond: len(d.conds) - 1})
	// Later loads of the same headers read with this context, as nft's
	// dependencies intend.
	if c.op == opEq && c.f.whole() && len(c.data) > 0 {
		switch c.f.kind {
		case fL4Proto:
			d.l4 = protoName(c.data[0])
		case fNfproto:
			switch c.data[0] {
			case unix.NFPROTO_IPV4:
				d.l3 = 4
			case unix.NFPROTO_IPV6:
				d.l3 = 6
			}
		case fEtherType:
			switch binary.BigEndian.Uint16(c.data) {
			case unix.ETH_P_IP:
				d.l3 = 4
			case unix.ETH_P_IPV6:
				d.l3 = 6
			}
		}
	}
}

// unknownCond records something we could not interpret.
func (d *decoder) unknownCond(text string) {
	d.unknown = true
	d.addCond(cond{f: field{kind: fOther, name: text}, op: opMaybe, text: text})
}

func (d *decoder) load(dst uint32, f field) {
	if i := regIndex(dst); i >= 0 {
		d.regs[i] = f
	}
}

func (d *decoder) reg(r uint32) (field, bool) {
	i := regIndex(r)
	if i < 0 {
		return field{}, false
	}
	f, ok := d.regs[i]
	return f, ok
}

func (d *decoder) expr(e expr.Any) {
	switch e := e.(type) {
	case *expr.Meta:
		if e.SourceRegister {
			d.stmt(fmt.Sprintf("meta %s set %s", metaName(e.Key), d.regText(e.Register)))
			return
		}
		d.load(e.Register, metaField(e.Key))
	case *expr.Payload:
		if e.OperationType != expr.PayloadLoad {
			d.stmt(fmt.Sprintf("payload write @%s,%d,%d", baseName(e.Base), e.Offset*8, e.Len*8))
			return
		}
		d.load(e.DestRegister, d.payloadField(e))
	case *expr.Ct:
		if e.SourceRegister {
			d.stmt(fmt.Sprintf("ct %s set %s", ctName(e.Key), d.regText(e.Register)))
			return
		}
		f := field{kind: fOther, name: "ct " + ctName(e.Key), host: e.Key != expr.CtKeySRC && e.Key != expr.CtKeyDST}
		if e.Key == expr.CtKeySTATE {
			f = field{kind: fCtState, name: "ct state", len: 4}
		}
		d.load(e.Register, f)
	case *expr.Bitwise:
		f, ok := d.reg(e.SourceRegister)
		if !ok {
			d.unknownCond("<bitwise on an unknown value>")
			d.load(e.DestRegister, field{kind: fOther, name: "<unknown>"})
			return
		}
		if f.mask != nil {
			// Two bitwise steps: keep the name, lose the value.
			f = field{kind: fOther, name: f.name}
		} else {
			f.mask = append([]byte(nil), e.Mask...)
			f.xor = append([]byte(nil), e.Xor...)
		}
		d.load(e.DestRegister, f)
	case *expr.Immediate:
		d.load(e.Register, field{kind: fConst, name: "0x" + hex.EncodeToString(e.Data), konst: e.Data})
	case *expr.Cmp:
		f, ok := d.reg(e.Register)
		if !ok {
			// google/nftables silently skips expressions it has no type
			// for; a comparison of a register nothing we saw loaded is the
			// trace such an expression leaves.
			d.unknownCond("<unknown expression>")
			return
		}
		op := map[expr.CmpOp]condOp{expr.CmpOpEq: opEq, expr.CmpOpNeq: opNeq, expr.CmpOpLt: opLt,
			expr.CmpOpLte: opLte, expr.CmpOpGt: opGt, expr.CmpOpGte: opGte}[e.Op]
		// nft spells "dport 1000-2000" as gte+lte on one load; fold it back.
		if op == opLte && len(d.conds) > 0 {
			last := &d.conds[len(d.conds)-1]
			if last.op == opGte && last.f.name == f.name && last.f.off == f.off && last.f.len == f.len && last.sub == nil {
				last.op, last.to = opRange, e.Data
				last.text = renderCond(*last)
				d.pieces[len(d.pieces)-1].text = last.text
				return
			}
		}
		d.addCond(cond{f: f, op: op, data: e.Data})
	case *expr.Range:
		f, ok := d.reg(e.Register)
		if !ok {
			d.unknownCond("<unknown expression>")
			return
		}
		op := opRange
		if e.Op == expr.CmpOpNeq {
			op = opNotRange
		}
		d.addCond(cond{f: f, op: op, data: e.FromData, to: e.ToData})
	case *expr.Lookup:
		d.lookup(e)
	case *expr.Counter:
		if d.counter == nil {
			d.counter = e
		}
		d.pieces = append(d.pieces, piece{text: fmt.Sprintf("counter packets %d bytes %d", e.Packets, e.Bytes), cond: -1, counter: true})
	case *expr.Verdict:
		d.verdict = verdictName(e)
		d.stmt(d.verdict)
	case *expr.Reject:
		d.verdict = "reject"
		d.stmt(d.rejectText(e))
	case *expr.Queue:
		d.verdict = "queue"
		d.stmt(fmt.Sprintf("queue num %d", e.Num))
	case *expr.Log:
		if e.Key&(1<<unix.NFTA_LOG_PREFIX) != 0 {
			d.stmt(fmt.Sprintf("log prefix %q", string(bytes.TrimRight(e.Data, "\x00"))))
		} else {
			d.stmt("log")
		}
	case *expr.Limit:
		// A limit matches while under (or, with "over", above) its rate:
		// sometimes. Understood, but its outcome for our packet is not.
		over := ""
		if e.Over {
			over = "over "
		}
		d.addCond(cond{f: field{kind: fOther, name: "limit"}, op: opMaybe, text: fmt.Sprintf("limit rate %s%d/%s", over, e.Rate, limitUnit(e.Unit))})
	case *expr.Quota:
		d.addCond(cond{f: field{kind: fOther, name: "quota"}, op: opMaybe, text: fmt.Sprintf("quota %d bytes", e.Bytes)})
	case *expr.Connlimit:
		d.addCond(cond{f: field{kind: fOther, name: "ct count"}, op: opMaybe, text: fmt.Sprintf("ct count %d", e.Count)})
	case *expr.Notrack:
		d.stmt("notrack")
	case *expr.NAT:
		if e.Type == expr.NATTypeSourceNAT {
			d.stmt("snat")
		} else {
			d.stmt("dnat")
		}
	case *expr.Masq:
		d.stmt("masquerade")
	case *expr.Redir:
		d.stmt("redirect")
	case *expr.Objref:
		if e.Type == 1 { // NFT_OBJECT_COUNTER: a named counter, not a condition
			d.stmt(fmt.Sprintf("counter name %q", e.Name))
		} else {
			d.addCond(cond{f: field{kind: fOther, name: "objref"}, op: opMaybe, text: fmt.Sprintf("object %q", e.Name)})
		}
	case *expr.Dynset:
		d.stmt(fmt.Sprintf("dynset @%s", e.SetName))
		if len(e.Exprs) > 0 {
			d.addCond(cond{f: field{kind: fOther, name: "meter"}, op: opMaybe, text: "<meter>"})
		}
	case *expr.Fib:
		d.load(e.Register, field{kind: fOther, name: "fib"})
	case *expr.Exthdr:
		if e.SourceRegister != 0 {
			d.stmt("exthdr set")
			return
		}
		d.load(e.DestRegister, field{kind: fOther, name: fmt.Sprintf("exthdr type %d", e.Type)})
	case *expr.Hash:
		d.load(e.DestRegister, field{kind: fOther, name: "hash"})
	case *expr.Numgen:
		d.load(e.Register, field{kind: fOther, name: "numgen"})
	case *expr.Rt:
		d.load(e.Register, field{kind: fOther, name: "rt"})
	case *expr.Socket:
		d.load(e.Register, field{kind: fOther, name: "socket"})
	case *expr.Match:
		d.xtMatch(e)
	case *expr.Target:
		d.xtTarget(e)
	default:
		d.unknown = true
		d.addCond(cond{f: field{kind: fOther, name: "?"}, op: opMaybe, text: fmt.Sprintf("<%T>", e)})
	}
}

func (d *decoder) regText(r uint32) string {
	if f, ok := d.reg(r); ok {
		return f.name
	}
	return "?"
}

func (d *decoder) lookup(e *expr.Lookup) {
	f, ok := d.reg(e.SourceRegister)
	if !ok {
		d.unknownCond("<unknown expression>")
		return
	}
	s := d.sets[e.SetName]
	if s == nil {
		s = &setInfo{name: e.SetName}
	}
	op := opSet
	if e.Invert {
		op = opNotSet
	}
	if e.IsDestRegSet {
		if e.DestRegister == unix.NFT_REG_VERDICT {
			// A verdict map: the verdict depends on which element matched.
			d.verdict = "vmap"
			d.unknown = true
			d.addCond(cond{f: f, op: opSet, set: s, text: fmt.Sprintf("%s vmap %s", f.name, setRef(s))})
			return
		}
		d.load(e.DestRegister, field{kind: fOther, name: fmt.Sprintf("%s map %s", f.name, setRef(s))})
	}
	if !s.ok {
		d.unknown = true
	}
	d.addCond(cond{f: f, op: op, set: s})
}

// hideDependencies drops from the text the "meta l4proto tcp" / "meta
// nfproto ipv4" that nft inserts before "tcp dport" / "ip saddr" and does not
// print either.
func (d *decoder) hideDependencies() {
	for i := 0; i+1 < len(d.conds); i++ {
		c, next := d.conds[i], d.conds[i+1]
		if c.op != opEq || !c.f.whole() || len(c.data) == 0 {
			continue
		}
		switch c.f.kind {
		case fL4Proto:
			if c.f.name != "meta l4proto" {
				continue
			}
			l4 := protoName(c.data[0])
			if strings.HasPrefix(next.f.name, l4+" ") {
				d.conds[i].hidden = true
			}
		case fNfproto:
			pfx := "ip "
			if c.data[0] == unix.NFPROTO_IPV6 {
				pfx = "ip6 "
			}
			if strings.HasPrefix(next.f.name, pfx) {
				d.conds[i].hidden = true
			}
		}
	}
}

package firewall

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
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

func setRef(s *setInfo) string {
	if s.anonymous && s.ok {
		return "{ ... }"
	}
	return "@" + s.name
}

// payloadField maps a header load to the packet property it reads.
func (d *decoder) payloadField(e *expr.Payload) field {
	off, n := int(e.Offset), int(e.Len)
	other := field{kind: fOther, name: fmt.Sprintf("@%s,%d,%d", baseName(e.Base), off*8, n*8)}
	in := func(lo, size int) bool { return off >= lo && off+n <= lo+size }
	switch e.Base {
	case expr.PayloadBaseTransportHeader:
		l4 := d.l4
		if l4 == "" || (l4 != "tcp" && l4 != "udp" && l4 != "sctp" && l4 != "dccp" && l4 != "udplite") {
			l4 = "th"
		}
		switch {
		case in(0, 2):
			return field{kind: fSport, name: l4 + " sport", off: off, len: n}
		case in(2, 2):
			return field{kind: fDport, name: l4 + " dport", off: off - 2, len: n}
		case off == 13 && n == 1 && (d.l4 == "tcp" || d.l4 == ""):
			return field{kind: fTCPFlags, name: "tcp flags", len: 1}
		}
	case expr.PayloadBaseNetworkHeader:
		switch d.l3 {
		case 4:
			switch {
			case off == 9 && n == 1:
				return field{kind: fL4Proto, name: "ip protocol", len: 1}
			case in(12, 4):
				return field{kind: fSaddr, name: "ip saddr", off: off - 12, len: n}
			case in(16, 4):
				return field{kind: fDaddr, name: "ip daddr", off: off - 16, len: n}
			}
		case 6:
			switch {
			case off == 6 && n == 1:
				return field{kind: fL4Proto, name: "ip6 nexthdr", len: 1}
			case in(8, 16):
				return field{kind: fSaddr, name: "ip6 saddr", v6: true, off: off - 8, len: n}
			case in(24, 16):
				return field{kind: fDaddr, name: "ip6 daddr", v6: true, off: off - 24, len: n}
			}
		}
	}
	return other
}

func metaField(k expr.MetaKey) field {
	switch k {
	case expr.MetaKeyL4PROTO:
		return field{kind: fL4Proto, name: "meta l4proto", len: 1}
	case expr.MetaKeyNFPROTO:
		return field{kind: fNfproto, name: "meta nfproto", len: 1}
	case expr.MetaKeyPROTOCOL:
		return field{kind: fEtherType, name: "meta protocol", len: 2}
	case expr.MetaKeyIIFNAME:
		return field{kind: fIifname, name: "iifname", len: 16}
	case expr.MetaKeyOIFNAME:
		return field{kind: fOifname, name: "oifname", len: 16}
	case expr.MetaKeyIIF:
		return field{kind: fIif, name: "iif", len: 4}
	case expr.MetaKeyOIF:
		return field{kind: fOif, name: "oif", len: 4}
	}
	return field{kind: fOther, name: "meta " + metaName(k), host: true}
}

func metaName(k expr.MetaKey) string {
	names := map[expr.MetaKey]string{
		expr.MetaKeyLEN: "length", expr.MetaKeyPROTOCOL: "protocol", expr.MetaKeyPRIORITY: "priority",
		expr.MetaKeyMARK: "mark", expr.MetaKeyIIF: "iif", expr.MetaKeyOIF: "oif", expr.MetaKeyIIFNAME: "iifname",
		expr.MetaKeyOIFNAME: "oifname", expr.MetaKeyIIFTYPE: "iiftype", expr.MetaKeyOIFTYPE: "oiftype",
		expr.MetaKeySKUID: "skuid", expr.MetaKeySKGID: "skgid", expr.MetaKeyNFTRACE: "nftrace",
		expr.MetaKeyRTCLASSID: "rtclassid", expr.MetaKeySECMARK: "secmark", expr.MetaKeyNFPROTO: "nfproto",
		expr.MetaKeyL4PROTO: "l4proto", expr.MetaKeyBRIIIFNAME: "ibrname", expr.MetaKeyBRIOIFNAME: "obrname",
		expr.MetaKeyPKTTYPE: "pkttype", expr.MetaKeyCPU: "cpu", expr.MetaKeyIIFGROUP: "iifgroup",
		expr.MetaKeyOIFGROUP: "oifgroup", expr.MetaKeyCGROUP: "cgroup", expr.MetaKeyPRANDOM: "random",
	}
	if n, ok := names[k]; ok {
		return n
	}
	return fmt.Sprintf("key%d", k)
}

func ctName(k expr.CtKey) string {
	names := map[expr.CtKey]string{
		expr.CtKeySTATE: "state", expr.CtKeyDIRECTION: "direction", expr.CtKeySTATUS: "status",
		expr.CtKeyMARK: "mark", expr.CtKeySECMARK: "secmark", expr.CtKeyEXPIRATION: "expiration",
		expr.CtKeyHELPER: "helper", expr.CtKeySRC: "saddr", expr.CtKeyDST: "daddr",
		expr.CtKeyPROTOCOL: "protocol", expr.CtKeyPROTOSRC: "proto-src", expr.CtKeyPROTODST: "proto-dst",
		expr.CtKeyLABELS: "label", expr.CtKeyPKTS: "packets", expr.CtKeyBYTES: "bytes",
		expr.CtKeyAVGPKT: "avgpkt", expr.CtKeyZONE: "zone", expr.CtKeyEVENTMASK: "event",
	}
	if n, ok := names[k]; ok {
		return n
	}
	return fmt.Sprintf("key%d", k)
}

func baseName(b expr.PayloadBase) string {
	switch b {
	case expr.PayloadBaseLLHeader:
		return "ll"
	case expr.PayloadBaseNetworkHeader:
		return "nh"
	case expr.PayloadBaseTransportHeader:
		return "th"
	}
	return fmt.Sprintf("base%d", b)
}

func limitUnit(u expr.LimitTime) string {
	switch u {
	case expr.LimitTimeSecond:
		return "second"
	case expr.LimitTimeMinute:
		return "minute"
	case expr.LimitTimeHour:
		return "hour"
	case expr.LimitTimeDay:
		return "day"
	case expr.LimitTimeWeek:
		return "week"
	}
	return "?"
}

func verdictName(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictQueue:
		return "queue"
	case expr.VerdictContinue:
		return "continue"
	case expr.VerdictBreak:
		return "break"
	case expr.VerdictStolen:
		return "stolen"
	}
	return fmt.Sprintf("verdict %d", v.Kind)
}

func (d *decoder) rejectText(e *expr.Reject) string {
	switch e.Type {
	case unix.NFT_REJECT_TCP_RST:
		return "reject with tcp reset"
	case unix.NFT_REJECT_ICMPX_UNREACH:
		names := []string{"no-route", "port-unreachable", "host-unreachable", "admin-prohibited"}
		if e.Code == unix.NFT_REJECT_ICMPX_PORT_UNREACH {
			return "reject"
		}
		if int(e.Code) < len(names) {
			return "reject with icmpx " + names[e.Code]
		}
		return fmt.Sprintf("reject with icmpx %d", e.Code)
	}
	if d.l3 == 6 {
		names := map[uint8]string{0: "no-route", 1: "admin-prohibited", 3: "addr-unreachable", 4: "port-unreachable", 5: "policy-fail", 6: "reject-route"}
		if e.Code == 4 && d.family == nftables.TableFamilyIPv6 {
			return "reject"
		}
		if n, ok := names[e.Code]; ok {
			return "reject with icmpv6 " + n
		}
		return fmt.Sprintf("reject with icmpv6 %d", e.Code)
	}
	names := map[uint8]string{0: "net-unreachable", 1: "host-unreachable", 2: "prot-unreachable", 3: "port-unreachable",
		9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
	if e.Code == 3 && d.family == nftables.TableFamilyIPv4 {
		return "reject"
	}
	if n, ok := names[e.Code]; ok {
		return "reject with icmp " + n
	}
	return fmt.Sprintf("reject with icmp %d", e.Code)
}

var protoNames = map[byte]string{1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 33: "dccp", 47: "gre",
	50: "esp", 51: "ah", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}

func protoName(p byte) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return fmt.Sprint(p)
}

// Conntrack state bits, shared by nft "ct state" and xt conntrack/state.
var ctStateBits = []struct {
	bit  uint32
	name string
}{{1, "invalid"}, {2, "established"}, {4, "related"}, {8, "new"}, {64, "untracked"}}

func ctStateNames(v uint32) string {
	var out []string
	for _, b := range ctStateBits {
		if v&b.bit != 0 {
			out = append(out, b.name)
			v &^= b.bit
		}
	}
	if v != 0 {
		out = append(out, fmt.Sprintf("0x%x", v))
	}
	if len(out) == 0 {
		return "0x0"
	}
	return strings.Join(out, ",")
}

var tcpFlagNames = []string{"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"}

func tcpFlagsText(v byte) string {
	var out []string
	for i, n := range tcpFlagNames {
		if v&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "0x0"
	}
	return strings.Join(out, ",")
}

func hostU32(b []byte) uint32 {
	var x [4]byte
	copy(x[:], b)
	return binary.NativeEndian.Uint32(x[:])
}

// formatValue renders a register value of field f.
func formatValue(f field, v []byte) string {
	switch f.kind {
	case fL4Proto:
		if len(v) == 1 {
			return protoName(v[0])
		}
	case fNfproto:
		if len(v) == 1 {
			switch v[0] {
			case unix.NFPROTO_IPV4:
				return "ipv4"
			case unix.NFPROTO_IPV6:
				return "ipv6"
			}
		}
	case fEtherType:
		if len(v) == 2 {
			switch binary.BigEndian.Uint16(v) {
			case unix.ETH_P_IP:
				return "ip"
			case unix.ETH_P_IPV6:
				return "ip6"
			case unix.ETH_P_ARP:
				return "arp"
			}
		}
	case fIifname, fOifname:
		s := string(bytes.TrimRight(v, "\x00"))
		if f.off == 0 && len(v) < 16 && !bytes.Contains(v, []byte{0}) {
			s += "*"
		}
		return fmt.Sprintf("%q", s)
	case fIif, fOif:
		if len(v) == 4 {
			return fmt.Sprint(hostU32(v))
		}
	case fSport, fDport:
		if f.off == 0 && len(v) == 2 && f.mask == nil {
			return fmt.Sprint(binary.BigEndian.Uint16(v))
		}
	case fTCPFlags:
		if len(v) == 1 {
			return tcpFlagsText(v[0])
		}
	case fCtState:
		if len(v) == 4 {
			return ctStateNames(hostU32(v))
		}
	case fSaddr, fDaddr:
		if f.off == 0 {
			return formatAddr(f, v)
		}
	}
	if f.host && len(v) == 4 {
		return fmt.Sprintf("0x%08x", hostU32(v))
	}
	return "0x" + hex.EncodeToString(v)
}

// formatAddr renders an address match, with the prefix length a partial
// load or a mask implies.
func formatAddr(f field, v []byte) string {
	p, ok := addrPrefix(f, v)
	if !ok {
		return "0x" + hex.EncodeToString(v)
	}
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func addrPrefix(f field, v []byte) (netip.Prefix, bool) {
	size := fullLen(f.kind, f.v6)
	if f.off != 0 || len(v) > size {
		return netip.Prefix{}, false
	}
	full := make([]byte, size)
	copy(full, v)
	bitsLen := len(v) * 8
	if f.mask != nil {
		ones, ok := prefixOnes(f.mask)
		if !ok {
			return netip.Prefix{}, false
		}
		bitsLen = ones
	}
	a, _ := netip.AddrFromSlice(full)
	p, err := a.Prefix(bitsLen)
	return p, err == nil
}

// prefixOnes is the prefix length of a contiguous high-bits mask.
func prefixOnes(m []byte) (int, bool) {
	n, done := 0, false
	for _, b := range m {
		if done && b != 0 {
			return 0, false
		}
		ones := bits.LeadingZeros8(^b)
		if b<<ones != 0 {
			return 0, false
		}
		n += ones
		if ones < 8 {
			done = true
		}
	}
	return n, true
}

var opText = map[condOp]string{opNeq: "!= ", opLt: "< ", opLte: "<= ", opGt: "> ", opGte: ">= ", opNotRange: "!= ", opNotSet: "!= "}

func renderCond(c cond) string {
	f := c.f
	if c.op == opMaybe {
		return f.name
	}
	// Bitwise idioms nft prints in its own way.
	if f.mask != nil && len(c.data) > 0 && (c.op == opEq || c.op == opNeq) {
		zero := !bytes.ContainsFunc(c.data, func(r rune) bool { return r != 0 })
		switch f.kind {
		case fTCPFlags:
			if len(f.mask) == 0 {
				break
			}
			m := f.mask[0]
			switch {
			case c.op == opNeq && zero && bits.OnesCount8(m) == 1:
				return "tcp flags " + tcpFlagsText(m)
			case c.op == opNeq && zero:
				return "tcp flags & (" + strings.ReplaceAll(tcpFlagsText(m), ",", "|") + ") != 0"
			case c.op == opEq && zero:
				return "tcp flags & (" + strings.ReplaceAll(tcpFlagsText(m), ",", "|") + ") == 0"
			case c.op == opEq:
				return "tcp flags " + tcpFlagsText(c.data[0]) + " / " + tcpFlagsText(m)
			}
		case fCtState:
			m := hostU32(f.mask)
			if zero && c.op == opNeq {
				return "ct state " + ctStateNames(m)
			}
			if zero && c.op == opEq {
				return "ct state != " + ctStateNames(m)
			}
		case fSaddr, fDaddr:
			if _, ok := addrPrefix(f, c.data); ok {
				return f.name + " " + opText[c.op] + formatValue(f, c.data)
			}
		}
		return fmt.Sprintf("%s & 0x%s %s0x%s", f.name, hex.EncodeToString(f.mask), opTextOrEq(c.op), hex.EncodeToString(c.data))
	}
	switch c.op {
	case opRange, opNotRange:
		return fmt.Sprintf("%s %s%s-%s", f.name, opText[c.op], formatValue(f, c.data), formatValue(f, c.to))
	case opSet, opNotSet:
		return fmt.Sprintf("%s %s%s", f.name, opText[c.op], renderSet(f, c.set))
	}
	if f.kind == fTCPFlags && c.op == opEq {
		return "tcp flags == " + formatValue(f, c.data)
	}
	return fmt.Sprintf("%s %s%s", f.name, opText[c.op], formatValue(f, c.data))
}

func opTextOrEq(op condOp) string {
	if t, ok := opText[op]; ok {
		return t
	}
	return "== "
}

func renderSet(f field, s *setInfo) string {
	if s == nil || !s.anonymous || !s.ok {
		if s == nil {
			return "@?"
		}
		return "@" + s.name
	}
	var parts []string
	for _, iv := range s.ivs {
		if bytes.Equal(iv.lo, iv.hi) {
			parts = append(parts, formatValue(f, iv.lo))
			continue
		}
		if f.kind == fSaddr || f.kind == fDaddr {
			if p, ok := rangePrefix(iv); ok {
				parts = append(parts, p.String())
				continue
			}
		}
		parts = append(parts, formatValue(f, iv.lo)+"-"+formatValue(f, iv.hi))
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// rangePrefix reports whether an address interval is exactly one prefix.
func rangePrefix(iv interval) (netip.Prefix, bool) {
	lo, ok1 := netip.AddrFromSlice(iv.lo)
	hi, ok2 := netip.AddrFromSlice(iv.hi)
	if !ok1 || !ok2 || lo.BitLen() != hi.BitLen() {
		return netip.Prefix{}, false
	}
	for n := 0; n <= lo.BitLen(); n++ {
		p, err := lo.Prefix(n)
		if err != nil || p.Addr() != lo {
			continue
		}
		if lastAddr(p) == hi {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		bit := i * 8
		switch {
		case bit >= p.Bits():
			b[i] = 0xff
		case bit+8 > p.Bits():
			b[i] |= 0xff >> (p.Bits() - bit)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
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

// setIntervals turns set elements into inclusive intervals. nft stores an
// interval set as start keys and (flagged) end keys one past the range.
func setIntervals(s *nftables.Set, elems []nftables.SetElement) ([]interval, bool) {
	if s.Concatenation {
		return nil, false
	}
	if !s.Interval {
		out := make([]interval, 0, len(elems))
		for _, e := range elems {
			hi := e.Key
			if len(e.KeyEnd) > 0 {
				hi = e.KeyEnd
			}
			out = append(out, interval{lo: e.Key, hi: hi})
		}
		sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].lo, out[j].lo) < 0 })
		return out, true
	}
	el := append([]nftables.SetElement(nil), elems...)
	sort.SliceStable(el, func(i, j int) bool { return bytes.Compare(el[i].Key, el[j].Key) < 0 })
	var out []interval
	for i, e := range el {
		if e.IntervalEnd {
			continue
		}
		if len(e.KeyEnd) > 0 {
			out = append(out, interval{lo: e.Key, hi: e.KeyEnd})
			continue
		}
		hi := bytes.Repeat([]byte{0xff}, len(e.Key))
		if i+1 < len(el) {
			hi = decBytes(el[i+1].Key)
		}
		out = append(out, interval{lo: e.Key, hi: hi})
	}
	return out, true
}

// decBytes is b-1 as a big-endian number.
func decBytes(b []byte) []byte {
	out := append([]byte(nil), b...)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]--
		if out[i] != 0xff {
			break
		}
	}
	return out
}

// xtMatch interprets the xtables matches iptables-nft emits.
func (d *decoder) xtMatch(m *expr.Match) {
	switch info := m.Info.(type) {
	case *xt.Tcp:
		d.xtPorts("tcp", info.SrcPorts, info.DstPorts, info.InvFlags&xt.TcpInvSrcPorts != 0, info.InvFlags&xt.TcpInvDestPorts != 0)
		if info.FlagsMask != 0 {
			op := opEq
			if info.InvFlags&xt.TcpInvFlags != 0 {
				op = opNeq
			}
			c := cond{f: field{kind: fTCPFlags, name: "tcp flags", len: 1, mask: []byte{info.FlagsMask}, xor: []byte{0}}, op: op, data: []byte{info.FlagsCmp}}
			d.addXT("tcp", c)
		}
		if info.Option != 0 {
			d.addCond(cond{f: field{kind: fOther, name: "tcp option"}, op: opMaybe, text: fmt.Sprintf("xt tcp option %d", info.Option)})
		}
		return
	case *xt.Udp:
		d.addXT("udp", cond{f: field{kind: fL4Proto, name: "meta l4proto", len: 1}, op: opEq, data: []byte{unix.IPPROTO_UDP}})
		d.xtPorts("udp", info.SrcPorts, info.DstPorts, info.InvFlags&xt.UdpInvSrcPorts != 0, info.InvFlags&xt.UdpInvDestPorts != 0)
		return
	case *xt.ConntrackMtinfo1:
		d.xtConntrack(&info.ConntrackMtinfoBase, uint32(info.StateMask))
		return
	case *xt.ConntrackMtinfo2:
		d.xtConntrack(&info.ConntrackMtinfoBase, uint32(info.StateMask))
		return
	case *xt.ConntrackMtinfo3:
		d.xtConntrack(&info.ConntrackMtinfoBase, uint32(info.StateMask))
		return
	case *xt.Comment:
		d.stmt(fmt.Sprintf("comment %q", string(*info)))
		return
	case *xt.Unknown:
		switch m.Name {
		case "state":
			if len(*info) >= 4 {
				mask := hostU32(*info)
				d.addXT("state", ctStateCond(mask, false))
				return
			}
		case "multiport":
			if d.xtMultiport(m.Rev, *info) {
				return
			}
		}
	}
	d.unknownCond(fmt.Sprintf("xt match %q", m.Name))
}

// addXT adds an xt-derived condition, labelled so a reader sees where it
// came from.
func (d *decoder) addXT(name string, c cond) {
	text := renderCond(c)
	if !strings.HasPrefix(text, name+" ") {
		text = name + " " + text
	}
	c.text = "xt " + text
	d.addCond(c)
}

func (d *decoder) xtPorts(proto string, src, dst [2]uint16, invSrc, invDst bool) {
	add := func(k fieldKind, dir string, pr [2]uint16, inv bool) {
		if pr[0] == 0 && pr[1] == 0xffff && !inv {
			return
		}
		f := field{kind: k, name: proto + " " + dir, len: 2}
		lo, hi := be16(pr[0]), be16(pr[1])
		c := cond{f: f, op: opRange, data: lo, to: hi}
		if pr[0] == pr[1] {
			c.op, c.to = opEq, nil
		}
		if inv {
			c.op = map[condOp]condOp{opRange: opNotRange, opEq: opNeq}[c.op]
		}
		d.addXT(proto, c)
	}
	add(fSport, "sport", src, invSrc)
	add(fDport, "dport", dst, invDst)
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func ctStateCond(mask uint32, inv bool) cond {
	op := opNeq
	if inv {
		op = opEq
	}
	m := binary.NativeEndian.AppendUint32(nil, mask)
	return cond{f: field{kind: fCtState, name: "ct state", len: 4, mask: m, xor: make([]byte, 4)}, op: op, data: make([]byte, 4)}
}

func (d *decoder) xtConntrack(b *xt.ConntrackMtinfoBase, state uint32) {
	flags := xt.ConntrackFlags(b.MatchFlags)
	if flags&(xt.ConntrackState|xt.ConntrackStateAlias) != 0 {
		inv := xt.ConntrackFlags(b.InvertFlags)&xt.ConntrackState != 0
		d.addXT("conntrack", ctStateCond(state, inv))
	}
	if rest := flags &^ (xt.ConntrackState | xt.ConntrackStateAlias); rest != 0 {
		d.unknownCond(fmt.Sprintf("xt match \"conntrack\" flags 0x%x", uint16(rest)))
	}
}

// xtMultiport decodes struct xt_multiport_v1: flags u8, count u8,
// ports[15] u16 (host order), pflags[15] u8, invert u8.
func (d *decoder) xtMultiport(rev uint32, b []byte) bool {
	if rev != 1 || len(b) < 48 {
		return false
	}
	which, count := b[0], int(b[1])
	if count > 15 {
		return false
	}
	var ivs []interval
	for i := 0; i < count; i++ {
		lo := binary.NativeEndian.Uint16(b[2+2*i:])
		hi := lo
		if b[32+i] != 0 && i+1 < count {
			hi = binary.NativeEndian.Uint16(b[2+2*(i+1):])
			i++
		}
		ivs = append(ivs, interval{lo: be16(lo), hi: be16(hi)})
	}
	op := opSet
	if b[47] != 0 {
		op = opNotSet
	}
	s := &setInfo{name: "multiport", anonymous: true, ok: true, ivs: ivs}
	l4 := d.l4
	if l4 != "tcp" && l4 != "udp" && l4 != "sctp" && l4 != "dccp" && l4 != "udplite" {
		l4 = "th"
	}
	sport := field{kind: fSport, name: l4 + " sport", len: 2}
	dport := field{kind: fDport, name: l4 + " dport", len: 2}
	switch which { // XT_MULTIPORT_SOURCE, _DESTINATION, _EITHER
	case 0:
		d.addXT("multiport", cond{f: sport, op: op, set: s})
	case 1:
		d.addXT("multiport", cond{f: dport, op: op, set: s})
	default:
		c := cond{f: field{kind: fOther, name: l4 + " port"}, op: opMaybe, subNeg: op == opNotSet}
		c.sub = []cond{{f: sport, op: opSet, set: s}, {f: dport, op: opSet, set: s}}
		c.text = "xt multiport " + l4 + " port " + opText[op] + renderSet(dport, s)
		d.addCond(c)
	}
	return true
}

// xtTarget interprets the xtables targets iptables-nft emits.
func (d *decoder) xtTarget(t *expr.Target) {
	switch t.Name {
	case "REJECT":
		d.verdict = "reject"
		d.stmt("xt target REJECT")
	case "DROP":
		d.verdict = "drop"
		d.stmt("xt target DROP")
	case "ACCEPT":
		d.verdict = "accept"
		d.stmt("xt target ACCEPT")
	case "LOG", "NFLOG", "MARK", "CONNMARK", "CT", "TCPMSS", "DSCP", "TOS", "NOTRACK", "CHECKSUM", "TRACE":
		d.stmt(fmt.Sprintf("xt target %s", t.Name))
	case "NFQUEUE":
		d.verdict = "queue"
		d.stmt("xt target NFQUEUE")
	default:
		d.unknown = true
		d.stmt(fmt.Sprintf("xt target %q", t.Name))
	}
}

package firewall

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Rendering decoded conditions the way `nft list ruleset` prints them.

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

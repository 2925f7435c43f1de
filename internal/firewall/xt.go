package firewall

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// iptables-nft rules: xt matches and targets inside nf_tables expressions.

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

package firewall

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/nftables/expr"
)

// Names of the things nftables expressions load and compare: payload and
// meta fields, conntrack keys, verdicts, protocols, flags.

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

package rtnl

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl"
)

// sizeofFibRuleHdr is struct fib_rule_hdr.
const sizeofFibRuleHdr = 12

// Rule is one policy routing rule message (RTM_NEWRULE) decoded.
type Rule struct {
	Family         uint8
	DstLen, SrcLen uint8
	Tos            uint8
	Table          int // FRA_TABLE when present, the header's table otherwise
	Action         uint8
	Flags          uint32 // FIB_RULE_*
	Priority       int
	Src, Dst       netip.Prefix // invalid = any
	Mark, Mask     uint32
	HasMark        bool // FRA_FWMARK or FRA_FWMASK was sent
	HasMask        bool // FRA_FWMASK was sent (a mark alone means mask 0xffffffff)
	IifName        string
	OifName        string
	Goto           int
	// UIDStart..UIDEnd is FRA_UID_RANGE when HasUIDRange.
	UIDStart, UIDEnd uint32
	HasUIDRange      bool
	IPProto          uint8 // FRA_IP_PROTO, 0 = any
	HasIPProto       bool
	// Sport and Dport are FRA_SPORT_RANGE / FRA_DPORT_RANGE (start, end).
	Sport, Dport       [2]uint16
	HasSport, HasDport bool
	L3mdev             bool
	// SuppressPrefixlen is FRA_SUPPRESS_PREFIXLEN, -1 when absent.
	SuppressPrefixlen int
}

// DecodeRule decodes the payload of a rule message.
func DecodeRule(p []byte) (Rule, error) {
	if len(p) < sizeofFibRuleHdr {
		return Rule{}, fmt.Errorf("rule message: %d bytes, fib_rule_hdr needs %d", len(p), sizeofFibRuleHdr)
	}
	r := Rule{
		Family: p[0], DstLen: p[1], SrcLen: p[2], Tos: p[3],
		Table: int(p[4]), Action: p[7],
		Flags:             binary.NativeEndian.Uint32(p[8:12]),
		SuppressPrefixlen: -1,
	}
	ne := binary.NativeEndian
	err := nl.Attributes(p, sizeofFibRuleHdr, func(ad *nl.AttrDecoder) {
		switch ad.Type() {
		case unix.FRA_PRIORITY:
			r.Priority = int(ad.Uint32())
		case unix.FRA_TABLE:
			r.Table = int(ad.Uint32())
		case unix.FRA_SRC:
			if a := ad.Addr(); a.IsValid() {
				r.Src = netip.PrefixFrom(a, int(r.SrcLen))
			}
		case unix.FRA_DST:
			if a := ad.Addr(); a.IsValid() {
				r.Dst = netip.PrefixFrom(a, int(r.DstLen))
			}
		case unix.FRA_FWMARK:
			r.Mark, r.HasMark = ad.Uint32(), true
		case unix.FRA_FWMASK:
			r.Mask, r.HasMark, r.HasMask = ad.Uint32(), true, true
		case unix.FRA_IIFNAME:
			r.IifName = nl.CString(ad.Bytes())
		case unix.FRA_OIFNAME:
			r.OifName = nl.CString(ad.Bytes())
		case unix.FRA_GOTO:
			r.Goto = int(ad.Uint32())
		case unix.FRA_UID_RANGE:
			if d := ad.Bytes(); len(d) >= 8 {
				r.UIDStart, r.UIDEnd, r.HasUIDRange = ne.Uint32(d), ne.Uint32(d[4:]), true
			}
		case unix.FRA_IP_PROTO:
			r.IPProto, r.HasIPProto = ad.Uint8(), true
		case unix.FRA_SPORT_RANGE, unix.FRA_DPORT_RANGE:
			if d := ad.Bytes(); len(d) >= 4 {
				v := [2]uint16{ne.Uint16(d), ne.Uint16(d[2:])}
				if ad.Type() == unix.FRA_DPORT_RANGE {
					r.Dport, r.HasDport = v, true
				} else {
					r.Sport, r.HasSport = v, true
				}
			}
		case unix.FRA_L3MDEV:
			r.L3mdev = ad.Uint8() != 0
		case unix.FRA_SUPPRESS_PREFIXLEN:
			r.SuppressPrefixlen = int(ad.Int32())
		}
	})
	if err != nil {
		return r, fmt.Errorf("rule message: %w", err)
	}
	if r.HasMark && !r.HasMask {
		r.Mask = 0xffffffff
	}
	return r, nil
}

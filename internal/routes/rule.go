package routes

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl/rtnl"
)

// ruleFrom turns a decoded rule message into a Rule with its `ip rule` text.
func ruleFrom(m rtnl.Rule) Rule {
	r := Rule{
		Family:   int(m.Family),
		Priority: m.Priority,
		Table:    m.Table,
		Src:      m.Src,
		Dst:      m.Dst,
		Mark:     m.Mark,
		Mask:     m.Mask,
		HasMark:  m.HasMark,
		IifName:  m.IifName,
		OifName:  m.OifName,
		Action:   rtnl.RuleActionName(m.Action),
		Invert:   m.Flags&unix.FIB_RULE_INVERT != 0,
		Goto:     m.Goto,
	}
	if m.HasUIDRange {
		r.UIDRange = fmt.Sprintf("%d-%d", m.UIDStart, m.UIDEnd)
		r.UIDStart, r.UIDEnd, r.HasUID = m.UIDStart, m.UIDEnd, true
	}
	if m.HasIPProto {
		r.IPProto = int(m.IPProto)
	}
	r.Sport, r.HasSport, r.Dport, r.HasDport, r.Tos = m.Sport, m.HasSport, m.Dport, m.HasDport, m.Tos
	var x ruleExtras
	if m.Tos != 0 {
		x.tos = fmt.Sprintf("0x%02x", m.Tos)
	}
	if m.HasIPProto {
		x.ipproto = "ipproto " + ipProtoName(m.IPProto)
	}
	ports := func(p [2]uint16) string {
		if p[0] == p[1] {
			return strconv.Itoa(int(p[0]))
		}
		return fmt.Sprintf("%d-%d", p[0], p[1])
	}
	if m.HasSport {
		x.sport = "sport " + ports(m.Sport)
	}
	if m.HasDport {
		x.dport = "dport " + ports(m.Dport)
	}
	if m.Flags&unix.FIB_RULE_IIF_DETACHED != 0 && r.IifName != "" {
		r.IifName += " [detached]"
	}
	if m.Flags&unix.FIB_RULE_OIF_DETACHED != 0 && r.OifName != "" {
		r.OifName += " [detached]"
	}
	if m.SuppressPrefixlen >= 0 {
		x.suppress = strconv.Itoa(m.SuppressPrefixlen)
	}
	r.Text = r.render(x)
	if m.L3mdev && r.Action == "lookup" {
		r.Text = replaceLookup(r.Text, TableName(r.Table), "[l3mdev-table]")
	}
	return r
}

func replaceLookup(text, table, with string) string {
	old := " lookup " + table
	for i := len(text) - len(old); i >= 0; i-- {
		if text[i:i+len(old)] == old {
			return text[:i] + " lookup " + with + text[i+len(old):]
		}
	}
	return text
}

func ipProtoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "ipv6-icmp"
	case unix.IPPROTO_SCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

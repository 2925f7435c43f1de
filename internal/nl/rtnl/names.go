package rtnl

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ProtoSynscope is the route protocol (rtm_protocol) of routes synscope
// adds (watch's repair), so `ip route` shows them as "proto 83" (0x53, 'S')
// and an operator can delete them with `ip route flush proto 83`.
const ProtoSynscope = 0x53

var tableNames = map[int]string{
	unix.RT_TABLE_UNSPEC:  "unspec",
	unix.RT_TABLE_COMPAT:  "compat",
	unix.RT_TABLE_DEFAULT: "default",
	unix.RT_TABLE_MAIN:    "main",
	unix.RT_TABLE_LOCAL:   "local",
}

// TableName is the iproute2 name of a table id ("main", "local", or the number).
func TableName(id int) string {
	if n, ok := tableNames[id]; ok {
		return n
	}
	return strconv.Itoa(id)
}

var routeTypes = []string{
	unix.RTN_UNSPEC:      "unspec",
	unix.RTN_UNICAST:     "unicast",
	unix.RTN_LOCAL:       "local",
	unix.RTN_BROADCAST:   "broadcast",
	unix.RTN_ANYCAST:     "anycast",
	unix.RTN_MULTICAST:   "multicast",
	unix.RTN_BLACKHOLE:   "blackhole",
	unix.RTN_UNREACHABLE: "unreachable",
	unix.RTN_PROHIBIT:    "prohibit",
	unix.RTN_THROW:       "throw",
	unix.RTN_NAT:         "nat",
	unix.RTN_XRESOLVE:    "xresolve",
}

// TypeName names a route type (rtm_type) as iproute2 does.
func TypeName(t uint8) string {
	if int(t) < len(routeTypes) {
		return routeTypes[t]
	}
	return strconv.Itoa(int(t))
}

// protoNames are iproute2's rt_protos plus synscope's own.
var protoNames = map[uint8]string{
	unix.RTPROT_UNSPEC:     "unspec",
	unix.RTPROT_REDIRECT:   "redirect",
	unix.RTPROT_KERNEL:     "kernel",
	unix.RTPROT_BOOT:       "boot",
	unix.RTPROT_STATIC:     "static",
	unix.RTPROT_RA:         "ra",
	unix.RTPROT_ZEBRA:      "zebra",
	unix.RTPROT_BIRD:       "bird",
	unix.RTPROT_DHCP:       "dhcp",
	unix.RTPROT_MROUTED:    "mrouted",
	unix.RTPROT_KEEPALIVED: "keepalived",
	unix.RTPROT_BABEL:      "babel",
	unix.RTPROT_OPENR:      "openr",
	unix.RTPROT_BGP:        "bgp",
	unix.RTPROT_ISIS:       "isis",
	unix.RTPROT_OSPF:       "ospf",
	unix.RTPROT_RIP:        "rip",
	unix.RTPROT_EIGRP:      "eigrp",
	ProtoSynscope:          "synscope",
}

// ProtocolName names a route protocol (rtm_protocol) as iproute2 does,
// ProtoSynscope as "synscope", anything else by its number.
func ProtocolName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

// ScopeName names an address or route scope as iproute2 does.
func ScopeName(s uint8) string {
	switch s {
	case unix.RT_SCOPE_UNIVERSE:
		return "global"
	case unix.RT_SCOPE_SITE:
		return "site"
	case unix.RT_SCOPE_LINK:
		return "link"
	case unix.RT_SCOPE_HOST:
		return "host"
	case unix.RT_SCOPE_NOWHERE:
		return "nowhere"
	}
	return strconv.Itoa(int(s))
}

var addrFlagNames = []struct {
	bit  uint32
	name string
}{
	{unix.IFA_F_SECONDARY, "secondary"},
	{unix.IFA_F_NODAD, "nodad"},
	{unix.IFA_F_OPTIMISTIC, "optimistic"},
	{unix.IFA_F_DADFAILED, "dadfailed"},
	{unix.IFA_F_HOMEADDRESS, "home"},
	{unix.IFA_F_DEPRECATED, "deprecated"},
	{unix.IFA_F_TENTATIVE, "tentative"},
	{unix.IFA_F_PERMANENT, "permanent"},
	{unix.IFA_F_MANAGETEMPADDR, "mngtmpaddr"},
	{unix.IFA_F_NOPREFIXROUTE, "noprefixroute"},
	{unix.IFA_F_MCAUTOJOIN, "autojoin"},
	{unix.IFA_F_STABLE_PRIVACY, "stable-privacy"},
}

// AddrFlagsText lists address flags space-separated, as `ip addr` prints them.
func AddrFlagsText(f uint32) string {
	var out []string
	for _, n := range addrFlagNames {
		if f&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, " ")
}

var neighStates = []struct {
	bit  uint16
	name string
}{
	{unix.NUD_INCOMPLETE, "INCOMPLETE"},
	{unix.NUD_REACHABLE, "REACHABLE"},
	{unix.NUD_STALE, "STALE"},
	{unix.NUD_DELAY, "DELAY"},
	{unix.NUD_PROBE, "PROBE"},
	{unix.NUD_FAILED, "FAILED"},
	{unix.NUD_NOARP, "NOARP"},
	{unix.NUD_PERMANENT, "PERMANENT"},
}

// NeighStateText names a neighbour state (NUD_* bits) as `ip neigh` does:
// "NONE" for 0, the set bits' names space-separated otherwise.
func NeighStateText(s uint16) string {
	if s == 0 {
		return "NONE"
	}
	var out []string
	for _, n := range neighStates {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	if rest := s &^ (unix.NUD_INCOMPLETE | unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_FAILED | unix.NUD_NOARP | unix.NUD_PERMANENT); rest != 0 {
		out = append(out, "0x"+strconv.FormatUint(uint64(rest), 16))
	}
	return strings.Join(out, " ")
}

var ruleActions = map[uint8]string{
	unix.FR_ACT_TO_TBL:      "lookup",
	unix.FR_ACT_GOTO:        "goto",
	unix.FR_ACT_NOP:         "nop",
	unix.FR_ACT_BLACKHOLE:   "blackhole",
	unix.FR_ACT_UNREACHABLE: "unreachable",
	unix.FR_ACT_PROHIBIT:    "prohibit",
}

// RuleActionName names a rule action (fib_rule_hdr.action) as `ip rule` does.
func RuleActionName(a uint8) string {
	if n, ok := ruleActions[a]; ok {
		return n
	}
	return "action " + strconv.Itoa(int(a))
}

package routes

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/nl/rtnl"
	"golang.org/x/sys/unix"
)

// Query is the SYN-ACK route lookup of one listener for one client, with the
// inputs inet_csk_route_req / inet6_csk_route_req take from the listener and
// the SYN.
type Query struct {
	Src, Dst     netip.Addr // Src = listener's local address (the SYN's destination), Dst = client
	Sport, Dport uint16     // local port, client port
	Mark         uint32     // listener SO_MARK (or the SYN's mark with tcp_fwmark_accept=1)
	UID          uint32     // listener sk_uid
	HasUID       bool       // false: the kernel uses the caller's uid, as `ip route get` does
	Oif          int        // listener's bound device ifindex, 0 = none
	TOS          uint8
	// OifName is the name of Oif, used only to print Command. Optional:
	// Replay fills it in the Result's copy of the query; without it Command
	// prints "if<N>", which iproute2 also accepts.
	OifName string
}

// Command is the equivalent `ip route get` command line, run by ip (the
// program with any namespace prefix: netns.Target.Command("ip")), for a
// human to confirm the lookup by hand inside the namespace. For IPv6 with
// an oif the source is left out, which makes the kernel's lookup strict
// about the device as route_req's is for a device-bound listener.
func (q Query) Command(ip fixcmd.Cmd) fixcmd.Cmd {
	c := ip
	if q.Dst.Is6() && !q.Dst.Is4In6() {
		c = c.Append("-6")
	} else {
		c = c.Append("-4")
	}
	c = c.Append("route", "get", q.Dst)
	// A v6 lookup with a source and an oif is not strict about the device,
	// unlike route_req's for a device-bound listener; without the source it
	// is (see Replay).
	if q.Src.IsValid() && (q.Oif == 0 && q.OifName == "" || q.Src.Unmap().Is4()) {
		c = c.Append("from", q.Src)
	}
	if q.Oif != 0 || q.OifName != "" {
		name := q.OifName
		if name == "" {
			name = "if" + strconv.Itoa(q.Oif)
		}
		c = c.Append("oif", name)
	}
	if q.TOS != 0 {
		c = c.Append("tos", fmt.Sprintf("0x%x", q.TOS))
	}
	c = c.Append("ipproto", "tcp")
	if q.Sport != 0 {
		c = c.Append("sport", q.Sport)
	}
	if q.Dport != 0 {
		c = c.Append("dport", q.Dport)
	}
	if q.Mark != 0 {
		c = c.Append("mark", fmt.Sprintf("0x%x", q.Mark))
	}
	if q.HasUID {
		c = c.Append("uid", q.UID)
	}
	return c
}

// Result is the kernel's answer to a Query. OK is false exactly when the
// kernel's route_req would return NULL and drop the SYN.
type Result struct {
	Query   Query
	OK      bool
	Errno   syscall.Errno // EHOSTUNREACH, ENETUNREACH, EINVAL (blackhole), EACCES (prohibit), ...
	Err     string        // strerror text, "" when OK
	Type    string        // route type of the match when the kernel reports it ("unicast", "local", "unreachable", ...); "" on a plain error
	Table   int
	Gateway netip.Addr
	Dev     string
	Ifindex int
	Prefsrc netip.Addr
}

// String renders the answer on one line, like `ip route get` does, or
// "error: No route to host (-113)".
func (r Result) String() string {
	var b strings.Builder
	if r.Type != "" && r.Type != "unicast" {
		b.WriteString(r.Type + " ")
	}
	if r.Type == "" && !r.OK {
		return fmt.Sprintf("error: %s (-%d)", r.Err, int(r.Errno))
	}
	b.WriteString(r.Query.Dst.String())
	if r.Query.Src.IsValid() {
		b.WriteString(" from " + r.Query.Src.String())
	}
	if r.Gateway.IsValid() {
		b.WriteString(" via " + r.Gateway.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev " + r.Dev)
	} else if r.Ifindex != 0 {
		fmt.Fprintf(&b, " dev if%d", r.Ifindex)
	}
	if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
		b.WriteString(" table " + TableName(r.Table))
	}
	if r.Prefsrc.IsValid() {
		b.WriteString(" src " + r.Prefsrc.String())
	}
	if !r.OK {
		fmt.Fprintf(&b, ": error: %s (-%d)", r.Err, int(r.Errno))
	}
	return b.String()
}

// Route is one routing table entry. A multipath route appears once per next
// hop, each with the same Dst, so that every gateway is visible.
type Route struct {
	Family   int // unix.AF_INET or unix.AF_INET6
	Table    int
	Type     string       // unicast, local, broadcast, unreachable, blackhole, prohibit, throw, ...
	Dst      netip.Prefix // zero Prefix = default route
	Gateway  netip.Addr
	Dev      string
	Ifindex  int
	Protocol string // kernel, boot, static, dhcp, ra, ...
	Metric   int
	Src      netip.Addr // preferred source
	// HasExpiry is set for routes with a lifetime (RA-learned); Expires is
	// what was left of it when the route was read. The kernel keeps
	// listing an expired route (Expires <= 0) until its garbage collector
	// runs, while lookups already skip it, and sends no notification.
	HasExpiry bool
	Expires   time.Duration
	// Linkdown: the kernel flagged this next hop RTNH_F_LINKDOWN (its
	// device has no carrier); lookups skip it only where
	// ignore_routes_with_linkdown is set.
	Linkdown bool
}

// Expired reports whether the route has a lifetime that ran out: the kernel
// still lists it and lookups skip it. (Whether a route carries traffic is
// rtnl.Usable, the one definition.)
func (r Route) Expired() bool { return r.HasExpiry && r.Expires <= 0 }

// IsDefault reports whether r is a default route (0.0.0.0/0 or ::/0).
func (r Route) IsDefault() bool { return !r.Dst.IsValid() || r.Dst.Bits() == 0 }

// String renders the route like `ip route show table all` does.
func (r Route) String() string {
	var b strings.Builder
	if r.Type != "" && r.Type != "unicast" {
		b.WriteString(r.Type + " ")
	}
	if r.IsDefault() {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gateway.IsValid() {
		b.WriteString(" via " + r.Gateway.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev " + r.Dev)
	}
	if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
		b.WriteString(" table " + TableName(r.Table))
	}
	if r.Protocol != "" && r.Protocol != "boot" {
		b.WriteString(" proto " + r.Protocol)
	}
	if r.Src.IsValid() {
		b.WriteString(" src " + r.Src.String())
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	return b.String()
}

// Rule is one policy routing rule.
type Rule struct {
	Family     int
	Priority   int
	Table      int
	Src, Dst   netip.Prefix // zero = all
	Mark, Mask uint32
	HasMark    bool
	UIDRange   string // "1000-1000", "" = any
	IifName    string
	OifName    string
	Action     string // lookup, goto, nop, unreachable, blackhole, prohibit
	Invert     bool   // "not": the selector is negated
	Goto       int    // target priority of a goto rule
	Text       string // like `ip rule` prints it, without the tab after the priority
	// Selectors Text shows that the fields above do not: ipproto, port
	// ranges (inclusive), uid range and tos, for a caller replaying a
	// lookup with a full tuple (probe).
	IPProto            int // 0 = any
	Sport, Dport       [2]uint16
	HasSport, HasDport bool
	UIDStart, UIDEnd   uint32
	HasUID             bool
	Tos                uint8
}

// ruleExtras are selectors `ip rule` shows that Rule has no field for.
type ruleExtras struct {
	tos, ipproto, sport, dport, suppress string
}

// render builds Text in iproute2's order (ip/iprule.c print_rule).
func (r Rule) render(x ruleExtras) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d: ", r.Priority)
	if r.Invert {
		b.WriteString("not ")
	}
	if r.Src.IsValid() {
		b.WriteString("from " + prefixText(r.Src))
	} else {
		b.WriteString("from all")
	}
	if r.Dst.IsValid() {
		b.WriteString(" to " + prefixText(r.Dst))
	}
	if x.tos != "" {
		b.WriteString(" tos " + x.tos)
	}
	if r.HasMark {
		if r.Mask == 0xffffffff {
			fmt.Fprintf(&b, " fwmark 0x%x", r.Mark)
		} else {
			fmt.Fprintf(&b, " fwmark 0x%x/0x%x", r.Mark, r.Mask)
		}
	}
	if r.IifName != "" {
		b.WriteString(" iif " + r.IifName)
	}
	if r.OifName != "" {
		b.WriteString(" oif " + r.OifName)
	}
	if r.UIDRange != "" {
		b.WriteString(" uidrange " + r.UIDRange)
	}
	for _, e := range []string{x.ipproto, x.sport, x.dport} {
		if e != "" {
			b.WriteString(" " + e)
		}
	}
	switch r.Action {
	case "lookup":
		b.WriteString(" lookup " + TableName(r.Table))
	case "goto":
		fmt.Fprintf(&b, " goto %d", r.Goto)
	default:
		b.WriteString(" " + r.Action)
	}
	if x.suppress != "" {
		b.WriteString(" suppress_prefixlength " + x.suppress)
	}
	return b.String()
}

// prefixText prints a host prefix without its length, as iproute2 does.
func prefixText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// Link is a network interface.
type Link struct {
	Index        int
	Name         string
	Up           bool // IFF_UP (administratively up)
	HardwareAddr net.HardwareAddr
	Kind         string // veth, bridge, vrf, ... ("" for physical devices)
	Master       int    // ifindex of the master (bridge, bond, vrf), 0 = none
	// CarrierChanges counts carrier up/down transitions since the device
	// was created (IFLA_CARRIER_CHANGES); admin down/up counts too.
	CarrierChanges uint32
}

// Addr is an interface address; Prefix holds the local address with the
// connected prefix length.
type Addr struct {
	Ifindex int
	Prefix  netip.Prefix
	Scope   string // global, site, link, host, nowhere
	Flags   string // space-separated, as `ip addr` prints them (permanent, tentative, dadfailed, ...)
	// Age is how long ago the kernel created the address (IFA_CACHEINFO
	// cstamp), zero when unknown. An interface reset re-creates its IPv6
	// addresses, so a young link-local address dates the last reset.
	Age time.Duration
}

// Neighbor is an ARP / NDP cache entry.
type Neighbor struct {
	Ifindex int
	Dev     string
	IP      netip.Addr
	LLAddr  net.HardwareAddr
	State   string // REACHABLE, STALE, DELAY, PROBE, FAILED, INCOMPLETE, PERMANENT, NOARP, NONE
	Router  bool   // NTF_ROUTER: the neighbour said it is a router (IPv6 NA R flag)
}

// State is the routing state of one namespace.
type State struct {
	Routes    []Route
	Rules     []Rule
	Links     []Link
	Addrs     []Addr
	Neighbors []Neighbor
}

// TableName is the iproute2 name of a table id ("main", "local", or the number).
func TableName(id int) string { return rtnl.TableName(id) }

// errnoText is strerror without the Go-specific lower-case form, so that the
// text matches what `ip route get` prints ("No route to host").
func errnoText(e syscall.Errno) string {
	s := e.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

package watch

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl/rtnl"
)

// ProtoSynscope is the route protocol (rtm_protocol) of routes the repair
// adds, so `ip route` shows them as "proto 83" (0x53, 'S') and an operator
// can tell them apart and delete them with `ip route flush proto 83`.
const ProtoSynscope = rtnl.ProtoSynscope

// Route is one default route as the kernel announced it.
type Route struct {
	Family   int // 4 or 6
	Table    int
	Type     uint8
	Protocol uint8
	Scope    uint8
	Tos      uint8
	Flags    uint32 // rtm_flags | first nexthop's flags (RTNH_F_*)
	Gateway  netip.Addr
	Ifindex  int
	Dev      string // filled from the link table; hostile, never printed raw
	Metric   uint32
	PrefSrc  netip.Addr
	Pref     uint8
	NHID     uint32
	// Multipath is set for RTA_MULTIPATH routes (Gateway/Ifindex are the
	// first hop's).
	Multipath bool
	// HasExpiry is set for routes with a lifetime (RA-learned); ExpiresAt
	// is the instant the kernel stops using it.
	HasExpiry bool
	ExpiresAt time.Time
}

// key identifies a route across notifications (what the kernel matches a
// deletion on, plus the hop).
type key struct {
	fam, table int
	metric     uint32
	tos        uint8
	gw         netip.Addr
	ifindex    int
	nhid       uint32
}

func (r Route) key() key {
	return key{r.Family, r.Table, r.Metric, r.Tos, r.Gateway, r.Ifindex, r.NHID}
}

// famTable is a (family, table) pair: the unit of presence.
type famTable struct {
	fam, table int
}

// FamilyName is "ipv4" or "ipv6", as the rest of synscope says it.
func FamilyName(fam int) string {
	if fam == 6 {
		return "ipv6"
	}
	return "ipv4"
}

// TableName is the name `ip route` shows ("main" or the number).
func TableName(t int) string { return rtnl.TableName(t) }

// ProtoName names a route protocol as iproute2 does (the number otherwise);
// ProtoSynscope is "synscope".
func ProtoName(p uint8) string { return rtnl.ProtocolName(p) }

// unicast route types that carry traffic.
const rtnUnicast = unix.RTN_UNICAST

// rtnh flags that make the kernel skip a hop.
const (
	rtnhDead     = unix.RTNH_F_DEAD
	rtnhLinkdown = unix.RTNH_F_LINKDOWN
)

// Usable reports whether the kernel would use the route now: a unicast
// route, not expired, its hop not dead, and not link-down where the
// namespace ignores link-down routes.
func (r Route) Usable(now time.Time, ignoreLinkdown bool) bool {
	return rtnl.Usable(r.Type, r.HasExpiry && !now.Before(r.ExpiresAt), r.Flags, ignoreLinkdown)
}

// Remaining is the lifetime left (0 when the route has no expiry).
func (r Route) Remaining(now time.Time) time.Duration {
	if !r.HasExpiry {
		return 0
	}
	d := r.ExpiresAt.Sub(now)
	if d < 0 {
		return 0
	}
	return d
}

// String is an `ip route`-like rendering (the device name is escaped by
// the caller's encoder or with %q, never printed raw).
func (r Route) String() string {
	s := "default"
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	if r.Dev != "" {
		s += fmt.Sprintf(" dev %q", r.Dev)
	} else if r.Ifindex != 0 {
		s += fmt.Sprintf(" dev #%d", r.Ifindex)
	}
	s += " proto " + ProtoName(r.Protocol)
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	if r.Table != 254 {
		s += " table " + TableName(r.Table)
	}
	return s
}

// routeSet holds the default routes of one namespace.
type routeSet map[key]Route

// present lists, per (family, table), whether any usable route exists.
func (s routeSet) present(now time.Time, ignoreLinkdown func(fam, ifindex int) bool) map[famTable]bool {
	out := map[famTable]bool{}
	for _, r := range s {
		ft := famTable{r.Family, r.Table}
		if r.Usable(now, ignoreLinkdown(r.Family, r.Ifindex)) {
			out[ft] = true
		} else if !out[ft] {
			out[ft] = false
		}
	}
	return out
}

// judged remembers the routes last judged usable, so a route that stops
// being usable in place (expired, dead hop) is a loss exactly once.
type judged map[key]Route

// reconcile compares the current set with what was judged usable before:
// routes gone or no longer usable (with their last usable attributes) and
// routes that became usable. It updates j. Results are sorted.
func (j judged) reconcile(cur routeSet, now time.Time, ignoreLinkdown func(fam, ifindex int) bool) (lost, added []Route) {
	for k, o := range j {
		c, ok := cur[k]
		if !ok || !c.Usable(now, ignoreLinkdown(c.Family, c.Ifindex)) {
			lost = append(lost, o)
			delete(j, k)
		}
	}
	for k, c := range cur {
		if !c.Usable(now, ignoreLinkdown(c.Family, c.Ifindex)) {
			continue
		}
		if _, ok := j[k]; !ok {
			added = append(added, c)
		}
		j[k] = c
	}
	sortRoutes(lost)
	sortRoutes(added)
	return lost, added
}

func sortRoutes(rs []Route) {
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.Family != b.Family {
			return a.Family < b.Family
		}
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		return a.Metric < b.Metric
	})
}

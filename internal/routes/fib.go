package routes

import (
	"net/netip"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
)

// The policy-routing model doctor explains failed lookups with: which
// rules a SYN-ACK's lookup meets, which tables it searches, which route in
// them ends it. Replay asks the kernel for the verdict; this says why.

// SortedRules returns the policy rules of a family (AF_INET or AF_INET6)
// in the order the kernel tries them.
func (s *State) SortedRules(family int) []Rule {
	var out []Rule
	for _, r := range s.Rules {
		if r.Family == family {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	return out
}

// Matches tells whether a policy rule selects q's lookup as route_req
// makes it: there is no input interface, so a rule with one never
// matches; oif and uid ranges are matched loosely.
func (r Rule) Matches(q Query) bool {
	if r.Src.IsValid() && r.Src.Bits() > 0 && !r.Src.Contains(q.Src) {
		return false
	}
	if r.Dst.IsValid() && r.Dst.Bits() > 0 && !r.Dst.Contains(q.Dst) {
		return false
	}
	if r.HasMark {
		mask := r.Mask
		if mask == 0 {
			mask = 0xffffffff
		}
		if q.Mark&mask != r.Mark {
			return false
		}
	}
	return r.IifName == ""
}

// Covers reports whether the route's destination contains a.
func (r Route) Covers(a netip.Addr) bool {
	if r.Family != 0 && r.Family != familyOf(a) {
		return false
	}
	if !r.Dst.IsValid() || r.Dst.Bits() == 0 {
		return r.Dst.Addr().Is4() == a.Is4() || !r.Dst.IsValid()
	}
	return r.Dst.Contains(a)
}

// TableCovers reports whether table tbl of a family has a route for a.
func (s *State) TableCovers(family, tbl int, a netip.Addr) bool {
	for _, rt := range s.Routes {
		if rt.Family == family && rt.Table == tbl && rt.Covers(a) {
			return true
		}
	}
	return false
}

// LookupTables lists the tables q's lookup searches: those of the lookup
// rules that match it, or main.
func (s *State) LookupTables(q Query) map[int]bool {
	out := map[int]bool{}
	for _, ru := range s.SortedRules(familyOf(q.Dst)) {
		if ru.Matches(q) && (ru.Action == "lookup" || ru.Action == "") {
			out[ru.Table] = true
		}
	}
	if len(out) == 0 {
		out[unix.RT_TABLE_MAIN] = true
	}
	return out
}

// RuleTo finds the policy rule that sends q's lookup to a table other
// than main, local or default.
func (s *State) RuleTo(q Query, table int) (Rule, bool) {
	if table == 0 || table == unix.RT_TABLE_MAIN || table == unix.RT_TABLE_LOCAL || table == unix.RT_TABLE_DEFAULT {
		return Rule{}, false
	}
	for _, ru := range s.SortedRules(familyOf(q.Dst)) {
		if ru.Table == table && ru.Matches(q) {
			return ru, true
		}
	}
	return Rule{}, false
}

// FailingRouteFor finds the most specific route of a failing type (the
// catalog's: unreachable, blackhole, prohibit, throw) in tables that
// covers peer.
func (s *State) FailingRouteFor(peer netip.Addr, tables map[int]bool) (Route, bool) {
	var best Route
	found := false
	for _, rt := range s.Routes {
		if !tables[rt.Table] && !(rt.Table == 0 && tables[unix.RT_TABLE_MAIN]) {
			continue
		}
		if _, fails := causes.RouteTypeErrno(rt.Type); !fails || !rt.Covers(peer) {
			continue
		}
		if !found || rt.Dst.Bits() > best.Dst.Bits() {
			best, found = rt, true
		}
	}
	return best, found
}

func familyOf(a netip.Addr) int {
	if a.Unmap().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

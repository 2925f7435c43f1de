package probe

import (
	"fmt"
	"net/netip"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/routes"
)

// flowTuple is the probe's SYN as the local route lookup sees it: locally
// generated (input interface lo), no output device bound.
type flowTuple struct {
	src, dst netip.Addr
	dport    uint16
	mark     uint32
	uid      uint32
}

// ruleSelects tells whether policy rule r selects the tuple, as
// fib_rule_match does for a locally generated TCP flow: a source-port
// selector is not decided (the port is ephemeral) and reported as not
// matching, so a rule is only named when it matched for certain.
func ruleSelects(r routes.Rule, f flowTuple) bool {
	m := true
	switch {
	case r.Src.IsValid() && r.Src.Bits() > 0 && !r.Src.Contains(f.src):
		m = false
	case r.Dst.IsValid() && r.Dst.Bits() > 0 && !r.Dst.Contains(f.dst):
		m = false
	case r.HasMark && f.mark&maskOf(r) != r.Mark:
		m = false
	case r.IifName != "" && r.IifName != "lo":
		m = false
	case r.OifName != "":
		m = false
	case r.IPProto != 0 && r.IPProto != 6:
		m = false
	case r.HasDport && (f.dport < r.Dport[0] || f.dport > r.Dport[1]):
		m = false
	case r.HasUID && (f.uid < r.UIDStart || f.uid > r.UIDEnd):
		m = false
	case r.Tos != 0:
		m = false
	case r.HasSport:
		return false
	}
	if r.Invert {
		return !m
	}
	return m
}

func maskOf(r routes.Rule) uint32 {
	if r.Mask == 0 {
		return 0xffffffff
	}
	return r.Mask
}

// findBlocker walks the policy rules as the kernel does for the tuple and
// names what ended the lookup with an error: a rule whose action is
// prohibit, blackhole or unreachable, or a route of such a type in the
// table a matching rule looked up (pure). ok is false when the walk does
// not end in one (a table without a route for the destination, a rule
// selector that could not be decided).
func findBlocker(st *routes.State, family int, f flowTuple) (Blocker, bool) {
	rules := st.SortedRules(family)
	gotoPrio := -1
	for i := 0; i < len(rules); i++ {
		r := rules[i]
		if gotoPrio >= 0 && r.Priority < gotoPrio {
			continue
		}
		gotoPrio = -1
		if !ruleSelects(r, f) {
			continue
		}
		switch r.Action {
		case "prohibit", "blackhole", "unreachable":
			return Blocker{Kind: "rule", Priority: r.Priority, Rule: r.Text, Action: r.Action}, true
		case "goto":
			gotoPrio = r.Goto
			continue
		case "nop":
			continue
		case "lookup", "":
			rt, found := bestRoute(st, family, r.Table, f.dst)
			if !found || rt.Type == "throw" {
				continue
			}
			if _, fails := causes.RouteTypeErrno(rt.Type); fails {
				return Blocker{Kind: "route", Priority: r.Priority, Rule: r.Text, Action: r.Action,
					Table: rt.Table, TableName: routes.TableName(rt.Table), Route: routeText(rt), RouteType: rt.Type, routeDst: routeDst(rt)}, true
			}
			return Blocker{}, false // a usable route: not blocked by a rule or route
		}
	}
	return Blocker{}, false
}

// bestRoute is the most specific route of table tbl covering a.
func bestRoute(st *routes.State, family, tbl int, a netip.Addr) (routes.Route, bool) {
	var best routes.Route
	found := false
	for _, rt := range st.Routes {
		if rt.Family != family || rt.Table != tbl || !rt.Covers(a) {
			continue
		}
		if !found || rt.Dst.Bits() > best.Dst.Bits() {
			best, found = rt, true
		}
	}
	return best, found
}

func routeDst(rt routes.Route) string {
	if rt.Dst.IsValid() && rt.Dst.Bits() > 0 {
		return rt.Dst.String()
	}
	return "default"
}

func routeText(rt routes.Route) string {
	return fmt.Sprintf("%s %s table %s", rt.Type, routeDst(rt), routes.TableName(rt.Table))
}

// fix is the command that removes the blocker, run by ip (the program with
// any namespace prefix).
func (b Blocker) fix(ip fixcmd.Cmd, v6 bool) fixcmd.Cmd {
	fam := "-4"
	if v6 {
		fam = "-6"
	}
	if b.Kind == "rule" {
		return ip.Append(fam, "rule", "del", "priority", b.Priority)
	}
	return ip.Append(fam, "route", "del", b.RouteType, b.routeDst, "table", b.Table)
}

package doctor

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/netmgr"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sysctl"
)

// no-route-to-peer: the SYN-ACK has no route back.

func ruleNoRoute(e *Evidence) []report.Finding {
	ld := e.delta("TcpExtListenDrops")
	nr4, nr6 := e.delta("IpOutNoRoutes"), e.delta("Ip6OutNoRoutes")
	var failed []Replay
	for _, r := range e.Replays {
		if !r.Result.OK && !e.ipv6DisabledFor(r.Peer) {
			failed = append(failed, r)
		}
	}
	att := e.attributed()
	if len(failed) == 0 {
		if n := int64(att.ByCause[causes.NoRouteToPeer]); n > 0 {
			return []report.Finding{{
				Cause:      causes.NoRouteToPeer,
				Severity:   report.Critical,
				Confidence: report.Likely,
				Why:        "ListenDrops and OutNoRoutes rose together, which only a failed SYN-ACK route lookup does; no client was seen to replay the lookup for",
				Summary:    fmt.Sprintf("%d SYNs dropped because the SYN-ACK had no route back; run with --peer <client> to name the route that fails", n),
				Evidence:   counterEv(e, "TcpExtListenDrops", "IpOutNoRoutes", "Ip6OutNoRoutes"),
				Fix: fixcmd.Of(e.synscopeCmd("doctor", "--peer", fixcmd.Hole("client-address"))).
					Note("names the route lookup that fails; then add the missing route").String(),
				Drops: n,
			}}
		}
		return nil
	}
	// The catalog's share of the window's drops goes to the first group
	// whose counters moved; a typed IPv6 route's drops move ListenDrops
	// only, so such a group claims the share no counter names too
	// (ruleUnexplained then leaves it).
	share := int64(att.ByCause[causes.NoRouteToPeer])
	// Group by explanation so one missing default route gives one finding.
	type group struct {
		expl    explanation
		replays []Replay
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, r := range failed {
		x := e.explainNoRoute(r, failed)
		g := byKey[x.key]
		if g == nil {
			g = &group{expl: x}
			byKey[x.key] = g
			groups = append(groups, g)
		}
		g.replays = append(g.replays, r)
	}
	var out []report.Finding
	for _, g := range groups {
		fam := famOf(g.replays[0].Peer.Addr)
		noRoutes := nr4
		nrName := "IpOutNoRoutes"
		if fam == 6 {
			noRoutes, nrName = nr6, "Ip6OutNoRoutes"
		}
		var peers, listeners []string
		captured := false
		ev := counterEv(e, "TcpExtListenDrops", nrName)
		for i, r := range g.replays {
			peers = append(peers, r.Peer.Addr.String())
			if r.Listener != nil {
				listeners = append(listeners, e.listenerName(r.Listener))
			}
			if r.Peer.Flow != nil {
				captured = true
			}
			if i < 4 {
				ev = append(ev, report.Evidence{
					Source: "route-replay",
					Text: fmt.Sprintf("SYN-ACK route lookup from %s port %d to %s port %d (mark %#x, uid %d): %s  [by hand: %s]",
						r.Result.Query.Src, r.Result.Query.Sport, r.Result.Query.Dst, r.Result.Query.Dport,
						r.Result.Query.Mark, r.Result.Query.UID, r.Result.Err, e.byHand(r.Result.Query)),
					Data: map[string]any{
						"src": r.Result.Query.Src.String(), "sport": r.Result.Query.Sport,
						"dst": r.Result.Query.Dst.String(), "dport": r.Result.Query.Dport,
						"mark": r.Result.Query.Mark, "uid": r.Result.Query.UID, "oif": r.Result.Query.Oif,
						"errno": int(r.Result.Errno), "error": r.Result.Err, "peer_source": string(r.Peer.Source),
					},
				})
			}
			if r.Peer.Flow != nil && i < 4 {
				ev = append(ev, report.Evidence{Source: "capture", Text: fmt.Sprintf("%d SYNs in %d connection attempts from %s to %s, none answered (first: %s)",
					r.Peer.SYNs, r.Peer.Flows, r.Peer.Addr, r.Peer.Flow.Server, flowText(*r.Peer.Flow)),
					Data: map[string]any{"client": r.Peer.Addr.String(), "server": r.Peer.Flow.Server.String(), "syns": r.Peer.SYNs, "attempts": r.Peer.Flows}})
			}
		}
		ev = append(ev, g.expl.evidence...)
		peers, listeners = uniq(peers), uniq(listeners)
		f := report.Finding{
			Cause:     causes.NoRouteToPeer,
			Evidence:  ev,
			Fix:       g.expl.fix.String(),
			Peers:     peers,
			Listeners: listeners,
		}
		moving := ld > 0 && (noRoutes > 0 || g.expl.typedV6)
		if moving {
			f.Drops, share = share, 0
			if g.expl.typedV6 {
				f.Drops += int64(att.ByCause[causes.UnexplainedDrops])
				att.ByCause[causes.UnexplainedDrops] = 0
			}
		}
		switch {
		case captured && moving:
			f.Severity, f.Confidence = report.Critical, report.Confirmed
			f.Why = "the client's SYNs arrived and got no SYN-ACK, the replayed SYN-ACK route lookup fails, and ListenDrops/" + nrName + " rose in the window"
		case moving:
			f.Severity, f.Confidence = report.Critical, report.Likely
			f.Why = "the replayed lookup fails and ListenDrops/" + nrName + " rose, but no SYN from these peers was captured in the window"
		case captured && !e.checked(sourceCounters):
			f.Severity, f.Confidence = report.Critical, report.Likely
			f.Why = "SYNs arrived unanswered and the replayed lookup fails; the drop counters were not read"
		case captured:
			f.Severity, f.Confidence = report.Critical, report.Likely
			f.Why = "SYNs arrived unanswered and the replayed lookup fails; the drop counters did not move in the window"
		default:
			f.Severity, f.Confidence = report.Warning, report.Possible
			f.Why = "the replayed lookup fails, so a SYN from these peers would be dropped; none was seen in the window"
		}
		f.Summary = fmt.Sprintf("SYNs from %s are dropped: %s", strings.Join(limit(peers, 3), ", "), g.expl.summary)
		out = append(out, f)
	}
	return out
}

func limit(ss []string, n int) []string {
	if len(ss) <= n {
		return ss
	}
	return append(ss[:n:n], fmt.Sprintf("%d more", len(ss)-n))
}

type explanation struct {
	key      string
	summary  string
	fix      *fixcmd.Script
	evidence []report.Evidence
	typedV6  bool // v6 typed routes move ListenDrops only, not OutNoRoutes
}

// explainNoRoute finds why the lookup for r fails: a typed route, a policy
// rule, a missing default route; and prints the command that fixes it.
func (e *Evidence) explainNoRoute(r Replay, all []Replay) explanation {
	peer := r.Peer.Addr
	fam := famOf(peer)
	ipc := e.ip(fam)
	st := e.Routes
	if st == nil {
		return explanation{key: "unknown", summary: "the kernel has no route for the SYN-ACK",
			fix: fixcmd.Of(ipc.Append("route", "add", fixcmd.Hole("client-prefix"), "via", fixcmd.Hole("gateway"), "dev", fixcmd.Hole("device")))}
	}
	// 1. A typed route covering the peer.
	q := r.Result.Query
	if rt, ok := st.FailingRouteFor(peer, st.LookupTables(q)); ok {
		tbl, tblArgs := "", []any{}
		if rt.Table != 0 && rt.Table != unix.RT_TABLE_MAIN {
			tbl, tblArgs = fmt.Sprintf(" table %d", rt.Table), []any{"table", rt.Table}
		}
		x := explanation{
			key:     fmt.Sprintf("typed:%d:%s", rt.Table, dstString(rt.Dst)),
			summary: fmt.Sprintf("the %s route %q%s makes the SYN-ACK route lookup fail", rt.Type, dstString(rt.Dst), tbl),
			fix:     fixcmd.Of(ipc.Append("route", "del", rt.Type, dstString(rt.Dst)).Append(tblArgs...)),
			evidence: []report.Evidence{{Source: "routes",
				Text: fmt.Sprintf("route %s %s%s matches the client", rt.Type, dstString(rt.Dst), tbl)}},
			typedV6: fam == 6,
		}
		if ru, ok := st.RuleTo(q, rt.Table); ok {
			how := fmt.Sprintf("policy rule %q", ru.Text)
			if ru.HasMark && q.Mark != 0 {
				how = fmt.Sprintf("the listener's SO_MARK %#x matches policy rule %q", q.Mark, ru.Text)
			}
			x.summary = fmt.Sprintf("%s sends the SYN-ACK's route lookup to table %d, where the %s route %q fails it", how, rt.Table, rt.Type, dstString(rt.Dst))
			x.evidence = append(x.evidence, report.Evidence{Source: "rules", Text: fmt.Sprintf("rule %d: %s", ru.Priority, ru.Text)})
			x.fix.Alt("or, if the rule is wrong", ipc.Append("rule", "del").Append(ruleSpec(ru)...))
		}
		return x
	}
	// 2. A policy rule that matches the SYN-ACK: a non-lookup action, or a
	// lookup in a table that has no route for the peer before main is
	// reached.
	for _, ru := range st.SortedRules(af(fam)) {
		if !ru.Matches(q) {
			continue
		}
		switch ru.Action {
		case "unreachable", "blackhole", "prohibit":
			return explanation{
				key:     "rule:" + ru.Text,
				summary: fmt.Sprintf("policy rule %q answers the SYN-ACK's lookup with %s", ru.Text, ru.Action),
				fix:     fixcmd.Of(ipc.Append("rule", "del").Append(ruleSpec(ru)...)),
				evidence: []report.Evidence{{Source: "rules",
					Text: fmt.Sprintf("rule %d: %s", ru.Priority, ru.Text)}},
			}
		case "lookup", "":
			if ru.Table == unix.RT_TABLE_LOCAL {
				continue
			}
			if st.TableCovers(af(fam), ru.Table, peer) {
				// The lookup ends here (successfully or not), further
				// rules do not matter.
				if ru.Table == unix.RT_TABLE_MAIN || ru.Table == unix.RT_TABLE_DEFAULT {
					break
				}
				return e.noDefault(r, all, ru.Table, &ru)
			}
			if ru.Table != unix.RT_TABLE_MAIN && ru.Table != unix.RT_TABLE_DEFAULT && (ru.HasMark || ru.Src.IsValid()) {
				// Keep looking, but remember: a table made for these
				// packets that cannot reach the peer is the likely intent.
				if !st.TableCovers(af(fam), unix.RT_TABLE_MAIN, peer) && !st.TableCovers(af(fam), unix.RT_TABLE_DEFAULT, peer) {
					return e.noDefault(r, all, ru.Table, &ru)
				}
			}
		}
	}
	// 3. Nothing in main covers the peer: the default route is missing.
	return e.noDefault(r, all, unix.RT_TABLE_MAIN, nil)
}

// noDefault explains a missing route (in table tbl) and prints the add
// command with an inferred gateway.
func (e *Evidence) noDefault(r Replay, all []Replay, tbl int, via *routes.Rule) explanation {
	peer := r.Peer.Addr
	fam := famOf(peer)
	ipc := e.ip(fam)
	famName := "IPv4"
	if fam == 6 {
		famName = "IPv6"
	}
	dev := ""
	if r.Listener != nil && r.Listener.Ifindex != 0 {
		dev = e.linkName(int(r.Listener.Ifindex))
	}
	var macs []net.HardwareAddr
	for _, x := range all {
		if x.Peer.Flow == nil || famOf(x.Peer.Addr) != fam {
			continue
		}
		if len(x.Peer.Flow.ClientMAC) > 0 {
			macs = append(macs, x.Peer.Flow.ClientMAC)
		}
		if dev == "" && x.Peer.Flow.Ifindex != 0 {
			dev = e.linkName(x.Peer.Flow.Ifindex)
		}
	}
	if dev == "" {
		dev = e.devForSource(r.Result.Query.Src)
	}
	tblName, tblArgs := "main", []any{}
	if tbl != unix.RT_TABLE_MAIN {
		tblName, tblArgs = fmt.Sprintf("%d", tbl), []any{"table", tbl}
	}
	var ev []report.Evidence
	if via != nil {
		ev = append(ev, report.Evidence{Source: "rules", Text: fmt.Sprintf("rule %d: %s sends the SYN-ACK's lookup to table %s", via.Priority, via.Text, tblName)})
	}
	defaults, expired := e.usableDefaults(fam, tbl)
	summary := fmt.Sprintf("table %s has no route to them", tblName)
	acceptRA2 := false
	if len(defaults) == 0 {
		summary = fmt.Sprintf("there is no %s default route in table %s, so the SYN-ACK cannot be routed", famName, tblName)
		ev = append(ev, report.Evidence{Source: "routes", Text: fmt.Sprintf("no %s default route in table %s; the clients are not on a connected prefix", famName, tblName)})
		why, reason, ra2 := e.whyNoDefault(fam, tbl, dev, expired)
		ev = append(ev, why...)
		acceptRA2 = ra2
		if reason != "" && reason != "unknown" {
			summary += " (" + reason + ")"
		}
	}
	if via != nil {
		summary = fmt.Sprintf("policy rule %q sends the SYN-ACK to table %s, which has no route to them", via.Text, tblName)
	}
	g := e.Routes.InferGateway(af(fam), dev, macs)
	var gw, on any = fixcmd.Hole("gateway"), fixcmd.Hole("device")
	if g.OK {
		gw = g.Gateway
		if g.Dev != "" {
			dev = g.Dev
		}
		ev = append(ev, report.Evidence{Source: "neighbours", Text: "gateway inferred: " + g.How})
	} else {
		ev = append(ev, report.Evidence{Source: "neighbours", Text: "gateway could not be inferred: " + g.How})
	}
	if dev != "" {
		on = dev
	}
	owner, ownerKnown := e.ownerOf(dev)
	if d := owner.Describe(dev); d != "" {
		ev = append(ev, report.Evidence{Source: sourceManagers, Text: d + ": " + owner.How,
			Data: map[string]any{"manager": owner.Name, "manages": owner.Manages, "state": owner.State}})
	} else if ownerKnown && dev != "" {
		ev = append(ev, report.Evidence{Source: sourceManagers, Text: "no network manager runs for " + dev})
	}
	fix := &fixcmd.Script{}
	if acceptRA2 {
		fix.Run(e.sysctlCmd(sysctl.ConfName("ipv6", dev, "accept_ra"), 2))
		fix.Note("the next router advertisement restores the route; to restore it now:")
	}
	// An expired route is still listed (route-loss.md 1.2): `route add`
	// of a default route at its metric fails with "File exists", while
	// `route replace` takes its place.
	verb := "add"
	if len(defaults) == 0 && len(expired) > 0 {
		verb = "replace"
	}
	ipFix := ipc.Append("route", verb, "default", "via", gw, "dev", on).Append(tblArgs...)
	// The owner's own command is preferred where it reaches the owner: in
	// the caller's own namespace. From outside, networkctl and nmcli would
	// ask the caller's manager (its bus) about an ifindex of another
	// namespace, so there it is named, not run.
	c, ok := owner.FixCmd(dev)
	switch {
	case !ok || !owner.Acts() || tbl != unix.RT_TABLE_MAIN:
		fix.Run(ipFix)
	case e.Target == nil || e.Target.Current:
		fix.Notef("%s: ask it to put its configuration back; the ip command runs if it cannot be asked", owner.Describe(dev))
		fix.RunOr(c, ipFix)
	default:
		fix.Alt(owner.Describe(dev)+"; where "+owner.Name+" can be asked (inside that system), prefer", c)
		fix.Run(ipFix)
	}
	return explanation{key: fmt.Sprintf("default:%d:%d", fam, tbl), summary: summary, fix: fix, evidence: ev}
}

func (e *Evidence) devForSource(src netip.Addr) string {
	if e.Routes == nil {
		return ""
	}
	for _, a := range e.Routes.Addrs {
		if a.Prefix.Addr() == src {
			return e.Routes.LinkName(a.Ifindex)
		}
	}
	return ""
}

// dstString renders a route destination the way ip does.
func dstString(p netip.Prefix) string {
	if !p.IsValid() || p.Bits() == 0 {
		return "default"
	}
	return p.String()
}

// ruleSpec is the selector of a rule for `ip rule del`, as words.
func ruleSpec(ru routes.Rule) []any {
	words := []any{"priority", ru.Priority}
	if ru.Src.IsValid() && ru.Src.Bits() > 0 {
		words = append(words, "from", ru.Src)
	}
	if ru.Dst.IsValid() && ru.Dst.Bits() > 0 {
		words = append(words, "to", ru.Dst)
	}
	if ru.HasMark {
		words = append(words, "fwmark", fmt.Sprintf("%#x", ru.Mark))
	}
	return words
}

// ownerOf is the network manager owning dev, and whether the managers
// were read at all.
func (e *Evidence) ownerOf(dev string) (netmgr.Owner, bool) {
	if e.Managers == nil || e.Routes == nil || dev == "" {
		return netmgr.Owner{}, e.Managers != nil
	}
	for _, l := range e.Routes.Links {
		if l.Name == dev {
			return e.Managers[l.Index], true
		}
	}
	return netmgr.Owner{}, true
}

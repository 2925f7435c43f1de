package doctor

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sockets"
	"github.com/synscope/synscope/internal/sysctl"
)

// rule turns evidence into zero or more findings for one cause.
type rule func(e *Evidence) []report.Finding

// rules lists every detection, in no particular order: findings are ranked
// after. Each rule reads evidence only; none does I/O.
var rules = []rule{
	ruleNoRoute,
	ruleAcceptQueue,
	ruleSynQueue,
	ruleSynCookies,
	ruleBacklogCapped,
	ruleFirewall,
	ruleRPFilter,
	ruleNoListener,
	ruleNeighbor,
	ruleConntrack,
	ruleIPv6Disabled,
	ruleTCPReject,
	ruleDefaultRouteAtRisk,
	ruleSynackUnanswered,
	ruleSynackEgress,
	rulePAWS,
}

// Diagnose turns the evidence into findings (unsorted). It is a pure
// function so every rule can be tested on recorded evidence.
func Diagnose(e *Evidence) []report.Finding {
	var out []report.Finding
	for _, r := range rules {
		out = append(out, r(e)...)
	}
	out = append(out, ruleUnexplained(e, out)...)
	for i := range out {
		if c, ok := causes.Lookup(out[i].Cause); ok && out[i].Title == "" {
			out[i].Title = c.Title
		}
		if out[i].Evidence == nil {
			out[i].Evidence = []report.Evidence{}
		}
	}
	return out
}

// --- helpers -------------------------------------------------------------

func counterEv(e *Evidence, names ...string) []report.Evidence {
	var out []report.Evidence
	for _, n := range names {
		d := e.delta(n)
		if d == 0 {
			continue
		}
		out = append(out, report.Evidence{
			Source: "counters",
			Text:   fmt.Sprintf("%s +%d in %s (total %d)", n, d, e.Window, e.total(n)),
			Data:   map[string]any{"counter": n, "delta": d, "total": e.total(n)},
		})
	}
	return out
}

// tool is the command that runs a program in the inspected namespace.
func (e *Evidence) tool(name string) fixcmd.Cmd {
	if e.Target == nil {
		return fixcmd.New(name)
	}
	return e.Target.Command(name)
}

// ip is "ip" (with -6 for IPv6) in the inspected namespace.
func (e *Evidence) ip(fam int) fixcmd.Cmd {
	if fam == 6 {
		return e.tool("ip").Append("-6")
	}
	return e.tool("ip")
}

// sysctlCmd sets one sysctl in the inspected namespace.
func (e *Evidence) sysctlCmd(key string, value any) fixcmd.Cmd {
	return e.tool("sysctl").Append("-w", fmt.Sprintf("%s=%v", key, value))
}

// synscopeCmd is a synscope command aimed at the inspected namespace.
func (e *Evidence) synscopeCmd(args ...any) fixcmd.Cmd {
	c := fixcmd.New("synscope")
	if len(args) > 0 {
		c = c.Append(args[0])
		args = args[1:]
	}
	if t := e.Target; t != nil && !t.Current {
		switch {
		case t.Name != "":
			c = c.Append("--netns", t.Name)
		case t.PID != 0:
			c = c.Append("--netns", fmt.Sprintf("pid:%d", t.PID))
		default:
			c = c.Append("--netns", t.Path)
		}
	}
	return c.Append(args...)
}

// af converts our 4/6 family numbers to the AF_* constants routes uses.
func af(fam int) int {
	if fam == 6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

func famOf(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

func (e *Evidence) listenerDropsDelta(l *sockets.Socket) int64 {
	if e.startDrops == nil {
		e.startDrops = make(map[uint32]uint32, len(e.ListenersStart))
		for _, s := range e.ListenersStart {
			e.startDrops[s.Inode] = s.Drops
		}
	}
	if d, ok := e.startDrops[l.Inode]; ok {
		return int64(l.Drops) - int64(d)
	}
	return int64(l.Drops)
}

func (e *Evidence) listenerName(l *sockets.Socket) string {
	s := l.Local.String()
	if ps := e.Owners[l.Inode]; len(ps) > 0 {
		s += fmt.Sprintf(" (%s pid %d)", ps[0].Comm, ps[0].PID)
	}
	return s
}

func (e *Evidence) linkName(idx int) string {
	if e.Routes == nil {
		return fmt.Sprintf("if%d", idx)
	}
	if n := e.Routes.LinkName(idx); n != "" {
		return n
	}
	return fmt.Sprintf("if%d", idx)
}

func (e *Evidence) sysctl(name string) string {
	if e.Sysctl == nil {
		return ""
	}
	return e.Sysctl[name]
}

// unansweredTo lists captured inbound flows to port (0 = any) that got
// neither a SYN-ACK nor a RST. A SYN that arrived in the last moments of the
// window may simply not have been answered yet, so only flows with a
// retransmission count.
func (e *Evidence) unansweredTo(port uint16) []capture.Flow {
	if e.Capture == nil {
		return nil
	}
	var out []capture.Flow
	for _, f := range e.Capture.Unanswered(capture.Inbound) {
		if port != 0 && f.Server.Port() != port {
			continue
		}
		if f.SYNs < 2 {
			continue
		}
		out = append(out, f)
	}
	return out
}

func flowText(f capture.Flow) string {
	return fmt.Sprintf("%s -> %s: %d SYN, %d SYN-ACK, %d RST", f.Client, f.Server, f.SYNs, f.SYNACKs, f.RSTs)
}

func uniq(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// --- no-route-to-peer ------------------------------------------------------

func ruleNoRoute(e *Evidence) []report.Finding {
	ld := e.delta("TcpExtListenDrops")
	nr4, nr6 := e.delta("IpOutNoRoutes"), e.delta("Ip6OutNoRoutes")
	var failed []Replay
	for _, r := range e.Replays {
		if !r.Result.OK && !e.ipv6DisabledFor(r.Peer) {
			failed = append(failed, r)
		}
	}
	if len(failed) == 0 {
		if ld > 0 && (nr4 > 0 || nr6 > 0) {
			return []report.Finding{{
				Cause:      causes.NoRouteToPeer,
				Severity:   report.Critical,
				Confidence: report.Likely,
				Why:        "ListenDrops and OutNoRoutes rose together, which only a failed SYN-ACK route lookup does; no client was seen to replay the lookup for",
				Summary:    fmt.Sprintf("%d SYNs dropped because the SYN-ACK had no route back; run with --peer <client> to name the route that fails", ld),
				Evidence:   counterEv(e, "TcpExtListenDrops", "IpOutNoRoutes", "Ip6OutNoRoutes"),
				Fix: fixcmd.Of(e.synscopeCmd("doctor", "--peer", fixcmd.Hole("client-address"))).
					Note("names the route lookup that fails; then add the missing route").String(),
				Drops: ld,
			}}
		}
		return nil
	}
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
			Drops:     ld,
		}
		moving := ld > 0 && (noRoutes > 0 || g.expl.typedV6)
		switch {
		case captured && moving:
			f.Severity, f.Confidence = report.Critical, report.Confirmed
			f.Why = "the client's SYNs arrived and got no SYN-ACK, the replayed SYN-ACK route lookup fails, and ListenDrops/" + nrName + " rose in the window"
		case moving:
			f.Severity, f.Confidence = report.Critical, report.Likely
			f.Why = "the replayed lookup fails and ListenDrops/" + nrName + " rose, but no SYN from these peers was captured in the window"
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
	if rt, ok := typedRouteFor(st, peer, e.tablesFor(q)); ok {
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
		if ru, ok := e.ruleTo(q, rt.Table); ok {
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
	for _, ru := range sortedRules(st, af(fam)) {
		if !ruleMatches(ru, q) {
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
			if tableCovers(st, af(fam), ru.Table, peer) {
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
				if !tableCovers(st, af(fam), unix.RT_TABLE_MAIN, peer) && !tableCovers(st, af(fam), unix.RT_TABLE_DEFAULT, peer) {
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
	fix := &fixcmd.Script{}
	if acceptRA2 {
		fix.Run(e.sysctlCmd(sysctl.ConfName("ipv6", dev, "accept_ra"), 2))
		fix.Note("the next router advertisement restores the route; to restore it now:")
	}
	fix.Run(ipc.Append("route", "add", "default", "via", gw, "dev", on).Append(tblArgs...))
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

// tablesFor lists the tables the SYN-ACK's lookup consults, in rule order.
func (e *Evidence) tablesFor(q routes.Query) map[int]bool {
	out := map[int]bool{}
	for _, ru := range sortedRules(e.Routes, af(famOf(q.Dst))) {
		if ruleMatches(ru, q) && (ru.Action == "lookup" || ru.Action == "") {
			out[ru.Table] = true
		}
	}
	if len(out) == 0 {
		out[unix.RT_TABLE_MAIN] = true
	}
	return out
}

// ruleTo finds the policy rule that sends q's lookup to a non-main table.
func (e *Evidence) ruleTo(q routes.Query, table int) (routes.Rule, bool) {
	if table == 0 || table == unix.RT_TABLE_MAIN || table == unix.RT_TABLE_LOCAL || table == unix.RT_TABLE_DEFAULT {
		return routes.Rule{}, false
	}
	for _, ru := range sortedRules(e.Routes, af(famOf(q.Dst))) {
		if ru.Table == table && ruleMatches(ru, q) {
			return ru, true
		}
	}
	return routes.Rule{}, false
}

func typedRouteFor(st *routes.State, peer netip.Addr, tables map[int]bool) (routes.Route, bool) {
	var best routes.Route
	found := false
	for _, rt := range st.Routes {
		if !tables[rt.Table] && !(rt.Table == 0 && tables[unix.RT_TABLE_MAIN]) {
			continue
		}
		switch rt.Type {
		case "unreachable", "blackhole", "prohibit", "throw":
		default:
			continue
		}
		if !routeCovers(rt, peer) {
			continue
		}
		if !found || rt.Dst.Bits() > best.Dst.Bits() {
			best, found = rt, true
		}
	}
	return best, found
}

func routeCovers(rt routes.Route, a netip.Addr) bool {
	if rt.Family != 0 && rt.Family != af(famOf(a)) {
		return false
	}
	if !rt.Dst.IsValid() || rt.Dst.Bits() == 0 {
		return rt.Dst.Addr().Is4() == a.Is4() || !rt.Dst.IsValid()
	}
	return rt.Dst.Contains(a)
}

func tableCovers(st *routes.State, fam, tbl int, a netip.Addr) bool {
	for _, rt := range st.Routes {
		if rt.Family != fam || rt.Table != tbl {
			continue
		}
		if routeCovers(rt, a) {
			return true
		}
	}
	return false
}

func sortedRules(st *routes.State, fam int) []routes.Rule {
	var out []routes.Rule
	for _, r := range st.Rules {
		if r.Family == fam {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	return out
}

// ruleMatches tells whether a policy rule selects the SYN-ACK's lookup
// (route_req has no iif; oif and uid ranges are matched loosely).
func ruleMatches(ru routes.Rule, q routes.Query) bool {
	if ru.Src.IsValid() && ru.Src.Bits() > 0 && !ru.Src.Contains(q.Src) {
		return false
	}
	if ru.Dst.IsValid() && ru.Dst.Bits() > 0 && !ru.Dst.Contains(q.Dst) {
		return false
	}
	if ru.HasMark {
		mask := ru.Mask
		if mask == 0 {
			mask = 0xffffffff
		}
		if q.Mark&mask != ru.Mark {
			return false
		}
	}
	if ru.IifName != "" {
		return false
	}
	return true
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

// --- queues ----------------------------------------------------------------

func ruleAcceptQueue(e *Evidence) []report.Finding {
	lo := e.delta("TcpExtListenOverflows")
	var out []report.Finding
	for i := range e.Listeners {
		l := &e.Listeners[i]
		full := l.RecvQ > l.SendQ
		dd := e.listenerDropsDelta(l)
		if !(full && (dd > 0 || lo > 0)) && !(lo > 0 && dd > 0 && l.RecvQ >= l.SendQ) {
			continue
		}
		f := report.Finding{
			Cause:     causes.AcceptQueueOverflow,
			Severity:  report.Critical,
			Summary:   fmt.Sprintf("listener %s has a full accept queue (%d waiting, backlog %d): new SYNs are dropped", e.listenerName(l), l.RecvQ, l.SendQ),
			Listeners: []string{e.listenerName(l)},
			Drops:     max(dd, lo),
			Fix: fixcmd.Notes("make the application accept() faster, and raise its listen() backlog together with net.core.somaxconn:").
				Run(e.sysctlCmd("net.core.somaxconn", 4096)).String(),
		}
		f.Evidence = append(counterEv(e, "TcpExtListenOverflows", "TcpExtListenDrops"), report.Evidence{
			Source: "sockets",
			Text:   fmt.Sprintf("%s: accept queue %d/%d, listener drops +%d (total %d)", l.Local, l.RecvQ, l.SendQ, dd, l.Drops),
			Data:   map[string]any{"local": l.Local.String(), "accept_queue": l.RecvQ, "backlog": l.SendQ, "drops_delta": dd},
		})
		if full && dd > 0 && lo > 0 {
			f.Confidence, f.Why = report.Confirmed, "the queue is full now, and this listener's drop counter and ListenOverflows rose in the window"
		} else {
			f.Confidence, f.Why = report.Likely, "the queue is full and drops rose, but not all signals moved together"
		}
		out = append(out, f)
	}
	if len(out) == 0 && lo > 0 {
		out = append(out, report.Finding{
			Cause: causes.AcceptQueueOverflow, Severity: report.Warning, Confidence: report.Likely,
			Why:      "ListenOverflows rose in the window; no listener's queue was full at the moment it was read",
			Summary:  fmt.Sprintf("%d SYNs or final ACKs dropped because an accept queue was full (bursty)", lo),
			Evidence: counterEv(e, "TcpExtListenOverflows", "TcpExtListenDrops"),
			Fix: fixcmd.Notes("check the application's accept loop; raise the listen() backlog and net.core.somaxconn:").
				Run(e.sysctlCmd("net.core.somaxconn", 4096)).String(),
			Drops: lo,
		})
	}
	return out
}

func (e *Evidence) synRecvFor(l *sockets.Socket) int {
	if e.synRecvByPort == nil {
		e.synRecvByPort = map[uint16]int{}
		for _, s := range e.SynRecv {
			e.synRecvByPort[s.Local.Port()]++
		}
	}
	return e.synRecvByPort[l.Local.Port()]
}

func ruleSynQueue(e *Evidence) []report.Finding {
	qf := e.delta("TcpExtTCPReqQFullDrop")
	ld := e.delta("TcpExtListenDrops")
	cookies := e.sysctl("net.ipv4.tcp_syncookies")
	if qf <= 0 {
		return e.lastQuarter()
	}
	f := report.Finding{
		Cause: causes.SynQueueOverflow, Severity: report.Critical, Confidence: report.Confirmed,
		Why:      "TCPReqQFullDrop counts exactly this drop",
		Summary:  fmt.Sprintf("%d SYNs dropped because a SYN queue was full and syncookies are off (tcp_syncookies=%s)", qf, cookies),
		Evidence: counterEv(e, "TcpExtTCPReqQFullDrop", "TcpExtListenDrops"),
		Fix: fixcmd.Of(e.sysctlCmd("net.ipv4.tcp_syncookies", 1)).
			Note("and raise the listen() backlog with net.core.somaxconn if the load is legitimate").String(),
		Drops: max(qf, ld),
	}
	for i := range e.Listeners {
		l := &e.Listeners[i]
		if n := e.synRecvFor(l); n > 0 && uint32(n) >= l.SendQ {
			f.Listeners = append(f.Listeners, e.listenerName(l))
			f.Evidence = append(f.Evidence, report.Evidence{Source: "sockets",
				Text: fmt.Sprintf("%s: %d SYN-RECV request sockets for a backlog of %d", l.Local, n, l.SendQ)})
		}
	}
	return []report.Finding{f}
}

// lastQuarter detects tcp_conn_request's early drop with syncookies off:
// once fewer than a quarter of tcp_max_syn_backlog slots are left, SYNs from
// peers without TCP metrics are dropped, moving ListenDrops alone.
func (e *Evidence) lastQuarter() []report.Finding {
	ld := e.delta("TcpExtListenDrops")
	if ld <= 0 || e.sysctl("net.ipv4.tcp_syncookies") != "0" || e.delta("TcpExtListenOverflows") > 0 ||
		e.delta("IpOutNoRoutes") > 0 || e.delta("Ip6OutNoRoutes") > 0 {
		return nil
	}
	var maxSyn int64
	if _, err := fmt.Sscan(e.sysctl("net.ipv4.tcp_max_syn_backlog"), &maxSyn); err != nil || maxSyn <= 0 {
		return nil
	}
	for i := range e.Listeners {
		l := &e.Listeners[i]
		n := int64(e.synRecvFor(l))
		// The kernel drops when max - qlen < max>>2; the queue length read
		// after the window may be a little lower than at the drops.
		if n == 0 || maxSyn-n >= maxSyn>>2+1 || e.listenerDropsDelta(l) <= 0 {
			continue
		}
		return []report.Finding{{
			Cause: causes.SynQueueOverflow, Severity: report.Critical, Confidence: report.Likely,
			Why: "ListenDrops rose with no other cause's counter, syncookies are off and this listener's request queue is in the last quarter of tcp_max_syn_backlog: " +
				"tcp_conn_request then drops SYNs from peers it has no TCP metrics for",
			Summary: fmt.Sprintf("%d SYNs dropped by the 'last quarter' rule: %d SYN-RECV requests on %s with tcp_max_syn_backlog=%d and syncookies off",
				ld, n, e.listenerName(l), maxSyn),
			Evidence: append(counterEv(e, "TcpExtListenDrops"),
				report.Evidence{Source: "sockets", Text: fmt.Sprintf("%s: %d SYN-RECV request sockets, listener drops +%d", l.Local, n, e.listenerDropsDelta(l))},
				report.Evidence{Source: "sysctl", Text: fmt.Sprintf("net.ipv4.tcp_max_syn_backlog = %d, net.ipv4.tcp_syncookies = 0", maxSyn)}),
			Listeners: []string{e.listenerName(l)},
			Fix:       fixcmd.Of(e.sysctlCmd("net.ipv4.tcp_syncookies", 1), e.sysctlCmd("net.ipv4.tcp_max_syn_backlog", max(maxSyn*4, 4096))).String(),
			Drops:     ld,
		}}
	}
	return nil
}

func ruleSynCookies(e *Evidence) []report.Finding {
	dc, sent := e.delta("TcpExtTCPReqQFullDoCookies"), e.delta("TcpExtSyncookiesSent")
	if dc <= 0 && sent <= 0 {
		return nil
	}
	f := report.Finding{
		Cause: causes.SynFloodCookies, Severity: report.Warning, Confidence: report.Confirmed,
		Why:      "SyncookiesSent / TCPReqQFullDoCookies count exactly this",
		Summary:  fmt.Sprintf("a SYN queue is full: the kernel answered %d SYNs with syncookies (a SYN flood, or a queue too small for the load)", max(dc, sent)),
		Evidence: counterEv(e, "TcpExtTCPReqQFullDoCookies", "TcpExtSyncookiesSent", "TcpExtSyncookiesFailed"),
		Fix: fixcmd.Notes("if the load is legitimate: raise the listen() backlog and net.core.somaxconn; if not, filter the flood upstream").
			Run(e.sysctlCmd("net.core.somaxconn", 4096)).String(),
	}
	for i := range e.Listeners {
		l := &e.Listeners[i]
		if n := e.synRecvFor(l); n > 0 {
			f.Listeners = append(f.Listeners, e.listenerName(l))
			f.Evidence = append(f.Evidence, report.Evidence{Source: "sockets",
				Text: fmt.Sprintf("%s: %d SYN-RECV request sockets, backlog %d", l.Local, n, l.SendQ)})
		}
	}
	return []report.Finding{f}
}

// kernelDefaultSomaxconn is net.core.somaxconn's default since Linux 5.4.
const kernelDefaultSomaxconn = 4096

func ruleBacklogCapped(e *Evidence) []report.Finding {
	var som int64
	if _, err := fmt.Sscan(e.sysctl("net.core.somaxconn"), &som); err != nil || som <= 0 || som >= kernelDefaultSomaxconn {
		return nil
	}
	var out []report.Finding
	for i := range e.Listeners {
		l := &e.Listeners[i]
		if int64(l.SendQ) != som || l.Local.Addr().IsLoopback() {
			continue
		}
		f := report.Finding{
			Cause: causes.BacklogCapped, Severity: report.Warning, Confidence: report.Possible,
			Why:       "the listener's backlog equals net.core.somaxconn, below the kernel default of 4096: listen() asked for at least this much and the kernel capped it silently",
			Summary:   fmt.Sprintf("listener %s: backlog capped to net.core.somaxconn=%d", e.listenerName(l), som),
			Listeners: []string{e.listenerName(l)},
			Evidence: []report.Evidence{{Source: "sysctl", Text: fmt.Sprintf("net.core.somaxconn = %d", som)},
				{Source: "sockets", Text: fmt.Sprintf("%s: effective backlog %d, accept queue %d", l.Local, l.SendQ, l.RecvQ)}},
			Fix: fixcmd.Of(e.sysctlCmd("net.core.somaxconn", kernelDefaultSomaxconn)).
				Note("then restart the listener: the backlog is fixed at listen() time").String(),
		}
		if e.delta("TcpExtListenOverflows") > 0 {
			f.Confidence = report.Likely
		}
		out = append(out, f)
	}
	return out
}

// --- firewall ---------------------------------------------------------------

func ruleFirewall(e *Evidence) []report.Finding {
	if e.Firewall == nil || len(e.Firewall.Rules) == 0 {
		return nil
	}
	type hit struct {
		rule  firewall.Rule
		dir   firewall.Direction
		port  uint16
		delta uint64
	}
	var hits []hit
	seen := map[string]bool{}
	for _, pk := range e.handshakePackets() {
		for _, r := range e.Firewall.Droppers(pk) {
			if seen[r.Key()] {
				continue
			}
			d := e.FirewallDeltas[r.Key()]
			unanswered := len(e.unansweredTo(pk.LocalPort)) > 0 || e.delta("TcpExtTCPTimeouts") > 0
			if d == 0 && !(unanswered && !r.HasCounter) {
				continue
			}
			seen[r.Key()] = true
			hits = append(hits, hit{rule: r, dir: pk.Dir, port: pk.LocalPort, delta: d})
		}
	}
	var out []report.Finding
	for _, h := range hits {
		id := causes.FirewallDrop
		for _, s := range h.rule.CtStates {
			if s == "invalid" {
				id = causes.ConntrackInvalid
			}
		}
		what := "SYNs to port"
		if h.dir == firewall.Out {
			what = "SYN-ACKs from port"
		}
		where := h.rule.Where()
		f := report.Finding{
			Cause:    id,
			Severity: report.Critical,
			Summary:  fmt.Sprintf("firewall rule %q (%s) %ss %s %d", h.rule.Text, where, h.rule.Verdict, what, h.port),
			Evidence: []report.Evidence{{Source: "firewall",
				Text: fmt.Sprintf("%s: %s — counter +%d packets in %s (total %d)", where, h.rule.Text, h.delta, e.Window, h.rule.Packets),
				Data: map[string]any{"family": h.rule.Family, "table": h.rule.Table, "chain": h.rule.Chain, "handle": h.rule.Handle,
					"hook": h.rule.Hook, "rule": h.rule.Text, "verdict": h.rule.Verdict, "packets_delta": h.delta, "port": h.port}}},
			Drops: int64(h.delta),
			Fix:   fixcmd.Of(h.rule.Delete(e.tool("nft"))).String(),
		}
		if h.rule.Handle == 0 {
			f.Fix = fixcmd.Notes(fmt.Sprintf("add an accept rule for tcp port %d to chain %s before its drop policy", h.port, where)).String()
		}
		if h.delta > 0 {
			f.Confidence, f.Why = report.Confirmed, "the rule matches the handshake and its counter rose while clients were trying"
		} else {
			f.Confidence, f.Why = report.Likely, "the rule matches the handshake and handshakes failed in the window; it has no counter to confirm"
		}
		if h.dir == firewall.Out {
			f.Evidence = append(f.Evidence, counterEv(e, "TcpExtTCPTimeouts", "TcpExtTCPSynRetrans")...)
		}
		for _, fl := range e.unansweredTo(h.port) {
			f.Peers = append(f.Peers, fl.Client.Addr().String())
		}
		f.Peers = uniq(f.Peers)
		out = append(out, f)
	}
	return out
}

// handshakePackets lists the SYN-in and SYN-ACK-out packets the firewall
// must let through: one per listener (and family), plus captured flows.
func (e *Evidence) handshakePackets() []firewall.Packet {
	var out []firewall.Packet
	seen := map[string]bool{}
	add := func(p firewall.Packet) {
		k := fmt.Sprintf("%d|%d|%d|%s|%s", p.Family, p.Dir, p.LocalPort, p.Local, p.Remote)
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	if e.Capture != nil {
		for _, f := range e.Capture.Flows {
			if f.Dir != capture.Inbound || f.Answered() {
				continue
			}
			fam := famOf(f.Client.Addr())
			for _, d := range []firewall.Direction{firewall.In, firewall.Out} {
				add(firewall.Packet{Family: fam, Dir: d, LocalPort: f.Server.Port(), RemotePort: f.Client.Port(),
					Local: f.Server.Addr().Unmap(), Remote: f.Client.Addr().Unmap(), Iif: e.linkName(f.Ifindex)})
			}
		}
	}
	for _, l := range e.Listeners {
		la := l.Local.Addr().Unmap()
		if la.IsLoopback() {
			continue
		}
		fams := []int{famOf(la)}
		if l.Family == unix.AF_INET6 && la.IsUnspecified() {
			fams = []int{4, 6}
		}
		for _, fam := range fams {
			for _, d := range []firewall.Direction{firewall.In, firewall.Out} {
				add(firewall.Packet{Family: fam, Dir: d, LocalPort: l.Local.Port()})
			}
		}
	}
	return out
}

// --- single-signal causes ------------------------------------------------------

func ruleRPFilter(e *Evidence) []report.Finding {
	d := e.delta("TcpExtIPReversePathFilter")
	if d <= 0 {
		return nil
	}
	ev := counterEv(e, "TcpExtIPReversePathFilter")
	var strict []string
	for k, v := range e.Sysctl {
		if strings.HasSuffix(k, ".rp_filter") && v == "1" {
			strict = append(strict, k)
			ev = append(ev, report.Evidence{Source: "sysctl", Text: k + " = 1 (strict)"})
		}
	}
	sort.Strings(strict)
	fix := &fixcmd.Script{}
	for _, k := range strict {
		if strings.Contains(k, ".default.") {
			continue
		}
		fix.Run(e.sysctlCmd(k, 2))
	}
	if fix.Empty() {
		fix.Run(e.sysctlCmd("net.ipv4.conf.all.rp_filter", 2))
	}
	fix.Note("or make the route back to the clients leave through the interface their packets arrive on")
	return []report.Finding{{
		Cause: causes.RPFilterDrop, Severity: report.Critical, Confidence: report.Confirmed,
		Why:      "IPReversePathFilter counts packets dropped by the reverse-path check, and it rose in the window",
		Summary:  fmt.Sprintf("%d packets dropped by strict reverse-path filtering: the route back to the sender leaves through another interface", d),
		Evidence: ev, Fix: fix.String(), Drops: d,
	}}
}

func ruleTCPReject(e *Evidence) []report.Finding {
	type sig struct{ counter, what, fix string }
	sigs := []sig{
		{"TcpExtTCPMinTTLDrop", "the listener's IP_MINTTL is higher than the TTL the SYNs arrive with", "lower or remove the listener's IP_MINTTL / IPV6_MINHOPCOUNT (setsockopt), or move the client closer"},
		{"TcpExtTCPMD5NotFound", "the listener expects a TCP-MD5 signature (TCP_MD5SIG) the client does not send", "configure the same TCP_MD5SIG key on the client, or remove it from the listener"},
		{"TcpExtTCPMD5Unexpected", "the client signs with TCP-MD5 and the listener has no key for it", "configure the key on the listener, or stop signing on the client"},
		{"TcpExtTCPMD5Failure", "TCP-MD5 signatures do not verify (key mismatch)", "make the MD5 keys on both ends equal"},
		{"TcpExtTCPAORequired", "the listener requires TCP-AO and the SYN has none", "configure matching TCP-AO keys"},
		{"TcpExtTCPAOBad", "TCP-AO signatures do not verify", "configure matching TCP-AO keys"},
		{"TcpExtTCPAOKeyNotFound", "no TCP-AO key matches the SYN", "configure matching TCP-AO keys"},
		{"TcpInCsumErrors", "TCP segments arrive with bad checksums", "check NIC checksum offload and the path for corruption"},
	}
	var out []report.Finding
	for _, s := range sigs {
		d := e.delta(s.counter)
		if d <= 0 {
			continue
		}
		f := report.Finding{
			Cause: causes.TCPReject, Severity: report.Critical, Confidence: report.Confirmed,
			Why:      s.counter + " counts exactly this drop, and it rose in the window",
			Summary:  fmt.Sprintf("%d SYNs dropped by TCP before reaching the listener: %s", d, s.what),
			Evidence: counterEv(e, s.counter, "TcpExtListenDrops"),
			Fix:      fixcmd.Notes(s.fix).String(), Drops: d,
		}
		for i := range e.Listeners {
			l := &e.Listeners[i]
			if dd := e.listenerDropsDelta(l); dd > 0 {
				f.Listeners = append(f.Listeners, e.listenerName(l))
				f.Evidence = append(f.Evidence, report.Evidence{Source: "sockets", Text: fmt.Sprintf("%s: listener drops +%d", l.Local, dd)})
			}
		}
		if e.Capture != nil {
			for _, fl := range e.Capture.Flows {
				if fl.Dir == capture.Inbound && !fl.Answered() && fl.TTL != 0 && s.counter == "TcpExtTCPMinTTLDrop" {
					f.Evidence = append(f.Evidence, report.Evidence{Source: "capture", Text: fmt.Sprintf("SYN from %s arrived with TTL %d", fl.Client, fl.TTL)})
					break
				}
			}
		}
		out = append(out, f)
	}
	return out
}

func ruleIPv6Disabled(e *Evidence) []report.Finding {
	if e.Routes == nil {
		return nil
	}
	disc := e.delta("Ip6InDiscards")
	var out []report.Finding
	for _, l := range e.Routes.Links {
		if l.Name == "lo" || !l.Up {
			continue
		}
		if e.sysctl(sysctl.ConfName("ipv6", l.Name, "disable_ipv6")) != "1" && e.sysctl("net.ipv6.conf.all.disable_ipv6") != "1" {
			continue
		}
		var v6syn int
		if e.Capture != nil {
			for _, f := range e.Capture.Flows {
				if f.Dir == capture.Inbound && f.Ifindex == l.Index && f.Client.Addr().Is6() && !f.Client.Addr().Is4In6() && !f.Answered() {
					v6syn += f.SYNs
				}
			}
		}
		f := report.Finding{
			Cause: causes.IPv6Disabled,
			Evidence: append([]report.Evidence{{Source: "sysctl", Text: sysctl.ConfName("ipv6", l.Name, "disable_ipv6") + " = 1"}},
				counterEv(e, "Ip6InDiscards")...),
			Fix: fixcmd.Of(e.sysctlCmd(sysctl.ConfName("ipv6", l.Name, "disable_ipv6"), 0)).
				Note("then re-add the interface's IPv6 addresses and routes (disabling IPv6 removed them)").String(),
		}
		switch {
		case v6syn > 0:
			f.Severity, f.Confidence = report.Critical, report.Confirmed
			f.Why = "IPv6 SYNs arrived on the interface and were discarded"
			f.Summary = fmt.Sprintf("IPv6 is disabled on %s: %d IPv6 SYNs arriving there were discarded", l.Name, v6syn)
			f.Drops = int64(v6syn)
		case disc > 0:
			f.Severity, f.Confidence = report.Critical, report.Likely
			f.Why = "Ip6InDiscards rose while IPv6 is disabled on the interface"
			f.Summary = fmt.Sprintf("IPv6 is disabled on %s and IPv6 packets are being discarded", l.Name)
			f.Drops = disc
		default:
			f.Severity, f.Confidence = report.Info, report.Possible
			f.Summary = fmt.Sprintf("IPv6 is disabled on %s: IPv6 clients cannot connect through it", l.Name)
		}
		out = append(out, f)
	}
	return out
}

// ipv6DisabledFor: a v6 SYN arriving on an interface with IPv6 disabled
// cannot be answered; ipv6-disabled reports it, not no-route-to-peer.
func (e *Evidence) ipv6DisabledFor(p Peer) bool {
	if famOf(p.Addr) != 6 || p.Flow == nil || e.Routes == nil {
		return false
	}
	return e.sysctl(sysctl.ConfName("ipv6", e.linkName(p.Flow.Ifindex), "disable_ipv6")) == "1" || e.sysctl("net.ipv6.conf.all.disable_ipv6") == "1"
}

func rulePAWS(e *Evidence) []report.Finding {
	d := e.delta("TcpExtPAWSTimewait")
	if d <= 0 {
		return nil
	}
	return []report.Finding{{
		Cause: causes.PAWSReject, Severity: report.Warning, Confidence: report.Likely,
		Why:      "PAWSTimewait counts SYNs rejected against a TIME_WAIT socket",
		Summary:  fmt.Sprintf("%d SYNs hit TIME_WAIT sockets with older timestamps (typically clients behind NAT)", d),
		Evidence: counterEv(e, "TcpExtPAWSTimewait"),
		Fix:      fixcmd.Notes("avoid NAT port reuse across hosts with different timestamp clocks, or let clients close first").String(),
		Drops:    d,
	}}
}

func ruleConntrack(e *Evidence) []report.Finding {
	ct := e.Conntrack
	if ct == nil || !ct.Available || ct.Max == 0 {
		return nil
	}
	var drop uint64
	if e.ConntrackStart != nil {
		drop = (ct.Drop + ct.EarlyDrop + ct.InsertFailed) - (e.ConntrackStart.Drop + e.ConntrackStart.EarlyDrop + e.ConntrackStart.InsertFailed)
	}
	fill := float64(ct.Count) / float64(ct.Max)
	if drop == 0 && fill < 0.9 {
		return nil
	}
	f := report.Finding{
		Cause:    causes.ConntrackFull,
		Evidence: []report.Evidence{{Source: "conntrack", Text: fmt.Sprintf("%d of %d entries in use (%.0f%%), %d drops in the window", ct.Count, ct.Max, fill*100, drop)}},
		Fix: fixcmd.Of(e.sysctlCmd("net.netfilter.nf_conntrack_max", ct.Max*2)).
			Note("nf_conntrack_max is global: it applies to every namespace").String(),
		Drops: int64(drop),
	}
	if drop > 0 {
		f.Severity, f.Confidence = report.Critical, report.Confirmed
		f.Why = "conntrack's drop counters rose while the table is full"
		f.Summary = fmt.Sprintf("the conntrack table is full (%d/%d): new connections are dropped", ct.Count, ct.Max)
	} else {
		f.Severity, f.Confidence = report.Warning, report.Likely
		f.Why = "the table is above 90%; drops start when it is full"
		f.Summary = fmt.Sprintf("the conntrack table is %.0f%% full (%d/%d)", fill*100, ct.Count, ct.Max)
	}
	return []report.Finding{f}
}

// --- the SYN-ACK's way out and back ----------------------------------------------

func ruleNeighbor(e *Evidence) []report.Finding {
	if e.Routes == nil {
		return nil
	}
	var out []report.Finding
	seen := map[netip.Addr]bool{}
	for _, r := range e.Replays {
		if !r.Result.OK {
			continue
		}
		hop := r.Result.Gateway
		if !hop.IsValid() {
			hop = r.Peer.Addr
		}
		if seen[hop] {
			continue
		}
		n, ok := e.unresolved(hop, r)
		if ok {
			seen[hop] = true
			f := report.Finding{
				Cause:    causes.NeighborUnreachable,
				Severity: report.Critical,
				Summary:  fmt.Sprintf("the SYN-ACK to %s goes via %s on %s, which does not answer %s (neighbour %s)", r.Peer.Addr, hop, n.Dev, arpOrND(hop), n.State),
				Evidence: append([]report.Evidence{
					{Source: "route-replay", Text: fmt.Sprintf("SYN-ACK route to %s: %s", r.Peer.Addr, r.Result.String())},
					{Source: "neighbours", Text: fmt.Sprintf("%s dev %s %s", hop, n.Dev, n.State)},
				}, counterEv(e, "TcpExtTCPSynRetrans", "TcpExtListenDrops")...),
				Peers: []string{r.Peer.Addr.String()},
			}
			f.Fix = e.neighborFix(r, hop, n.Dev)
			if r.Peer.Flow != nil {
				f.Confidence, f.Why = report.Confirmed, "the client's SYNs arrived unanswered and the SYN-ACK's next hop is unresolved"
				f.Drops = int64(r.Peer.Flow.SYNs)
			} else {
				f.Confidence, f.Why = report.Likely, "the SYN-ACK's next hop is unresolved"
			}
			out = append(out, f)
		}
	}
	return out
}

// unresolved finds a next hop whose neighbour entry is FAILED or
// INCOMPLETE. A hop with no entry at all counts too when SYN-ACKs to the
// peer were retransmitted: sending them would have created an entry, and a
// failed one is garbage-collected.
func (e *Evidence) unresolved(hop netip.Addr, r Replay) (routes.Neighbor, bool) {
	for _, n := range e.Routes.Neighbors {
		if n.IP != hop {
			continue
		}
		if n.State == "FAILED" || n.State == "INCOMPLETE" {
			return n, true
		}
		return n, false
	}
	if r.Result.Dev == "" || e.delta("TcpExtTCPSynRetrans") <= 0 {
		return routes.Neighbor{}, false
	}
	for _, s := range e.SynRecv {
		if s.Remote.Addr().Unmap() == r.Peer.Addr && s.Retrans > 0 {
			return routes.Neighbor{IP: hop, Dev: r.Result.Dev, State: "absent (resolution failed and the entry was removed)"}, true
		}
	}
	return routes.Neighbor{}, false
}

// neighborFix points the failing route at the router the SYNs came from,
// when that can be inferred; otherwise it leaves placeholders.
func (e *Evidence) neighborFix(r Replay, hop netip.Addr, dev string) string {
	fam := famOf(r.Peer.Addr)
	var prefix any = fixcmd.Hole("client-prefix")
	best := -1
	for _, rt := range e.Routes.Routes {
		if rt.Family == af(fam) && rt.Gateway == hop && routeCovers(rt, r.Peer.Addr) && rt.Dst.Bits() > best {
			prefix, best = dstString(rt.Dst), rt.Dst.Bits()
		}
	}
	var macs []net.HardwareAddr
	if r.Peer.Flow != nil && len(r.Peer.Flow.ClientMAC) > 0 {
		macs = append(macs, r.Peer.Flow.ClientMAC)
	}
	var gw any = fixcmd.Hole("working-gateway")
	note := ""
	if g := e.Routes.InferGateway(af(fam), dev, macs); g.OK && g.Gateway != hop {
		gw, note = g.Gateway, g.How
	}
	fix := fixcmd.Of(e.ip(fam).Append("route", "replace", prefix, "via", gw, "dev", dev))
	if note != "" {
		fix.Note(note)
	}
	return fix.Notef("or bring %s back on %s", hop, dev).String()
}

func arpOrND(a netip.Addr) string {
	if a.Is4() {
		return "ARP"
	}
	return "neighbour discovery"
}

func ruleSynackUnanswered(e *Evidence) []report.Finding {
	retrans := e.delta("TcpExtTCPSynRetrans")
	var stuck []sockets.Socket
	for _, s := range e.SynRecv {
		if s.Retrans > 0 {
			stuck = append(stuck, s)
		}
	}
	// One duplicate SYN (a client retransmitting under load) re-sends one
	// SYN-ACK and leaves one request with a retransmit for a moment: that
	// is a healthy host. Several, or one retried repeatedly, is not.
	maxRetrans := uint8(0)
	for _, s := range stuck {
		maxRetrans = max(maxRetrans, s.Retrans)
	}
	if retrans <= 0 || len(stuck) == 0 || (len(stuck) < 2 && maxRetrans < 2 && retrans < 3) {
		return nil
	}
	// During a SYN flood most request sockets belong to spoofed sources
	// that never answer: the flood findings explain them.
	if len(ruleSynQueue(e)) > 0 || len(ruleSynCookies(e)) > 0 {
		return nil
	}
	// A request whose SYN-ACK cannot leave (neighbour failure) is another
	// cause; those peers are reported there.
	unresolved := map[netip.Addr]bool{}
	for _, f := range ruleNeighbor(e) {
		for _, p := range f.Peers {
			a, _ := netip.ParseAddr(p)
			unresolved[a] = true
		}
	}
	var peers []string
	ev := counterEv(e, "TcpExtTCPSynRetrans", "TcpExtTCPTimeouts")
	for i, s := range stuck {
		if unresolved[s.Remote.Addr().Unmap()] {
			continue
		}
		peers = append(peers, s.Remote.Addr().Unmap().String())
		if i < 5 {
			ev = append(ev, report.Evidence{Source: "sockets", Text: fmt.Sprintf("SYN-RECV %s -> %s: SYN-ACK retransmitted %d times, no ACK yet", s.Remote, s.Local, s.Retrans)})
		}
	}
	if len(peers) == 0 {
		return nil
	}
	f := report.Finding{
		Cause: causes.SynackUnanswered, Severity: report.Critical, Confidence: report.Likely,
		Why:      "the server answers and retransmits SYN-ACKs (TCPSynRetrans rose) but the request sockets never get the final ACK: the SYN-ACK or the ACK is lost on the path",
		Summary:  fmt.Sprintf("SYN-ACKs to %s are sent and retransmitted but never acknowledged", strings.Join(limit(uniq(peers), 3), ", ")),
		Evidence: ev, Peers: uniq(peers), Drops: retrans,
		Fix: fixcmd.Notes("capture on both ends and compare:").
			Run(fixcmd.New("synscope", "pcap", "--client", "client.pcap", "--server", "server.pcap")).
			Note("then check firewalls/NAT on the way back to the client").String(),
	}
	// The wire says which way the loss is: a SYN-ACK that left this host
	// followed by the client retransmitting its SYN means the SYN-ACK never
	// reached the client (a lost final ACK would not make it resend SYNs).
	if e.Capture != nil {
		want := map[string]bool{}
		for _, p := range f.Peers {
			want[p] = true
		}
		var back, synacks, syns int
		for _, fl := range e.Capture.Flows {
			if fl.Dir != capture.Inbound || !want[fl.Client.Addr().Unmap().String()] || fl.SYNACKs == 0 {
				continue
			}
			synacks += fl.SYNACKs
			if fl.SYNs >= 2 {
				back++
				syns += fl.SYNs
			}
		}
		switch {
		case back > 0:
			f.Confidence = report.Confirmed
			f.Why = "SYN-ACKs were seen leaving this host and the clients then retransmitted their SYNs: the SYN-ACKs do not reach them"
			f.Summary = fmt.Sprintf("SYN-ACKs to %s leave this host but never reach the client: it keeps retransmitting its SYN", strings.Join(limit(f.Peers, 3), ", "))
			f.Evidence = append(f.Evidence, report.Evidence{Source: "capture",
				Text: fmt.Sprintf("%d SYN-ACKs sent on the wire in %d handshakes whose client retransmitted its SYN (%d SYNs)", synacks, back, syns)})
			f.Fix = fixcmd.Notes("the SYN-ACK is lost between this host and the client: check firewalls, NAT and routing on the way back").
				Alt("confirm with captures on both ends", fixcmd.New("synscope", "pcap", "--client", "client.pcap", "--server", "server.pcap")).String()
		case synacks > 0:
			f.Confidence = report.Confirmed
			f.Why = "SYN-ACKs were seen leaving this host on the wire, retransmitted, and the requests never got their final ACK: the loss is on the path (SYN-ACK or ACK), not in this host"
			f.Evidence = append(f.Evidence, report.Evidence{Source: "capture",
				Text: fmt.Sprintf("%d SYN-ACKs to these clients seen leaving this host in the window", synacks)})
		}
	}
	return []report.Finding{f}
}

func ruleSynackEgress(e *Evidence) []report.Finding {
	to, rt := e.delta("TcpExtTCPTimeouts"), e.delta("TcpExtTCPSynRetrans")
	if to <= 0 || rt > 0 || len(e.SynRecv) == 0 {
		return nil
	}
	for _, f := range ruleFirewall(e) {
		if f.Drops > 0 && strings.Contains(f.Summary, "SYN-ACKs") {
			return nil // the firewall finding names the exact rule
		}
	}
	f := report.Finding{
		Cause: causes.SynackEgressDrop, Severity: report.Warning, Confidence: report.Possible,
		Why:      "TCPTimeouts rises while TCPSynRetrans stays flat: SYN-ACK retransmits fail locally (tc, qdisc, cgroup BPF or netfilter)",
		Summary:  fmt.Sprintf("SYN-ACKs seem to be dropped on the way out of this host (%d timeouts, no successful retransmit)", to),
		Evidence: append(counterEv(e, "TcpExtTCPTimeouts"), report.Evidence{Source: "sockets", Text: fmt.Sprintf("%d SYN-RECV request sockets", len(e.SynRecv))}),
		Fix: fixcmd.Notes("inspect the egress path: tc filters and qdiscs, cgroup egress BPF programs, output firewall chains; synscope trace names drop reasons:").
			Run(e.synscopeCmd("trace", "--duration", "30s")).String(),
		Drops: to,
	}
	var egress []firewall.TCFilter
	for _, tf := range e.TC {
		if tf.Direction == "egress" {
			egress = append(egress, tf)
		}
	}
	if len(egress) > 0 {
		f.Severity, f.Confidence = report.Critical, report.Likely
		f.Why += "; egress tc filters are attached, the usual place such drops come from"
		fix := &fixcmd.Script{}
		fix.Alt("check what the egress tc filters drop", e.tool("tc").Append("filter", "show", "dev", egress[0].Dev, "egress"))
		fix.Note("if one drops SYN-ACKs, remove it:")
		for _, tf := range egress {
			f.Evidence = append(f.Evidence, report.Evidence{Source: "tc", Text: tf.Text,
				Data: map[string]any{"dev": tf.Dev, "kind": tf.Kind, "priority": tf.Priority}})
			fix.Alt("remove", tf.Delete(e.tool("tc")))
		}
		f.Summary = fmt.Sprintf("SYN-ACKs are dropped on the way out (%d timeouts, no successful retransmit); egress tc filter on %s", to, egress[0].Dev)
		f.Fix = fix.String()
	}
	return []report.Finding{f}
}

// --- no listener ---------------------------------------------------------------

func ruleNoListener(e *Evidence) []report.Finding {
	if e.Capture == nil {
		return nil
	}
	type key struct {
		addr netip.Addr
		port uint16
	}
	refused := map[key][]capture.Flow{}
	var order []key
	for _, f := range e.Capture.Flows {
		if f.Dir != capture.Inbound || !f.Refused() {
			continue
		}
		k := key{f.Server.Addr().Unmap(), f.Server.Port()}
		if refused[k] == nil {
			order = append(order, k)
		}
		refused[k] = append(refused[k], f)
	}
	rejected := map[uint16]bool{}
	for _, f := range ruleFirewall(e) {
		for _, ev := range f.Evidence {
			if v, _ := ev.Data["verdict"].(string); strings.HasPrefix(v, "reject") {
				if port, ok := ev.Data["port"].(uint16); ok {
					rejected[port] = true
				}
			}
		}
	}
	var out []report.Finding
	for _, k := range order {
		if rejected[k.port] {
			continue // a reject rule sent the RST; the firewall finding says so
		}
		flows := refused[k]
		why, fix := e.whyNoListener(k.addr, k.port, flows[0].Ifindex)
		var peers []string
		n := 0
		ev := counterEv(e, "TcpOutRsts")
		for i, f := range flows {
			peers = append(peers, f.Client.Addr().Unmap().String())
			n += f.SYNs
			if i < 3 {
				ev = append(ev, report.Evidence{Source: "capture", Text: "refused: " + flowText(f)})
			}
		}
		f := report.Finding{
			Cause: causes.NoListener, Severity: report.Critical, Confidence: report.Confirmed,
			Why:      "the SYNs were answered with RST and no listening socket accepts this address, port and device",
			Summary:  fmt.Sprintf("connections to %s are refused: %s", netip.AddrPortFrom(k.addr, k.port), why),
			Evidence: ev, Peers: uniq(peers), Fix: fixcmd.Notes(fix).String(), Drops: int64(n),
		}
		if !e.checked("listeners") {
			// Refused, surely; but without the socket table there is no
			// telling which binding is wrong, or whether a listener exists.
			f.Confidence = report.Likely
			f.Why = "the SYNs were answered with RST; the listening sockets were not read (" + e.Unchecked["listeners"] + "), so which binding refuses them is not known"
			f.Summary = fmt.Sprintf("connections to %s are refused", netip.AddrPortFrom(k.addr, k.port))
			f.Fix = fixcmd.Notes("check what listens on the port and on which address and device (ss -ltnp inside the namespace)").String()
		} else {
			f.Evidence = append(f.Evidence, report.Evidence{Source: "sockets", Text: why})
		}
		out = append(out, f)
	}
	return out
}

// whyNoListener explains why no socket took a SYN to addr:port on ifindex.
func (e *Evidence) whyNoListener(addr netip.Addr, port uint16, ifindex int) (string, string) {
	var samePort []sockets.Socket
	for _, l := range e.Listeners {
		if l.Local.Port() == port {
			samePort = append(samePort, l)
		}
	}
	if len(samePort) == 0 {
		return fmt.Sprintf("nothing listens on port %d", port),
			fmt.Sprintf("start the service on port %d (or point the clients at the right port)", port)
	}
	for _, l := range samePort {
		la := l.Local.Addr().Unmap()
		if l.Ifindex != 0 && int(l.Ifindex) != ifindex {
			return fmt.Sprintf("the listener %s is bound to device %s (SO_BINDTODEVICE) but the SYNs arrive on %s", l.Local, e.linkName(int(l.Ifindex)), e.linkName(ifindex)),
				fmt.Sprintf("bind the service to %s or to no device (remove SO_BINDTODEVICE / bind-interface setting)", e.linkName(ifindex))
		}
		if !la.IsUnspecified() && la != addr {
			return fmt.Sprintf("the listener on port %d is bound to %s, not to %s", port, la, addr),
				fmt.Sprintf("bind the service to %s or to the wildcard address (0.0.0.0 / [::])", addr)
		}
		if la.IsUnspecified() && la.Is4() && addr.Is6() {
			return fmt.Sprintf("the listener on port %d is IPv4-only (0.0.0.0) and the SYNs are IPv6", port),
				"bind the service to [::] as well"
		}
	}
	return fmt.Sprintf("a listener exists on port %d but refused these SYNs (a reuseport or sk_lookup program, or it closed during the window)", port),
		"check the service's socket setup (SO_REUSEPORT programs, sk_lookup) and whether it restarts"
}

// --- ListenDrops with nothing to explain them --------------------------------------

func ruleUnexplained(e *Evidence, found []report.Finding) []report.Finding {
	ld := e.delta("TcpExtListenDrops")
	if ld <= 0 {
		return nil
	}
	var explained int64
	for _, f := range found {
		switch f.Cause {
		case causes.NoRouteToPeer, causes.AcceptQueueOverflow, causes.SynQueueOverflow, causes.TCPReject, causes.NeighborUnreachable:
			explained += f.Drops
		case causes.SynFloodCookies:
			// Accept-queue-full drops still happen with cookies; anything
			// else is not a cookie effect.
		}
		if f.Cause == causes.SynQueueOverflow {
			explained = ld
		}
	}
	if explained >= ld {
		return nil
	}
	var cands []string
	if e.sysctl("net.ipv4.tcp_syncookies") == "0" {
		cands = append(cands, fmt.Sprintf("the 'last quarter' SYN-backlog rule (syncookies off, tcp_max_syn_backlog=%s)", e.sysctl("net.ipv4.tcp_max_syn_backlog")))
	}
	if e.Routes != nil {
		for _, rt := range e.Routes.Routes {
			if rt.Family == unix.AF_INET6 && (rt.Type == "unreachable" || rt.Type == "blackhole" || rt.Type == "prohibit") {
				cands = append(cands, fmt.Sprintf("IPv6 %s route %s (moves ListenDrops only)", rt.Type, rt.Dst))
			}
		}
	}
	cands = append(cands, "an LSM denial in inet_conn_request (SELinux, BPF LSM)", "SYNs to broadcast/multicast addresses",
		"an ICMP error aborting the request", "request-socket allocation failure")
	ev := counterEv(e, "TcpExtListenDrops", "TcpExtListenOverflows", "TcpExtTCPReqQFullDrop", "IpOutNoRoutes", "Ip6OutNoRoutes")
	for i := range e.Listeners {
		l := &e.Listeners[i]
		if dd := e.listenerDropsDelta(l); dd > 0 {
			ev = append(ev, report.Evidence{Source: "sockets", Text: fmt.Sprintf("%s: listener drops +%d, accept queue %d/%d", e.listenerName(l), dd, l.RecvQ, l.SendQ)})
		}
	}
	ev = append(ev, report.Evidence{Source: "doctor", Text: "ruled out: accept queue (no ListenOverflows), SYN queue (no TCPReqQFullDrop), route failure (no OutNoRoutes, replayed lookups succeed)"})
	return []report.Finding{{
		Cause: causes.UnexplainedDrops, Severity: report.Warning, Confidence: report.Possible,
		Why:      "ListenDrops rose with no counter that names a cause; the candidates below remain",
		Summary:  fmt.Sprintf("%d SYNs to listeners dropped; remaining candidates: %s", ld-explained, strings.Join(cands, "; ")),
		Evidence: ev, Drops: ld - explained,
		Fix: fixcmd.Of(e.synscopeCmd("trace", "--duration", "30s")).Note("attributes each SYN's fate").String(),
	}}
}

// byHand is the iproute2 command that repeats a replayed lookup in the
// target namespace, for a human to confirm.
func (e *Evidence) byHand(q routes.Query) string {
	return q.Command(e.tool("ip")).String()
}

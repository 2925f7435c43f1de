package doctor

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
)

// ListenDrops that no other rule explains, and SYNs that went unanswered
// with no cause found.

// ruleUnexplained reports the share of ListenDrops the catalog's
// attribution gives no cause, less what findings of ListenDrop causes
// claimed on other evidence (the last-quarter rule, a typed IPv6 route).
func ruleUnexplained(e *Evidence, found []report.Finding) []report.Finding {
	att := e.attributed()
	left := int64(att.ByCause[causes.UnexplainedDrops])
	if left <= 0 {
		return nil
	}
	byCause := map[causes.ID]int64{}
	for _, f := range found {
		byCause[f.Cause] += f.Drops
	}
	for id, n := range byCause {
		if c, ok := causes.Lookup(id); ok && c.ListenDrop && id != causes.UnexplainedDrops {
			left -= max(0, n-int64(att.ByCause[id]))
		}
	}
	if left <= 0 {
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
	var names []string
	for _, c := range causes.All() {
		if c.ListenDrop {
			for _, dc := range c.DropCounters {
				names = append(names, dc.Name)
			}
		}
	}
	ev := counterEv(e, uniq(names)...)
	for i := range e.Listeners {
		l := &e.Listeners[i]
		if dd := e.listenerDropsDelta(l); dd > 0 {
			ev = append(ev, report.Evidence{Source: "sockets", Text: fmt.Sprintf("%s: listener drops +%d, accept queue %d/%d", e.listenerName(l), dd, l.RecvQ, l.SendQ)})
		}
	}
	ev = append(ev, e.ruledOut(att)...)
	return []report.Finding{{
		Cause: causes.UnexplainedDrops, Severity: report.Warning, Confidence: report.Possible,
		Why:      "ListenDrops rose more than the counters that name a cause account for; the candidates below remain",
		Summary:  fmt.Sprintf("%d SYNs to listeners dropped; remaining candidates: %s", left, strings.Join(cands, "; ")),
		Evidence: ev, Drops: left,
		Fix: fixcmd.Of(e.synscopeCmd("trace", "--duration", "30s")).Note("attributes each SYN's fate").String(),
	}}
}

// ruledOut says what the evidence rules out, and only that: a source
// that was not read rules nothing out.
func (e *Evidence) ruledOut(att causes.Attribution) []report.Evidence {
	var out, not []string
	for _, c := range []struct {
		id   causes.ID
		what string
	}{
		{causes.AcceptQueueOverflow, "accept queue"},
		{causes.SynQueueOverflow, "SYN queue"},
	} {
		if att.ByCause[c.id] == 0 {
			var names []string
			for _, dc := range causes.MustLookup(c.id).DropCounters {
				names = append(names, dc.Name)
			}
			out = append(out, fmt.Sprintf("%s (no %s)", c.what, strings.Join(names, ", ")))
		}
	}
	failed := 0
	for _, r := range e.Replays {
		if !r.Result.OK {
			failed++
		}
	}
	switch {
	case att.ByCause[causes.NoRouteToPeer] > 0 || failed > 0:
	case !e.checked(sourceReplay) || !e.checked(sourceRoutes):
		why := e.whyUnchecked(sourceReplay)
		if !e.checked(sourceRoutes) {
			why = e.whyUnchecked(sourceRoutes)
		}
		not = append(not, "the SYN-ACK route lookup was not replayed ("+why+")")
	case len(e.Replays) == 0:
		out = append(out, "route failure (no OutNoRoutes; no client was seen to replay the lookup for)")
	default:
		out = append(out, fmt.Sprintf("route failure (no OutNoRoutes; %d replayed lookups succeed)", len(e.Replays)))
	}
	var ev []report.Evidence
	if len(out) > 0 {
		ev = append(ev, report.Evidence{Source: "doctor", Text: "ruled out: " + strings.Join(out, "; ")})
	}
	if len(not) > 0 {
		ev = append(ev, report.Evidence{Source: "doctor", Text: "not ruled out: " + strings.Join(not, "; ")})
	}
	return ev
}

// ruleUnanswered is the invariant under every report: SYNs seen arriving
// with no answer, or drop counters rising, never end in "no problems".
// When no other finding above information explains them, this one says
// what was seen, that no cause was confirmed, which sources were not
// checked and what to run next.
func ruleUnanswered(e *Evidence, found []report.Finding) []report.Finding {
	for _, f := range found {
		if f.Severity != report.Info {
			return nil
		}
	}
	flows := e.unansweredDue()
	att := e.attributed()
	var ids []string
	for id, n := range att.ByCause {
		if n > 0 {
			ids = append(ids, string(id))
		}
	}
	if len(flows) == 0 && len(ids) == 0 {
		return nil
	}
	f := report.Finding{Cause: causes.UnexplainedDrops, Confidence: report.Possible,
		Title: "Handshakes fail and no cause was confirmed"}
	var peers []string
	ports := map[uint16]bool{}
	syns := 0
	for i, fl := range flows {
		peers = append(peers, fl.Client.Addr().Unmap().String())
		ports[fl.Server.Port()] = true
		syns += fl.SYNs
		if i < 5 {
			f.Evidence = append(f.Evidence, report.Evidence{Source: "capture", Text: "unanswered: " + flowText(fl),
				Data: map[string]any{"client": fl.Client.String(), "server": fl.Server.String(), "syns": fl.SYNs}})
		}
	}
	f.Peers = uniq(peers)
	var seen []string
	if len(flows) > 0 {
		f.Severity = report.Critical
		seen = append(seen, fmt.Sprintf("%d SYNs in %d handshakes from %s got neither a SYN-ACK nor a RST", syns, len(flows), strings.Join(limit(f.Peers, 3), ", ")))
	} else {
		f.Severity = report.Warning
	}
	var names []string
	for name, n := range att.ByCounter {
		if n > 0 {
			names = append(names, name)
		}
	}
	if len(names) > 0 {
		names = uniq(names)
		f.Evidence = append(f.Evidence, counterEv(e, names...)...)
		seen = append(seen, "drop counters rose: "+strings.Join(names, ", "))
	}
	for _, n := range []string{sourceCounters, sourceListeners, sourceSynRecv, sourceRoutes, sourceReplay, sourceSysctls, sourceFirewall, sourceXTables, sourceDataplane, sourceTC, sourceConntrack, sourceCapture, sourceTrace} {
		if !e.checked(n) {
			f.Evidence = append(f.Evidence, report.Evidence{Source: "doctor", Text: fmt.Sprintf("not checked: %s (%s)", n, e.whyUnchecked(n)),
				Data: map[string]any{"source": n, "reason": e.whyUnchecked(n)}})
		}
	}
	if fates := unexplainedFates(e, found); len(fates) > 0 {
		f.Evidence = append(f.Evidence, fates...)
		seen = append(seen, "the kernel's own fates: "+fates[0].Text)
	}
	f.Summary = strings.Join(seen, "; ") + "; no check confirmed a cause"
	f.Why = "the evidence shows handshakes failing, and no rule found why in what was read"
	f.Drops = int64(syns)
	var args []any
	for _, p := range sortedPorts(ports) {
		args = append(args, "--port", p)
	}
	for _, p := range limit(f.Peers, 4) {
		if _, err := netip.ParseAddr(p); err == nil {
			args = append(args, "--peer", p)
		}
	}
	args = append(args, "--duration", "30s")
	f.Fix = fixcmd.Of(e.synscopeCmd(append([]any{"trace"}, args...)...)).
		Note("names each SYN's fate from the kernel's own drop reasons; read the sources listed as not checked, if any").String()
	return []report.Finding{f}
}

func sortedPorts(m map[uint16]bool) []uint16 {
	var out []uint16
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// answerDue is how long after its last SYN a flow must have been watched
// to count as unanswered: a listener answers in microseconds, so a second
// of silence while later packets were still being captured is no race
// with the window's end.
const answerDue = time.Second

// unansweredDue lists captured inbound flows whose SYNs got neither a
// SYN-ACK nor a RST: those that retransmitted, and those whose last SYN
// came at least answerDue before the last handshake packet the capture
// saw (a client that gives up after one SYN, as most dialers with a
// short timeout do, retransmits nothing).
func (e *Evidence) unansweredDue() []capture.Flow {
	if e.Capture == nil {
		return nil
	}
	var last time.Time
	for _, f := range e.Capture.Flows {
		for _, ts := range []time.Time{f.LastSYN, f.FirstSYNACK} {
			if ts.After(last) {
				last = ts
			}
		}
	}
	var out []capture.Flow
	for _, f := range e.Capture.Unanswered(capture.Inbound) {
		// A capture that lost packets may have lost the answer: then
		// only the client's own retransmission counts.
		quiet := e.Capture.KernelDrops == 0 && !f.LastSYN.IsZero() && !f.LastSYN.Add(answerDue).After(last)
		if f.SYNs >= 2 || quiet {
			out = append(out, f)
		}
	}
	return out
}

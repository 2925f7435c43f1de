package doctor

import (
	"fmt"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/sockets"
)

// The accept and SYN queues: overflow, syncookies, the last-quarter rule, a capped backlog.

func ruleAcceptQueue(e *Evidence) []report.Finding {
	lo := e.delta("TcpExtListenOverflows")
	// The catalog's share of the window's drops; split over the full
	// listeners by their own drop counters, the rest to the first.
	left := e.attributed().ByCause[causes.AcceptQueueOverflow]
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
			Drops:     min(max(dd, 0), int64(left)),
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
		left -= uint64(f.Drops)
		out = append(out, f)
	}
	if len(out) > 0 {
		out[0].Drops += int64(left)
	}
	if len(out) == 0 && lo > 0 {
		why := "ListenOverflows rose in the window; no listener's queue was full at the moment it was read"
		if !e.checked(sourceListeners) {
			why = "ListenOverflows rose in the window; the listeners were not read, so which queue is full is not known"
		}
		out = append(out, report.Finding{
			Cause: causes.AcceptQueueOverflow, Severity: report.Warning, Confidence: report.Likely,
			Why:      why,
			Summary:  fmt.Sprintf("%d SYNs or final ACKs dropped because an accept queue was full (bursty)", lo),
			Evidence: counterEv(e, "TcpExtListenOverflows", "TcpExtListenDrops"),
			Fix: fixcmd.Notes("check the application's accept loop; raise the listen() backlog and net.core.somaxconn:").
				Run(e.sysctlCmd("net.core.somaxconn", 4096)).String(),
			Drops: int64(left),
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
	cookies := "syncookies are off (tcp_syncookies=" + e.sysctl("net.ipv4.tcp_syncookies") + ")"
	if !e.checked(sourceSysctls) {
		cookies = "syncookies were off when they were dropped (the sysctls were not read)"
	}
	if qf <= 0 {
		return e.lastQuarter()
	}
	f := report.Finding{
		Cause: causes.SynQueueOverflow, Severity: report.Critical, Confidence: report.Confirmed,
		Why:      "TCPReqQFullDrop counts exactly this drop",
		Summary:  fmt.Sprintf("%d SYNs dropped because a SYN queue was full and %s", qf, cookies),
		Evidence: counterEv(e, "TcpExtTCPReqQFullDrop", "TcpExtListenDrops"),
		Fix: fixcmd.Of(e.sysctlCmd("net.ipv4.tcp_syncookies", 1)).
			Note("and raise the listen() backlog with net.core.somaxconn if the load is legitimate").String(),
		Drops: int64(e.attributed().ByCause[causes.SynQueueOverflow]),
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
			// The share of ListenDrops no counter names: this rule
			// claims it (ruleUnexplained then reports none).
			Drops: int64(e.attributed().ByCause[causes.UnexplainedDrops]),
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

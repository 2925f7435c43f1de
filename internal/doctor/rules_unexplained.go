package doctor

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
)

// ListenDrops that no other rule explains.

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

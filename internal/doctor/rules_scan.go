package doctor

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
)

// Half-open port scans: what the packets say about a source probing
// ports, so that refusals it collects are information, not no-listener.

// scanMinPorts is how many distinct refused ports one source must probe,
// each once, to be taken for a scanner. A client retrying a closed port
// opens a new flow to the same port (or retransmits): never a scan.
const scanMinPorts = 3

// portScan is one source's probing seen in the capture.
type portScan struct {
	src     netip.Addr
	closed  []uint16 // refused ports, ascending
	open    []uint16 // answered ports, ascending
	halfOpn int      // answered flows the scanner reset instead of completing
	bare    int      // SYNs without TCP options (no MSS)
	flows   int
}

// portScans finds sources whose inbound flows look like a port scan: every
// refused flow from the source is a single SYN (no retransmission), no
// port was tried twice, and at least scanMinPorts distinct ports refused
// it. The result is keyed by source address.
func (e *Evidence) portScans() map[netip.Addr]*portScan {
	if e.Capture == nil {
		return nil
	}
	type acc struct {
		ps      portScan
		perPort map[uint16]int
		retried bool
	}
	by := map[netip.Addr]*acc{}
	for _, f := range e.Capture.Flows {
		if f.Dir != capture.Inbound {
			continue
		}
		src := f.Client.Addr().Unmap()
		a := by[src]
		if a == nil {
			a = &acc{ps: portScan{src: src}, perPort: map[uint16]int{}}
			by[src] = a
		}
		a.ps.flows++
		if f.MSS == 0 {
			a.ps.bare++
		}
		port := f.Server.Port()
		switch {
		case f.Refused():
			a.perPort[port]++
			if f.SYNs > 1 || a.perPort[port] > 1 {
				a.retried = true
			}
		case f.Answered():
			if f.ClientRSTs > 0 {
				a.ps.halfOpn++
			}
			if !containsPort(a.ps.open, port) {
				a.ps.open = append(a.ps.open, port)
			}
		}
	}
	out := map[netip.Addr]*portScan{}
	for src, a := range by {
		if a.retried || len(a.perPort) < scanMinPorts {
			continue
		}
		for p := range a.perPort {
			a.ps.closed = append(a.ps.closed, p)
		}
		sort.Slice(a.ps.closed, func(i, j int) bool { return a.ps.closed[i] < a.ps.closed[j] })
		sort.Slice(a.ps.open, func(i, j int) bool { return a.ps.open[i] < a.ps.open[j] })
		ps := a.ps
		out[src] = &ps
	}
	return out
}

// rulePortScan reports each scanning source as information: who, how many
// ports, which were closed. The kernel answered every probe as it should
// (RST for a closed port, SYN-ACK for an open one), so nothing is wrong.
func rulePortScan(e *Evidence) []report.Finding {
	scans := e.portScans()
	var srcs []netip.Addr
	for s := range scans {
		srcs = append(srcs, s)
	}
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].Less(srcs[j]) })
	var out []report.Finding
	for _, s := range srcs {
		ps := scans[s]
		var closed []string
		for _, p := range ps.closed {
			closed = append(closed, fmt.Sprint(p))
		}
		ev := []report.Evidence{{Source: "capture", Text: fmt.Sprintf("%s probed %d ports with one SYN each, none retransmitted: closed (answered with RST) %s",
			s, len(ps.closed)+len(ps.open), strings.Join(limit(closed, 20), ", ")),
			Data: map[string]any{"source": s.String(), "closed_ports": ps.closed, "open_ports": ps.open}}}
		if len(ps.open) > 0 {
			ev = append(ev, report.Evidence{Source: "capture", Text: fmt.Sprintf("open ports probed: %v; %d SYN-ACKs were reset by the source instead of completed (half-open scan)", ps.open, ps.halfOpn)})
		}
		if ps.bare > 0 {
			ev = append(ev, report.Evidence{Source: "capture", Text: fmt.Sprintf("%d of %d SYNs carried no TCP options (a crafted SYN: a client's kernel always sends MSS)", ps.bare, ps.flows)})
		}
		out = append(out, report.Finding{
			Cause: causes.PortScan, Severity: report.Info, Confidence: report.Likely,
			Why:      "one source sent a single SYN to each of several ports, closed ones refused by RST as they should be; no client retried",
			Summary:  fmt.Sprintf("%s scanned %d ports (%d closed): the refusals are the kernel answering a scan, not a missing service", s, len(ps.closed)+len(ps.open), len(ps.closed)),
			Evidence: ev, Peers: []string{s.String()},
			Fix: fixcmd.Notes("nothing to fix on this host; if the source should not reach it, filter it upstream").String(),
		})
	}
	return out
}

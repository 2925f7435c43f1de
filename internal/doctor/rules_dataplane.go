package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/dataplane"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
)

// Drops beside nftables: legacy iptables rules, BPF programs (XDP, tc,
// tcx, cgroup_skb) and listeners' socket filters. A present program is
// inventory (the dataplane check lists it); it becomes a finding only when
// its own verdict on a SYN for a live listener is a drop, and the finding
// is confirmed when the window's SYNs were lost where it runs.

// dataplanePeers are the clients the dataplane source builds its SYNs
// from: the named ones and those whose SYNs went unanswered.
func (r *run) dataplanePeers(res *capture.Result) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr) {
		if a = a.Unmap(); a.IsValid() && !seen[a] && len(out) < 8 {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, p := range r.opts.Peers {
		add(p.Addr())
	}
	if res != nil {
		for _, f := range res.Flows {
			if f.Dir == capture.Inbound && !f.Answered() && !f.Refused() {
				add(f.Client.Addr())
			}
		}
	}
	return out
}

func ruleXTables(e *Evidence) []report.Finding {
	if e.XTables == nil || e.XTablesStart == nil {
		return nil
	}
	start := map[string]uint64{}
	for _, r := range e.XTablesStart {
		start[r.Key()] = r.Packets
	}
	var out []report.Finding
	for _, r := range e.XTables {
		if !r.Drops() {
			continue
		}
		before, ok := start[r.Key()]
		if !ok || r.Packets <= before {
			continue
		}
		delta := r.Packets - before
		port, sure, ok := e.xtDropsHandshake(r)
		if !ok {
			continue
		}
		what := fmt.Sprintf("SYNs to port %d", port)
		if out := r.Chain == "OUTPUT" || r.Chain == "POSTROUTING"; out {
			what = fmt.Sprintf("SYN-ACKs from port %d", port)
		}
		f := report.Finding{
			Cause:    causes.FirewallDrop,
			Severity: report.Critical,
			Summary:  fmt.Sprintf("legacy %s rule %q (table %s) drops %s", strings.TrimSuffix(r.Tool(), "-legacy"), r.Text, r.Table, what),
			Evidence: []report.Evidence{{Source: "xtables-legacy",
				Text: fmt.Sprintf("%s -t %s: %s — counter +%d packets in %s (total %d)", r.Tool(), r.Table, r.Text, delta, e.Window, r.Packets),
				Data: map[string]any{"table": r.Table, "chain": r.Chain, "num": r.Num, "rule": r.Text, "target": r.Target,
					"packets_delta": delta, "port": port}}},
			Drops: int64(delta),
		}
		ipt := e.tool(r.Tool())
		if r.Policy {
			f.Fix = fixcmd.Of(ipt.Append("-t", r.Table, "-I", r.Chain, "-p", "tcp", "--dport", port, "-j", "ACCEPT")).
				Note("the chain's policy drops; this accepts the port before it").String()
		} else {
			f.Fix = fixcmd.Of(ipt.Append("-t", r.Table, "-D", r.Chain, r.Num)).Note("deletes rule " + fmt.Sprint(r.Num) + " of " + r.Chain + ": " + r.Text).String()
		}
		if sure {
			f.Confidence, f.Why = report.Confirmed, "the rule matches the handshake to a live listener and its own counter rose in the window"
		} else {
			f.Confidence, f.Why = report.Likely, "the rule's counter rose in the window and its decoded selectors take the handshake (some selectors were not decoded)"
		}
		for _, fl := range e.unansweredTo(port) {
			f.Peers = append(f.Peers, fl.Client.Addr().String())
		}
		f.Peers = uniq(f.Peers)
		out = append(out, f)
	}
	return out
}

// xtDropsHandshake reports the listener port whose SYN (in input chains)
// or SYN-ACK (in output chains) the rule takes, and whether every selector
// was decided.
func (e *Evidence) xtDropsHandshake(r dataplane.XTRule) (port uint16, sure, ok bool) {
	var pkts []dataplane.Packet
	outChain := r.Chain == "OUTPUT" || r.Chain == "POSTROUTING"
	inChain := r.Chain == "INPUT" || r.Chain == "PREROUTING"
	mk := func(client, server netip.Addr, cport, sport uint16, inIf string) {
		if !outChain {
			pkts = append(pkts, dataplane.Packet{Src: client, Dst: server, Sport: cport, Dport: sport, Flags: 0x02, InIf: inIf})
		}
		if !inChain {
			pkts = append(pkts, dataplane.Packet{Src: server, Dst: client, Sport: sport, Dport: cport, Flags: 0x12})
		}
	}
	if e.Capture != nil {
		for _, f := range e.Capture.Flows {
			if f.Dir == capture.Inbound && !f.Answered() {
				mk(f.Client.Addr().Unmap(), f.Server.Addr().Unmap(), f.Client.Port(), f.Server.Port(), e.linkName(f.Ifindex))
			}
		}
	}
	for _, l := range e.Listeners {
		la := l.Local.Addr().Unmap()
		if la.IsLoopback() {
			continue
		}
		// The listener's families, with an unknown client (and server,
		// for a wildcard) of that family.
		unspec := map[int]netip.Addr{4: netip.IPv4Unspecified(), 6: netip.IPv6Unspecified()}
		fams := []int{famOf(la)}
		if l.Family == unix.AF_INET6 && la.IsUnspecified() {
			fams = []int{4, 6}
		}
		for _, fam := range fams {
			if (r.Family == 6) != (fam == 6) {
				continue
			}
			server := la
			if la.IsUnspecified() {
				server = unspec[fam]
			}
			mk(unspec[fam], server, 0, l.Local.Port(), "")
		}
	}
	for _, p := range pkts {
		yes, maybe := r.Match(p)
		lp := p.Dport
		if p.Flags == 0x12 {
			lp = p.Sport
		}
		if yes {
			return lp, true, true
		}
		if yes || maybe {
			port, sure, ok = lp, false, true
		}
	}
	return port, sure, ok
}

// ruleBPFDrop blames a program or socket filter whose verdict on a SYN
// for a live listener is a drop.
func ruleBPFDrop(e *Evidence) []report.Finding {
	if e.Dataplane == nil {
		return nil
	}
	var out []report.Finding
	for _, p := range e.Dataplane.Programs {
		if !p.Ingress() {
			continue // SYN-ACK egress drops are synack-egress-drop's
		}
		dropped := p.Dropped()
		if len(dropped) == 0 {
			continue
		}
		out = append(out, e.programFinding(p, dropped))
	}
	for _, sf := range e.Dataplane.SocketFilters {
		var dropped []dataplane.TestRun
		for _, t := range sf.Tests {
			if t.Verdict == dataplane.Drop {
				dropped = append(dropped, t)
			}
		}
		if len(dropped) > 0 {
			out = append(out, e.socketFilterFinding(sf, dropped))
		}
	}
	return out
}

func testsText(ts []dataplane.TestRun) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.String())
	}
	return strings.Join(s, "; ")
}

// lostTo counts the window's unanswered SYNs (captured) and listener
// drops for the servers the dropped tests aimed at.
func (e *Evidence) lostTo(ts []dataplane.TestRun) (syns int, listenerDrops int64, peers []string) {
	ports := map[uint16]bool{}
	for _, t := range ts {
		ports[t.Server.Port()] = true
	}
	// Every unanswered flow counts here (not only retried ones, as in
	// unansweredTo): the program's own verdict already says the SYN dies;
	// two SYNs or more are needed, so one SYN at the window's end is not
	// enough.
	if e.Capture != nil {
		for _, f := range e.Capture.Unanswered(capture.Inbound) {
			if ports[f.Server.Port()] {
				syns += f.SYNs
				peers = append(peers, f.Client.Addr().String())
			}
		}
	}
	if syns < 2 {
		syns, peers = 0, nil
	}
	for i := range e.Listeners {
		l := &e.Listeners[i]
		if ports[l.Local.Port()] {
			if d := e.listenerDropsDelta(l); d > 0 {
				listenerDrops += d
			}
		}
	}
	return syns, listenerDrops, uniq(peers)
}

func (e *Evidence) programFinding(p dataplane.Program, dropped []dataplane.TestRun) report.Finding {
	syns, ldrops, peers := e.lostTo(dropped)
	f := report.Finding{
		Cause:    causes.BPFDrop,
		Severity: report.Critical,
		Summary:  fmt.Sprintf("BPF program %q (id %d, %s) drops SYNs to %s", p.Name, p.ID, p.Where(), dropped[0].Server),
		Evidence: []report.Evidence{{Source: "dataplane",
			Text: fmt.Sprintf("%s: program %q id %d tag %s, test run (BPF_PROG_TEST_RUN) of a synthesized SYN: %s", p.Where(), p.Name, p.ID, p.Tag, testsText(dropped)),
			Data: map[string]any{"hook": p.Hook, "dev": p.Dev, "cgroup": p.Cgroup, "prog_id": p.ID, "prog_name": p.Name, "tag": p.Tag,
				"pref": p.Pref, "link_id": p.LinkID, "mode": p.Mode}}},
		Peers: peers,
	}
	seen := syns > 0
	switch p.Hook {
	case dataplane.HookXDP:
		f.Evidence = append(f.Evidence, report.Evidence{Source: "dataplane",
			Text: "XDP runs before packet capture and every counter: SYNs it drops are never seen here"})
		seen = false
	case dataplane.HookCgroupIn:
		seen = seen || ldrops > 0
	}
	if ldrops > 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "sockets", Text: fmt.Sprintf("listener drops +%d in %s", ldrops, e.Window)})
	}
	if syns > 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "capture", Text: fmt.Sprintf("%d SYNs to the port went unanswered (from %s)", syns, strings.Join(peers, ", "))})
	}
	f.Drops = max(int64(syns), ldrops, 1)
	if seen {
		f.Confidence, f.Why = report.Confirmed, "the program drops a SYN for the listener when tested, and the window's SYNs to it were lost where it runs"
	} else {
		f.Confidence, f.Why = report.Likely, "the program drops a SYN for the listener when tested; the lost SYNs themselves could not be counted where it runs"
	}
	f.Fix = e.programFix(p)
	return f
}

func (e *Evidence) programFix(p dataplane.Program) string {
	if p.LinkID != 0 {
		return fixcmd.Of(e.tool("bpftool").Append("link", "detach", "id", p.LinkID)).
			Note(fmt.Sprintf("program %q is held by bpf link %d; detaching it removes the program from %s (its owner may attach it again)", p.Name, p.LinkID, p.Where())).String()
	}
	switch p.Hook {
	case dataplane.HookXDP:
		mode := map[string]string{"driver": "xdpdrv", "generic": "xdpgeneric", "offload": "xdpoffload"}[p.Mode]
		if mode == "" {
			mode = "xdp"
		}
		return fixcmd.Of(e.tool("ip").Append("link", "set", "dev", p.Dev, mode, "off")).Note(fmt.Sprintf("removes XDP program %q from %s", p.Name, p.Dev)).String()
	case dataplane.HookTCIngress:
		return fixcmd.Of(e.tool("tc").Append("filter", "del", "dev", p.Dev, "ingress", "pref", p.Pref)).Note(fmt.Sprintf("removes tc filter pref %d (program %q) from %s ingress", p.Pref, p.Name, p.Dev)).String()
	case dataplane.HookCgroupIn:
		return fixcmd.Of(fixcmd.New("bpftool", "cgroup", "detach", p.Mount+p.Cgroup, "ingress", "id", p.ID)).
			Note(fmt.Sprintf("detaches program %q from cgroup %s (a systemd IPAddressDeny= comes back with the unit: change the unit instead)", p.Name, p.Cgroup)).String()
	}
	return fixcmd.Notes(fmt.Sprintf("remove program %q (id %d) from %s", p.Name, p.ID, p.Where())).String()
}

func (e *Evidence) socketFilterFinding(sf dataplane.SocketFilter, dropped []dataplane.TestRun) report.Finding {
	_, ldrops, peers := e.lostTo(dropped)
	f := report.Finding{
		Cause:    causes.BPFDrop,
		Severity: report.Critical,
		Summary:  fmt.Sprintf("socket filter on the listener %s (%s pid %d) drops SYNs", sf.Listener, sf.Comm, sf.PID),
		Evidence: []report.Evidence{{Source: "dataplane",
			Text: fmt.Sprintf("socket filter on the listener %s (%s pid %d fd %d): classic BPF, %d instructions, run over a synthesized SYN: %s", sf.Listener, sf.Comm, sf.PID, sf.FD, sf.Insns, testsText(dropped)),
			Data: map[string]any{"listener": sf.Listener.String(), "pid": sf.PID, "fd": sf.FD, "insns": sf.Insns}}},
		Peers: peers,
		Drops: max(ldrops, 1),
		Fix:   fixcmd.Notes(fmt.Sprintf("the filter belongs to %s (pid %d), attached with SO_ATTACH_FILTER: fix or restart the application without it", sf.Comm, sf.PID)).String(),
	}
	if ldrops > 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "sockets", Text: fmt.Sprintf("listener drops +%d in %s", ldrops, e.Window)})
		f.Confidence, f.Why = report.Confirmed, "the filter drops a SYN for the listener when run, and the listener's drop counter rose in the window"
	} else {
		f.Confidence, f.Why = report.Likely, "the filter drops a SYN for the listener when run; no drop was counted in the window"
	}
	return f
}

// summariseDataplane is the report's inventory: every program and socket
// filter, and the legacy iptables rules that drop or reject (bounded).
func summariseDataplane(e *Evidence) []string {
	var out []string
	if e.Dataplane != nil {
		out = append(out, e.Dataplane.Lines()...)
	}
	const maxRules = 50
	n := 0
	for _, r := range e.XTables {
		if !r.Drops() {
			continue
		}
		if n++; n <= maxRules {
			out = append(out, fmt.Sprintf("%s -t %s: %s (%d packets)", r.Tool(), r.Table, r.Text, r.Packets))
		}
	}
	if n > maxRules {
		out = append(out, fmt.Sprintf("... and %d more legacy iptables DROP/REJECT rules", n-maxRules))
	}
	return out
}

package doctor

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
)

// nftables rules that drop or reject the SYN or the SYN-ACK.

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

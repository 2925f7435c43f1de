package doctor

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sockets"
)

// The SYN-ACK's way out and back: neighbours, SYN-ACKs never acknowledged, egress drops.

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
		if rt.Family == af(fam) && rt.Gateway == hop && rt.Covers(r.Peer.Addr) && rt.Dst.Bits() > best {
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

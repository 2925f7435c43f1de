package probe

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/safetext"
)

// JSON writes the report as one indented object (schema synscope.probe/v1).
func JSON(w io.Writer, r *Report) error {
	r.Version = buildinfo.Get()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Text writes the report for a human. Every string that came from the
// system, a DNS answer, a hosts file, the environment or a name the user
// typed goes through safetext.Show; commands were built by fixcmd.
func Text(w io.Writer, r *Report) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	S := safetext.Show
	// fwLine prints one firewall rule that may drop the SYN (this host's
	// or the server's), with its counter and removal command.
	fwLine := func(label string, f FWRule) {
		p("%s%s: %s  [%s]", label, S(f.Where), S(f.Rule), S(f.Verdict))
		if f.Delta >= 0 {
			p(" packets %d (+%d during the probe)", f.Packets, f.Delta)
		}
		p("\n")
		if f.Fix != "" {
			p("          remove: %s\n", f.Fix)
		}
	}

	if r.Target.OS != "" {
		p("synscope probe %s port %d — %s", S(r.Target.Host), r.Target.Port, S(r.Target.OS))
	} else {
		p("synscope probe %s port %d — netns %s", S(r.Target.Host), r.Target.Port, S(r.Target.Netns))
	}
	if r.Target.Mode == ModeRaw {
		p(", raw SYNs (one per attempt)")
	}
	p("\n\n")
	p("verdict: %s", r.Verdict)
	if r.Cause != "" {
		p("  [%s]", r.Cause)
	}
	p("\n  %s\n", S(r.Summary))
	if r.Next != "" {
		p("  next: %s\n", S(r.Next))
	}
	if r.NextCmd != "" {
		p("    %s\n", r.NextCmd)
	}

	if d := r.DNS; d != nil {
		p("\nname:\n")
		if d.Literal {
			p("  %s is an address: nothing to resolve\n", S(d.Name))
		} else {
			p("  config: %s (nameservers %s", S(d.ResolvConf), S(strings.Join(d.Servers, ", ")))
			if len(d.Search) > 0 {
				p("; search %s", S(strings.Join(d.Search, " ")))
			}
			p("), hosts %s", S(d.HostsFile))
			if len(d.Order) > 0 {
				p(", order %s", S(strings.Join(d.Order, " ")))
			}
			p("\n")
			for _, sc := range d.Scopes {
				dom := sc.Domain
				if dom == "" {
					dom = "every name"
				}
				p("  scope: %s (%s): %s", S(sc.Source), S(dom), S(strings.Join(sc.Servers, ", ")))
				if sc.Matches {
					p("  [serves %s]", S(d.Name))
				}
				p("\n")
			}
			if len(d.Hosts) > 0 {
				p("  hosts file: %s -> %s", S(d.Name), S(strings.Join(d.Hosts, ", ")))
				if d.HostsOverride {
					p("  (overrides DNS: the system resolver never asks DNS for this name)")
				}
				p("\n")
			}
			for _, q := range d.Queries {
				p("  %-4s %s @%s  %s  %.1f ms", q.Type, S(q.Name), S(q.Server), strings.ToUpper(q.Outcome), q.RTTms)
				if q.Rcode != "" && q.Rcode != "NOERROR" && !strings.EqualFold(q.Rcode, q.Outcome) {
					p(" (%s)", S(q.Rcode))
				}
				if len(q.Answers) > 0 {
					p(" -> %s", S(strings.Join(q.Answers, ", ")))
				}
				for _, c := range q.CNAMEs {
					p(" [cname %s]", S(c))
				}
				if q.Error != "" {
					p(": %s", S(q.Error))
				}
				p("\n")
			}
			switch {
			case d.Error != "":
				p("  does not resolve: %s\n", S(d.Error))
			case d.System:
				p("  system resolver (what applications get): %s\n", S(strings.Join(d.Addresses, ", ")))
			default:
				p("  addresses used: %s\n", S(strings.Join(d.Addresses, ", ")))
			}
		}
	}

	p("\nproxy:\n")
	if len(r.Proxy.Set) == 0 {
		p("  no proxy variables set\n")
	} else {
		for _, v := range r.Proxy.Set {
			p("  %s=%s\n", S(v.Name), S(v.Value))
		}
		switch {
		case r.Proxy.Applies:
			if r.Proxy.HTTP != "" {
				p("  applies to http://: %s\n", S(r.Proxy.HTTP))
			}
			if r.Proxy.HTTPS != "" {
				p("  applies to https://: %s\n", S(r.Proxy.HTTPS))
			}
			if r.Proxy.ALL != "" {
				p("  ALL_PROXY applies (curl and others): %s\n", S(r.Proxy.ALL))
			}
			p("  clients honouring these connect to the proxy, not to the target: this direct TCP test says nothing about the proxy path\n")
		case r.Proxy.NoProxy != "":
			p("  not applied to this target: NO_PROXY %s\n", S(r.Proxy.NoProxy))
		default:
			p("  none applies to this target\n")
		}
	}

	for _, sp := range r.Proxy.System {
		p("  %s: ", S(sp.Source))
		if sp.Proxy == "" && sp.PAC == "" && !sp.AutoDetect {
			p("direct")
		}
		if sp.Proxy != "" {
			p("proxy %s", S(sp.Proxy))
			if sp.Bypass != "" {
				p(" (bypass %s)", S(sp.Bypass))
			}
			if sp.Applies {
				p(" — applies to this target")
			} else {
				p(" — bypassed for this target")
			}
		}
		if sp.PAC != "" {
			p(" PAC script %s (not evaluated)", S(sp.PAC))
		}
		if sp.AutoDetect {
			p(" WPAD auto-detect on (not evaluated)")
		}
		p("\n")
	}

	if sv := r.Server; sv != nil {
		if sv.Via == ServerViaWatch {
			p("\nserver: watch %s", S(sv.Endpoint))
			if sv.Netns != "" {
				p(" (netns %s)", S(sv.Netns))
			}
			p(": %s", sv.Status)
		} else {
			p("\nserver: netns %s: %s", S(sv.Netns), sv.Status)
		}
		if sv.Reason != "" {
			p(" (%s)", S(sv.Reason))
		}
		p("\n")
		for _, m := range sv.Missing {
			p("  this kernel: %s\n", S(m))
		}
	}

	for _, a := range r.Addresses {
		p("\n%s (%s): %s", S(hostPort(a.Addr, r.Target.Port)), a.Family, a.Verdict)
		if a.Cause != "" {
			p(" [%s]", a.Cause)
		}
		p("\n")
		l := a.Local
		p("  route:  %s\n", S(l.Route))
		if l.ByHand != "" {
			p("          by hand: %s\n", l.ByHand)
		}
		if b := l.Blocker; b != nil {
			if b.Route != "" {
				p("  blocked by route: %s (rule %s)", S(b.Route), S(b.Rule))
			} else {
				p("  blocked by rule: %s", S(b.Rule))
			}
			p("\n          remove: %s\n", b.Fix)
		}
		if n := l.Neighbor; n != nil {
			p("  next hop: %s dev %s %s", S(n.Addr), S(n.Dev), S(n.State))
			if n.MAC != "" {
				p(" lladdr %s", S(n.MAC))
			}
			p("\n")
		}
		for _, f := range l.Firewall {
			fwLine("  local firewall: ", f)
		}
		shownFW := map[string]bool{}
		for _, at := range a.Attempts {
			p("  #%-3d %-16s", at.Seq, at.Outcome)
			if at.RTTms > 0 {
				p(" %8.3f ms", at.RTTms)
			}
			if at.LocalPort != 0 {
				p("  sport %d", at.LocalPort)
			}
			if at.SynRetrans > 0 {
				p("  (%d SYN retransmit(s))", at.SynRetrans)
			}
			if at.ICMPFrom != "" {
				p("  from %s %s", S(at.ICMPFrom), icmpText(a.Family == "ipv6", at.ICMPType, at.ICMPCode))
			}
			if at.TTL > 0 {
				p("  ttl %d (sent from hop %d)", at.TTL, at.FromHop)
			}
			if at.Error != "" && at.Outcome != OutRefused {
				p("  %s", S(at.Error))
			}
			p("\n")
			if sv := at.Server; sv != nil {
				p("        sent → server: %s", S(sv.Text))
				if len(sv.Evidence) > 0 {
					p(" [%s]", S(strings.Join(sv.Evidence, "; ")))
				}
				back := "no SYN-ACK back at the client"
				switch at.Outcome {
				case OutConnected:
					back = "SYN-ACK back at the client"
				case OutRefused:
					back = "reset back at the client"
				}
				p(" → %s\n", back)
				for _, f := range sv.Firewall {
					if shownFW[f.Where] {
						continue // the same rule for every attempt: once
					}
					shownFW[f.Where] = true
					fwLine("        server firewall: ", f)
				}
			}
		}
		if a.ServerHop > 0 {
			p("  server at hop %d (%s)", a.ServerHop, a.ServerHopBy)
			if a.ResetHop > 0 {
				p("; resets from hop %d", a.ResetHop)
			}
			p("\n")
		}
		s := a.Stats
		p("  stats: %d sent, %d connected, %d refused, %d timed out, %d unreachable, %d errors; loss %.1f%%",
			s.Sent, s.Connected, s.Refused, s.Timeouts, s.Unreachable, s.Errors, s.LossPct)
		if s.MedianMs > 0 {
			p("; min/median/p99 %.3f/%.3f/%.3f ms", s.MinMs, s.MedianMs, s.P99Ms)
		}
		p("\n")
		if len(a.Path) > 0 {
			p("  path (TCP SYN to port %d, %d source ports per TTL):\n", r.Target.Port, PathPorts)
			for _, h := range a.Path {
				p("    %2d  %-14s", h.TTL, h.Answer)
				if h.Addr != "" {
					p(" %s", S(h.Addr))
				}
				if h.Name != "" {
					p(" (%s)", S(h.Name))
				}
				if h.RTTms > 0 {
					p("  %.3f ms", h.RTTms)
				}
				answers := map[string]int{}
				for _, hp := range h.Probes {
					answers[hp.Answer]++
				}
				if len(answers) > 1 && answers[ansNone] > 0 {
					p("  (an unanswered probe beside answered ones is often ICMP rate limiting)")
				}
				if len(answers) > 1 {
					var parts []string
					for _, hp := range h.Probes {
						parts = append(parts, fmt.Sprintf("sport %d %s", hp.LocalPort, hp.Answer))
					}
					p("  [%s]", strings.Join(parts, ", "))
				}
				for _, hp := range h.Probes {
					if hp.Quote != "" && hp.Answer != ansLocal {
						p("  quotes %s", S(hp.Quote))
						break
					}
				}
				p("\n")
			}
			last := a.Path[len(a.Path)-1]
			switch {
			case a.Reached:
				p("    reached the destination at hop %d\n", a.ReachTTL)
			case last.Answer == ansUnreachable:
				p("    hop %d (%s) rejects the SYN with ICMP unreachable\n", last.TTL, S(last.Addr))
			case a.LastHop > 0:
				p("    SYNs seen to pass hop %d (%s); nothing answers beyond it\n", a.LastHop, S(a.LastAddr))
			}
			if a.PathNote != "" {
				p("    %s\n", S(a.PathNote))
			}
		}
	}

	var skipped []string
	for _, c := range r.Checks {
		if c.Status != "ok" {
			skipped = append(skipped, fmt.Sprintf("%s (%s: %s)", c.Name, c.Status, S(c.Detail)))
		}
	}
	if len(skipped) > 0 {
		p("\nnot checked: %s\n", strings.Join(skipped, "; "))
	}
	return bw.Flush()
}

// ProgressLine is the running summary line of --count 0 for one attempt:
// the attempt, then the address's totals so far, e.g.
//
//	10.77.2.2 #6 connected 0.248 ms | sent 6: connected 6, refused 0, timeout 0, unreachable 0, error 0; loss 0.0%; median 0.083 ms
func ProgressLine(addr string, a Attempt, s Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d %s", safetext.Show(addr), a.Seq, a.Outcome)
	if a.RTTms > 0 {
		fmt.Fprintf(&b, " %.3f ms", a.RTTms)
	}
	if a.ICMPFrom != "" {
		fmt.Fprintf(&b, " from %s", safetext.Show(a.ICMPFrom))
	}
	fmt.Fprintf(&b, " | sent %d: connected %d, refused %d, timeout %d, unreachable %d, error %d; loss %.1f%%",
		s.Sent, s.Connected, s.Refused, s.Timeouts, s.Unreachable, s.Errors, s.LossPct)
	if s.MedianMs > 0 {
		fmt.Fprintf(&b, "; median %.3f ms", s.MedianMs)
	}
	return b.String()
}

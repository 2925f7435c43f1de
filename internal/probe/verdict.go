package probe

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fixcmd"
)

// addrVerdict decides one address's verdict from its observations (pure).
func addrVerdict(a *AddrProbe) (Verdict, causes.ID) {
	st := a.Stats
	if !a.Local.RouteOK {
		return LocalNoRoute, causes.NoRouteToPeer
	}
	if st.Connected > 0 {
		return Connected, ""
	}
	if id := serverCause(a); id != "" {
		return Confirmed, id
	}
	for _, r := range a.Local.Firewall {
		if r.Delta > 0 && st.Refused == 0 {
			return LocalFirewall, causes.FirewallDrop
		}
	}
	if a.ForgedResets > 0 && a.ForgedResets == st.Refused {
		return ForgedReset, ""
	}
	if st.Refused > 0 {
		return Refused, causes.NoListener
	}
	if st.Unreachable > 0 {
		for _, at := range a.Attempts {
			if at.Outcome == OutUnreachable {
				id, _, _ := causes.ForICMP(strings.Contains(a.Family, "6"), uint8(at.ICMPType), uint8(at.ICMPCode))
				return PathReject, id
			}
		}
	}
	if st.Timeouts == 0 && st.Errors > 0 {
		if len(a.Local.Firewall) > 0 {
			return LocalFirewall, causes.FirewallDrop
		}
		return LocalError, ""
	}
	if len(a.Path) > 0 {
		last := a.Path[len(a.Path)-1]
		switch {
		case last.Answer == ansUnreachable:
			return PathReject, icmpCause(a, last)
		case a.Reached:
			return TimedOut, ""
		case a.PingTTL > 0 && a.PingTTL == a.LastHop+1:
			return ServerSilent, ""
		default:
			return PathDrop, ""
		}
	}
	return TimedOut, ""
}

// serverCause is the cause the server's kernel gave most of the failed
// attempts' SYNs ("" when it gave none).
func serverCause(a *AddrProbe) causes.ID {
	n := map[causes.ID]int{}
	var best causes.ID
	for _, at := range a.Attempts {
		if at.Outcome == OutConnected || at.Server == nil || !at.Server.Seen || at.Server.Cause == "" {
			continue
		}
		id := at.Server.Cause
		n[id]++
		if best == "" || n[id] > n[best] {
			best = id
		}
	}
	return best
}

// serverPhrase sums up the server's view of an address's failed attempts:
// "3/3 arrived, consumed: no route back to the client for the SYN-ACK"
// ("" when the server was not checked).
func serverPhrase(a *AddrProbe) string {
	counts := map[string]int{}
	var order []string
	failed := 0
	for _, at := range a.Attempts {
		if at.Outcome == OutConnected || at.Server == nil {
			continue
		}
		failed++
		if counts[at.Server.Text] == 0 {
			order = append(order, at.Server.Text)
		}
		counts[at.Server.Text]++
	}
	parts := make([]string, len(order))
	for i, t := range order {
		parts[i] = fmt.Sprintf("%d/%d %s", counts[t], failed, t)
	}
	return strings.Join(parts, ", ")
}

func hops(n int) string {
	if n == 1 {
		return "1 hop"
	}
	return fmt.Sprintf("%d hops", n)
}

func hopBy(by string) string {
	switch by {
	case "syn-ack":
		return "the hop its SYN-ACKs come from"
	case "path":
		return "where --path's SYNs got its SYN-ACK"
	case "icmp-echo":
		return "where ICMP echo reaches it"
	}
	return by
}

// causeTitle is the catalog's title of id in lower case, for a sentence.
func causeTitle(id causes.ID) string {
	c, ok := causes.Lookup(id)
	if !ok || c.Title == "" {
		return string(id)
	}
	return strings.ToLower(c.Title[:1]) + c.Title[1:]
}

func icmpCause(a *AddrProbe, h Hop) causes.ID {
	for _, p := range h.Probes {
		if p.Answer == ansUnreachable {
			id, _, _ := causes.ForICMP(strings.Contains(a.Family, "6"), uint8(p.ICMPType), uint8(p.ICMPCode))
			return id
		}
	}
	return ""
}

// decide sets the report's verdict, cause, summary and next step (pure).
func decide(r *Report) {
	if len(r.Addresses) == 0 {
		r.Verdict = DNSFailure
		msg := "no address"
		if r.DNS != nil && r.DNS.Error != "" {
			msg = r.DNS.Error
		}
		r.Summary = fmt.Sprintf("%s does not resolve: %s", r.Target.Host, msg)
		r.Next = "check the nameservers in " + dnsConfName(r) + " and that they answer for this name"
		if r.Target.OS != "" {
			r.NextCmd = osDNSNext(r.Target.OS)
		}
		return
	}
	for _, a := range r.Addresses {
		a.Verdict, a.Cause = addrVerdict(a)
	}
	var ok, bad []*AddrProbe
	for _, a := range r.Addresses {
		if a.Verdict == Connected {
			ok = append(ok, a)
		} else {
			bad = append(bad, a)
		}
	}
	switch {
	case len(bad) == 0:
		r.Verdict = Connected
		var parts []string
		for _, a := range ok {
			parts = append(parts, fmt.Sprintf("%s %d/%d connected (median %.3g ms)", hostPort(a.Addr, r.Target.Port), a.Stats.Connected, a.Stats.Sent, a.Stats.MedianMs))
		}
		r.Summary = strings.Join(parts, ", ")
		if lossy := lossyAddrs(ok); lossy != "" {
			r.Summary += "; but " + lossy
		}
	case len(ok) > 0 && familyOf(ok) != "" && familyOf(bad) != "" && familyOf(ok) != familyOf(bad):
		b := bad[0]
		r.Verdict, r.Cause = FamilyBroken, b.Cause
		r.Summary = fmt.Sprintf("%s %s while %s works: %s %s; %s %d/%d connected",
			famName(familyOf(bad)), verdictPhrase(b), famName(familyOf(ok)),
			hostPort(b.Addr, r.Target.Port), attemptsPhrase(b), hostPort(ok[0].Addr, r.Target.Port), ok[0].Stats.Connected, ok[0].Stats.Sent)
	default:
		b := bad[0]
		r.Verdict, r.Cause = b.Verdict, b.Cause
		r.Summary = fmt.Sprintf("%s: %s", hostPort(b.Addr, r.Target.Port), detailPhrase(b))
		if sp := serverPhrase(b); sp != "" && b.Verdict != Confirmed {
			r.Summary += "; at the server: " + sp
		}
		if len(ok) > 0 {
			r.Summary += fmt.Sprintf(" (%s connects)", hostPort(ok[0].Addr, r.Target.Port))
		}
	}
	if r.Verdict != Connected && r.Proxy.Applies {
		r.Summary = fmt.Sprintf("a proxy applies (%s); the direct path: %s", proxyOne(r.Proxy), r.Summary)
		r.Verdict = Proxy
		r.Next = "HTTP(S) clients here connect through the proxy, not directly: probe the proxy itself (synscope probe PROXYHOST:PORT); a direct TCP test says nothing about the proxy path"
		return
	}
	nextStep(r, bad)
}

func lossyAddrs(as []*AddrProbe) string {
	var parts []string
	for _, a := range as {
		if a.Stats.Connected < a.Stats.Sent {
			parts = append(parts, fmt.Sprintf("%s lost %.3g%% (%s)", hostPort(a.Addr, 0), 100-float64(a.Stats.Connected)*100/float64(a.Stats.Sent), attemptsPhrase(a)))
		}
	}
	return strings.Join(parts, ", ")
}

func proxyOne(p ProxyReport) string {
	switch {
	case p.HTTPS != "":
		return "https: " + p.HTTPS
	case p.HTTP != "":
		return "http: " + p.HTTP
	case p.ALL != "":
		return "all: " + p.ALL
	}
	for _, s := range p.System {
		if s.Applies {
			return s.Source + ": " + s.Proxy
		}
	}
	return "all: " + p.ALL
}

// familyOf is "ipv4" or "ipv6" when every address has that family.
func familyOf(as []*AddrProbe) string {
	f := ""
	for _, a := range as {
		if f == "" {
			f = a.Family
		} else if f != a.Family {
			return ""
		}
	}
	return f
}

func famName(f string) string {
	if f == "ipv6" {
		return "IPv6"
	}
	return "IPv4"
}

func hostPort(addr string, port uint16) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	if port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

// verdictPhrase is what happens to an address, as a verb phrase.
func verdictPhrase(a *AddrProbe) string {
	switch a.Verdict {
	case TimedOut, ServerSilent, PathDrop:
		return "times out"
	case Refused:
		return "is refused"
	case PathReject:
		return "is rejected on the path"
	case LocalNoRoute:
		return "has no route"
	case LocalFirewall:
		return "is dropped by a local firewall rule"
	case Confirmed:
		return "dies on the server (" + string(a.Cause) + ")"
	case ForgedReset:
		return "is reset by a device on the path"
	}
	return "fails"
}

func attemptsPhrase(a *AddrProbe) string {
	s := a.Stats
	var parts []string
	if s.Timeouts > 0 {
		parts = append(parts, fmt.Sprintf("timed out %d/%d", s.Timeouts, s.Sent))
	}
	if s.Refused > 0 {
		parts = append(parts, fmt.Sprintf("refused %d/%d", s.Refused, s.Sent))
	}
	if s.Unreachable > 0 {
		parts = append(parts, fmt.Sprintf("ICMP unreachable %d/%d", s.Unreachable, s.Sent))
	}
	if s.Errors > 0 {
		parts = append(parts, fmt.Sprintf("local error %d/%d", s.Errors, s.Sent))
	}
	if len(parts) == 0 {
		return "no attempt"
	}
	return strings.Join(parts, ", ")
}

// detailPhrase explains a failing address in one clause.
func detailPhrase(a *AddrProbe) string {
	switch a.Verdict {
	case ForgedReset:
		return fmt.Sprintf("refused (RST) %d/%d, but the reset came from a device %s away, not from the server at hop %d (%s): %s",
			a.Stats.Refused, a.Stats.Sent, hops(a.ResetHop), a.ServerHop, hopBy(a.ServerHopBy), "a middlebox answers in the server's name")
	case Confirmed:
		back := "no SYN-ACK came back to the client"
		if a.Stats.Refused > 0 {
			back = fmt.Sprintf("the client got a reset %d/%d", a.Stats.Refused, a.Stats.Sent)
		}
		return fmt.Sprintf("%s; confirmed by the server's kernel: %s; %s", attemptsPhrase(a), serverPhrase(a), back)
	case LocalNoRoute:
		if b := a.Local.Blocker; b != nil && b.Kind == "rule" {
			return fmt.Sprintf("this host has no route: %s; policy rule %d (%s) %ss the flow", a.Local.Route, b.Priority, b.Rule, b.Action)
		}
		if b := a.Local.Blocker; b != nil {
			return fmt.Sprintf("this host has no route: %s; policy rule %d (%s) looks up table %s, where the route %s ends it", a.Local.Route, b.Priority, b.Rule, b.TableName, b.Route)
		}
		return "this host has no route: " + a.Local.Route
	case LocalFirewall:
		for _, r := range a.Local.Firewall {
			if r.Verdict == fwOSRefused {
				return fmt.Sprintf("%s refused the connect: %s", r.Where, r.Rule)
			}
			if r.Delta > 0 || len(a.Local.Firewall) == 1 {
				return fmt.Sprintf("the SYN is dropped by a local nftables rule (%s: %s, %d packets during the probe)", r.Where, r.Rule, max(r.Delta, 0))
			}
		}
		return "the SYN is dropped by a local nftables rule"
	case Refused:
		return fmt.Sprintf("refused (RST) %d/%d: nothing listens on the port, or a firewall rejects with a reset", a.Stats.Refused, a.Stats.Sent)
	case PathReject:
		for _, at := range a.Attempts {
			if at.Outcome == OutUnreachable {
				return fmt.Sprintf("%s answers ICMP %s", at.ICMPFrom, icmpText(a.Family == "ipv6", at.ICMPType, at.ICMPCode))
			}
		}
		if n := len(a.Path); n > 0 {
			h := a.Path[n-1]
			return fmt.Sprintf("hop %d (%s) answers ICMP unreachable", h.TTL, h.Addr)
		}
	case ServerSilent:
		return fmt.Sprintf("%s; SYNs pass hop %d (%s), and ping reaches the destination at hop %d: the SYN reaches the destination's last hop and nothing answers — dropped by the destination or by a TCP filter on hop %d, which look alike from here", attemptsPhrase(a), a.LastHop, a.LastAddr, a.PingTTL, a.LastHop)
	case PathDrop:
		if a.LastHop == 0 {
			return fmt.Sprintf("%s; no SYN was seen to pass even hop 1", attemptsPhrase(a))
		}
		s := fmt.Sprintf("%s; consistent loss after hop %d (%s)", attemptsPhrase(a), a.LastHop, a.LastAddr)
		if a.PingTTL > a.LastHop+1 {
			s += fmt.Sprintf(", while ping reaches the destination at hop %d: a filter on TCP after hop %d", a.PingTTL, a.LastHop)
		}
		return s
	case TimedOut:
		return attemptsPhrase(a) + ": no answer (--path tells where the SYN dies)"
	}
	if len(a.Attempts) > 0 && a.Attempts[0].Error != "" {
		return attemptsPhrase(a) + ": " + a.Attempts[0].Error
	}
	return attemptsPhrase(a)
}

func icmpText(v6 bool, typ, code int) string {
	if _, txt, ok := causes.ForICMP(v6, uint8(typ), uint8(code)); ok && txt != "" {
		return fmt.Sprintf("%s (type %d code %d)", txt, typ, code)
	}
	return fmt.Sprintf("type %d code %d", typ, code)
}

func dnsConfName(r *Report) string {
	if r.DNS != nil && r.DNS.ResolvConf != "" {
		return r.DNS.ResolvConf
	}
	return "resolv.conf"
}

// nextStep says what to do next, with a printed command where one helps.
func nextStep(r *Report, bad []*AddrProbe) {
	if len(bad) == 0 {
		return
	}
	if r.Target.OS != "" {
		osNextStep(r, bad)
		return
	}
	b := bad[0]
	doctor := fixcmd.New("synscope", "doctor", "--port", r.Target.Port)
	if b.Local.Source != "" {
		doctor = doctor.Append("--peer", b.Local.Source)
	}
	switch r.Verdict {
	case LocalNoRoute:
		r.Next = "add a route for the destination on this host; confirm with the lookup below"
		r.NextCmd = b.Local.ByHand
		if bl := b.Local.Blocker; bl != nil {
			r.Next = fmt.Sprintf("this host's policy routing blocks the flow (%s %d): remove or narrow it; the command below removes it", bl.Kind, bl.Priority)
			if bl.Kind == "route" {
				r.Next = fmt.Sprintf("a %s route in table %s blocks the flow: remove or narrow it; the command below removes it", bl.RouteType, bl.TableName)
			}
			r.NextCmd = bl.Fix
		}
	case LocalFirewall:
		r.Next = "a rule in this host's own nftables output path drops the SYN; remove or narrow it"
	case Refused:
		r.Next = "on the server: is anything listening on the port and address? (a reset may also come from a firewall reject rule)"
		r.NextCmd = doctor.String()
	case FamilyBroken:
		r.Next = fmt.Sprintf("run synscope doctor on the server: it tells whether the %s SYNs arrive and why they get no answer (a classic: the server lost its %s default route, %s)",
			famName(b.Family), famName(b.Family), causes.NoRouteToPeer)
		r.NextCmd = doctor.String()
	case ServerSilent, TimedOut:
		r.Next = "run synscope doctor on the server: it tells whether the SYNs arrive and why they get no answer"
		r.NextCmd = doctor.String()
	case PathDrop:
		r.Next = fmt.Sprintf("check the filters of the hop after %s; on the server, synscope doctor tells whether any SYN arrives", orDash(b.LastAddr))
		r.NextCmd = doctor.String()
	case PathReject:
		r.Next = "the rejecting hop's firewall or routes decide this; it named itself in the ICMP error"
	case LocalError:
		r.Next = "the local stack refused the connect: see the error"
	case ForgedReset:
		r.Next = fmt.Sprintf("the reset is forged by the device at hop %d: check that hop's firewall (a reject-with-tcp-reset rule for this port); --path names the hops", b.ResetHop)
	case Confirmed:
		where, ns := serverWhere(r.Server)
		fix := "see the cause"
		if c, ok := causes.Lookup(b.Cause); ok {
			fix = c.Fix
		}
		r.Next = fmt.Sprintf("the fix is on the server (%s): %s The command below names the server's concrete fix", where, fix)
		cmd := fixcmd.New("synscope", "doctor")
		if ns != "" {
			cmd = cmd.Append("--netns", ns)
		}
		cmd = cmd.Append("--port", r.Target.Port)
		if b.Local.Source != "" {
			cmd = cmd.Append("--peer", b.Local.Source)
		}
		r.NextCmd = cmd.String()
		if f := serverRuleHit(b); f != nil {
			r.Next = fmt.Sprintf("the server's firewall drops the SYN (%s), %s: its counter rose by %d during the probe; remove or narrow it — the command below removes it",
				where, f.Where, f.Delta)
			r.NextCmd = f.Fix
		}
	}
}

// serverRuleHit is the server's rule whose counter rose with the probe's
// SYNs (the first named for any attempt), or nil.
func serverRuleHit(b *AddrProbe) *FWRule {
	for _, at := range b.Attempts {
		if at.Server == nil {
			continue
		}
		for i := range at.Server.Firewall {
			if f := &at.Server.Firewall[i]; f.Delta > 0 && f.Fix != "" {
				return f
			}
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ExitCode is 0 when every address connected without loss, 1 otherwise.
func (r *Report) ExitCode() int {
	if r.Verdict != Connected {
		return 1
	}
	for _, a := range r.Addresses {
		if a.Stats.Connected < a.Stats.Sent {
			return 1
		}
	}
	return 0
}

// serverWhere names the server for the next step, and the namespace
// doctor is to run in there ("" = the host's own): the namespace here, or
// the watch endpoint and the namespace its fates came from (pure).
func serverWhere(s *ServerReport) (where, ns string) {
	if s == nil {
		return "", ""
	}
	if s.Via != ServerViaWatch {
		return s.Netns, s.Netns
	}
	where = "the host of " + s.Endpoint
	if s.Netns != "" && s.Netns != "host" {
		return where + ", netns " + s.Netns, s.Netns
	}
	return where, ""
}

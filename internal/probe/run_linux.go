package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/synscope/synscope/internal/fateapi"
	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/routes"
)

// Run probes and returns the report. An error means the probe could not
// run at all (bad options, unknown namespace); everything else is in the
// report, with the checks that were skipped and why.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	t, err := netns.Open(o.Netns)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	if o.Etc == "" {
		o.Etc = "/etc"
	}
	rep := &Report{
		Schema: Schema, Time: start.UTC(),
		Target: Target{Host: o.Host, Port: o.Port, Netns: t.Label(), Family: o.Family, Mark: o.Mark,
			UID: uint32(os.Geteuid()), Count: o.Count, Mode: ModeConnect},
		Addresses: []*AddrProbe{},
	}
	if o.Source.IsValid() {
		rep.Target.Source = o.Source.String()
	}

	res := &resolver{nsName: t.Name, do: t.Do, etc: o.Etc}
	dnsRep, addrs := res.resolve(ctx, o.Host, o.Family, &rep.Checks)
	rep.DNS = dnsRep
	rep.Proxy = CheckProxy(o.Env, o.Host, o.Port)
	if o.Source.IsValid() {
		var keep []netip.Addr
		for _, a := range addrs {
			if a.Is4() == o.Source.Is4() {
				keep = append(keep, a)
			}
		}
		addrs = keep
	}
	if len(addrs) > MaxAddrs {
		rep.Checks = append(rep.Checks, Check{Name: "addresses", Status: "skipped",
			Detail: fmt.Sprintf("%d addresses; probing the first %d", len(addrs), MaxAddrs)})
		addrs = addrs[:MaxAddrs]
	}

	fwBefore, fwErr := inspectFirewall(t)
	routeRes := make([]routes.Result, len(addrs))
	for i, a := range addrs {
		ap := &AddrProbe{Addr: a.String(), Family: "ipv4", Attempts: []Attempt{}}
		if a.Is6() {
			ap.Family = "ipv6"
		}
		ap.Local, routeRes[i] = routeFor(t, netip.AddrPortFrom(a, o.Port), o.Source, o.Mark, rep.Target.UID)
		rep.Addresses = append(rep.Addresses, ap)
	}

	// Raw mode when asked and possible, else connect().
	rawCheck := Check{Name: "raw-syn", Status: "skipped", Detail: "not asked (--raw): attempts use connect(), so the kernel's SYN retransmits count inside an attempt (syn_retransmits shows them)"}
	raw := false
	if o.Raw {
		fams := map[bool]bool{}
		for _, a := range addrs {
			fams[a.Is6()] = true
		}
		if len(fams) == 0 {
			fams[false] = true // nothing to probe; say whether raw mode could run
		}
		var rerr error
		for v6 := range fams {
			if rerr = rawAvailable(t, v6); rerr != nil {
				break
			}
		}
		switch {
		case rerr == nil:
			raw = true
			rep.Target.Mode = ModeRaw
			rawCheck = Check{Name: "raw-syn", Status: "ok", Detail: "one SYN per attempt from a raw socket, answers read through an in-kernel BPF filter on the attempt's 4-tuple; a SYN-ACK is reset"}
		case errors.Is(rerr, os.ErrPermission):
			rawCheck.Detail = "needs CAP_NET_RAW in the namespace (" + errText(rerr) + "); attempts used connect() instead, so the kernel's SYN retransmits count inside an attempt"
		default:
			rawCheck.Status = "failed"
			rawCheck.Detail = "raw sockets unavailable (" + errText(rerr) + "); attempts used connect() instead"
		}
	}

	// The server's kernel, traced for the probe's own flows.
	srcs := make([]netip.Addr, len(addrs))
	for i := range addrs {
		srcs[i] = o.Source
		if !srcs[i].IsValid() {
			srcs[i] = routeRes[i].Prefsrc
		}
	}
	var side serverSide
	var resv [][]*reservedPort
	switch {
	case IsServerURL(o.Server):
		var flows []netip.AddrPort
		resv, flows = reservePorts(t, o, srcs, raw)
		defer closeUnused(resv)
		// The window covers every attempt, its timeout and the grace;
		// the server may grant less (then later attempts are "not
		// checked").
		window := time.Duration(o.Count)*(o.Timeout+o.Interval) + serverGrace + time.Second
		side = startServerEndpoint(ctx, o, t, flows, window)
	case o.Server != "":
		side = startServerWatch(ctx, o.Server, o.Port, srcs)
	}

	// Handshakes: every address in parallel, Count attempts each.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, ap := range rep.Addresses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := netip.AddrPortFrom(addrs[i], o.Port)
			for n := 0; (o.Count == 0 || n < o.Count) && n < MaxCount; n++ {
				if n > 0 && !sleepCtx(ctx, o.Interval) {
					break
				}
				if ctx.Err() != nil {
					break
				}
				var r dialResult
				var rp *reservedPort
				if n < len(resvRow(resv, i)) {
					rp = resv[i][n].take()
				}
				if raw {
					src := o.Source
					if !src.IsValid() {
						src = routeRes[i].Prefsrc
					}
					r = synOnce(ctx, rawSpec{t: t, dst: dst, src: src, mark: o.Mark, timeout: o.Timeout, resv: rp})
				} else {
					r = dialOnce(ctx, dialSpec{t: t, dst: dst, src: o.Source, mark: o.Mark, timeout: o.Timeout, resv: rp})
				}
				if ctx.Err() != nil && r.outcome == OutTimeout {
					break // interrupted, not lost
				}
				at := Attempt{Seq: n + 1, Outcome: r.outcome, LocalPort: r.lport, SynRetrans: r.synRetrans, Error: r.err, TTL: r.ttl}
				if r.outcome == OutConnected || r.outcome == OutRefused {
					at.RTTms = ms(r.rtt)
				}
				if r.outcome == OutConnected {
					at.Error = ""
				}
				if r.icmpFrom.IsValid() {
					at.ICMPFrom, at.ICMPType, at.ICMPCode = r.icmpFrom.String(), r.icmpType, r.icmpCode
				}
				mu.Lock()
				ap.Attempts = append(ap.Attempts, at)
				if o.Progress != nil {
					o.Progress(ap.Addr, at, Summarize(ap.Attempts))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if side != nil {
		finishServer(side, rep, srcs)
	}
	for _, ap := range rep.Addresses {
		ap.Stats = Summarize(ap.Attempts)
	}
	how := "connect() with IP_RECVERR"
	if raw {
		how = "raw SYNs"
	}
	rep.Checks = append(rep.Checks, Check{Name: "handshakes", Status: "ok",
		Detail: fmt.Sprintf("%d address(es), %s", len(rep.Addresses), how)})

	// The rest must finish even after an interrupt ended the attempts.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if o.Path {
		pathTimeout := min(o.Timeout, 2*time.Second)
		var pwg sync.WaitGroup
		for i, ap := range rep.Addresses {
			if !ap.Local.RouteOK {
				continue
			}
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				dst := netip.AddrPortFrom(addrs[i], o.Port)
				tracePath(bg, t, dst, o.Source, o.Mark, pathTimeout, ap)
				if !ap.Reached {
					ttl, why := pingReach(bg, t, addrs[i], min(ap.LastHop+PathSilentEnd, PathMaxTTL), time.Second)
					ap.PingTTL = ttl
					switch {
					case why != "":
						ap.PathNote = why
					case ttl == 0:
						ap.PathNote = "ICMP echo does not reach the destination either"
					case ttl > ap.LastHop+1:
						ap.PathNote = fmt.Sprintf("ICMP echo reaches the destination at hop %d, beyond where the SYNs die: a filter on TCP", ttl)
					default:
						ap.PathNote = fmt.Sprintf("ICMP echo reaches the destination at hop %d", ttl)
					}
				}
			}()
		}
		pwg.Wait()
		names := map[string]string{}
		for _, ap := range rep.Addresses {
			for i := range ap.Path {
				h := &ap.Path[i]
				if h.Addr == "" {
					continue
				}
				if n, ok := names[h.Addr]; ok {
					h.Name = n
					continue
				}
				if a, err := netip.ParseAddr(h.Addr); err == nil && !rep.DNS.Literal {
					h.Name = res.reverse(bg, a)
				}
				names[h.Addr] = h.Name
			}
		}
		rep.Checks = append(rep.Checks, Check{Name: "path", Status: "ok",
			Detail: fmt.Sprintf("TCP SYNs with TTL 1..%d, %d source ports per TTL", PathMaxTTL, PathPorts)})
	} else {
		rep.Checks = append(rep.Checks, Check{Name: "path", Status: "skipped", Detail: "not asked (--path)"})
	}

	// Who answered: every RST placed on the path against the server's own
	// hop (ICMP echo when neither a SYN-ACK nor --path told it).
	hopCheck := Check{Name: "answer-hops", Status: "skipped", Detail: "needs --raw: connect() does not show an answer's TTL"}
	if raw {
		hopCheck = Check{Name: "answer-hops", Status: "ok", Detail: "answers' TTLs against the initial TTLs 64, 128, 255 and the server's hop"}
		for i, ap := range rep.Addresses {
			placeAnswers(ap)
			if ap.ResetHop == 0 || ap.ServerHop != 0 {
				continue
			}
			ttl, why := pingReach(bg, t, addrs[i], PathMaxTTL, time.Second)
			if ap.PingTTL == 0 {
				ap.PingTTL = ttl
			}
			if why != "" {
				hopCheck.Detail += "; " + ap.Addr + ": the server's hop not known (ICMP echo: " + why + ")"
			}
			placeAnswers(ap)
		}
	}
	rep.Checks = append(rep.Checks, hopCheck)

	// Local state after the attempts: counters moved, neighbours resolved
	// (or failed).
	var fwAfter *firewall.Ruleset
	if fwErr == nil {
		fwAfter, _ = inspectFirewall(t)
	}
	for i, ap := range rep.Addresses {
		ap.Local.Neighbor = neighborFor(t, routeRes[i])
		src := o.Source
		if !src.IsValid() {
			src = routeRes[i].Prefsrc
		}
		ap.Local.Firewall = localDroppers(t, fwBefore, fwAfter, src, netip.AddrPortFrom(addrs[i], o.Port), routeRes[i].Dev)
	}
	switch {
	case fwErr != nil && errors.Is(fwErr, os.ErrPermission):
		rep.Checks = append(rep.Checks, Check{Name: "firewall", Status: "skipped", Detail: "reading nftables needs CAP_NET_ADMIN (run as root)"})
	case fwErr != nil:
		rep.Checks = append(rep.Checks, Check{Name: "firewall", Status: "failed", Detail: fwErr.Error()})
	default:
		rep.Checks = append(rep.Checks, Check{Name: "firewall", Status: "ok", Detail: fmt.Sprintf("%d nftables rules read", len(fwBefore.Rules))})
	}
	rep.Checks = append(rep.Checks, rawCheck)
	decide(rep)
	rep.Elapsed = ms(time.Since(start))
	return rep, nil
}

// reservePorts binds, before any SYN leaves, one socket per attempt the
// server's watch will be asked about (at most fateapi.MaxFlows in all,
// shared among the addresses) and returns them with the flows to name:
// the attempt's source address and the reserved port. An address
// without a source address (its route lookup failed) gets none.
func reservePorts(t *netns.Target, o Options, srcs []netip.Addr, raw bool) ([][]*reservedPort, []netip.AddrPort) {
	rs := make([][]*reservedPort, len(srcs))
	var flows []netip.AddrPort
	if len(srcs) == 0 {
		return rs, nil
	}
	quota := min(o.Count, fateapi.MaxFlows/len(srcs))
	for i, src := range srcs {
		if !src.IsValid() {
			continue
		}
		bind := o.Source // connect(): bound as dialOnce would bind
		if raw || !bind.IsValid() {
			bind = src
		}
		if !raw && !o.Source.IsValid() {
			// connect() without --source: the wildcard of the family, so
			// the kernel still picks the source by the route.
			bind = netip.IPv4Unspecified()
			if src.Is6() {
				bind = netip.IPv6Unspecified()
			}
		}
		for range quota {
			r, err := reservePort(t, bind)
			if err != nil {
				break // the attempt reserves its own port, and is "not checked"
			}
			rs[i] = append(rs[i], r)
			flows = append(flows, netip.AddrPortFrom(src.Unmap(), r.port))
		}
	}
	return rs, flows
}

func resvRow(rs [][]*reservedPort, i int) []*reservedPort {
	if i < len(rs) {
		return rs[i]
	}
	return nil
}

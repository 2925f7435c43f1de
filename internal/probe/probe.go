// Package probe is the client side of a failing connection in one call:
// name resolution as the namespace's libc does it (hosts file,
// resolv.conf, /etc/netns/NAME), the proxy variables that apply, this
// host's route, source and output firewall rules for the flow, real
// handshakes to every address with the ICMP errors that abort them
// (IP_RECVERR) — or, with Raw, single SYNs from a raw socket whose answers
// an in-kernel BPF filter picks out (rawsyn_linux.go) — an optional
// TTL-limited SYN sweep (--path), and a verdict that names a catalog cause
// where one applies.
//
// Everything runs from sockets created inside the target namespace; only
// the probe's own SYNs leave it, and every connection it completes (every
// SYN-ACK, in raw mode) is answered with a reset. Loops are bounded
// (MaxCount, PathMaxTTL, the DNS search and server limits).
package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/routes"
)

// Limits.
const (
	MaxCount = 100000 // attempts per address, also with Count 0
	MaxAddrs = 8      // resolved addresses probed
)

// Options configure a probe.
type Options struct {
	Host     string
	Port     uint16
	Count    int // attempts per address; 0 = until ctx is done (bounded by MaxCount)
	Interval time.Duration
	Timeout  time.Duration // per attempt
	Path     bool
	// Raw sends single SYNs from a raw socket instead of connect() (needs
	// CAP_NET_RAW in the namespace; without it Run falls back to connect()
	// and says why in the raw-syn check).
	Raw    bool
	Family int        // 0, 4 or 6
	Source netip.Addr // bind address, optional
	Mark   uint32
	Netns  string
	// Env is the environment whose proxy variables are checked (os.Environ).
	Env []string
	// Etc is the configuration root ("/etc" when empty).
	Etc string
	// Progress, when set, is called after every attempt (for a running
	// summary line); calls are serialized.
	Progress func(addr string, a Attempt, s Stats)
}

// Validate checks the options a caller built from user input.
func (o Options) Validate() error {
	switch {
	case o.Host == "":
		return errors.New("empty host")
	case o.Port == 0:
		return errors.New("no port: give HOST:PORT or --port N (1-65535)")
	case o.Count < 0 || o.Count > MaxCount:
		return fmt.Errorf("--count %d: want 0 (until interrupted) to %d", o.Count, MaxCount)
	case o.Timeout <= 0 || o.Timeout > time.Minute:
		return fmt.Errorf("--timeout %v: want more than 0 and at most 1m", o.Timeout)
	case o.Interval < 0 || o.Interval > time.Hour:
		return fmt.Errorf("--interval %v: want 0 to 1h", o.Interval)
	case o.Family != 0 && o.Family != 4 && o.Family != 6:
		return fmt.Errorf("--family %d: want 4 or 6", o.Family)
	case o.Source.IsValid() && o.Family != 0 && (o.Source.Is4() != (o.Family == 4)):
		return fmt.Errorf("--source %s is not IPv%d", o.Source, o.Family)
	}
	return nil
}

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

	res := &resolver{t: t, etc: o.Etc}
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
				if raw {
					src := o.Source
					if !src.IsValid() {
						src = routeRes[i].Prefsrc
					}
					r = synOnce(ctx, rawSpec{t: t, dst: dst, src: src, mark: o.Mark, timeout: o.Timeout})
				} else {
					r = dialOnce(ctx, dialSpec{t: t, dst: dst, src: o.Source, mark: o.Mark, timeout: o.Timeout})
				}
				if ctx.Err() != nil && r.outcome == OutTimeout {
					break // interrupted, not lost
				}
				at := Attempt{Seq: n + 1, Outcome: r.outcome, LocalPort: r.lport, SynRetrans: r.synRetrans, Error: r.err}
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

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

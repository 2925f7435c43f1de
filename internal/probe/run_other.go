//go:build windows || darwin

package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"
)

// Run probes from Windows or macOS: the system resolver's answer and each
// configured server's, the environment's and the OS's proxy settings, the
// OS's route and source for every address, and connect() handshakes with
// the OS's errors mapped to the Linux outcomes. Namespaces, marks, raw
// SYNs, --path and nftables are Linux-only: asking for them is an error,
// and the checks say they were not run.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	switch {
	case o.Netns != "":
		return nil, errors.New("--netns is Linux-only")
	case o.Mark != 0:
		return nil, errors.New("--mark is Linux-only")
	case o.Raw:
		return nil, errors.New("--raw is Linux-only")
	case o.Path:
		return nil, errors.New("--path is Linux-only")
	case o.Server != "":
		return nil, errors.New("--server is Linux-only")
	}
	start := time.Now()
	rep := &Report{
		Schema: Schema, Time: start.UTC(),
		Target: Target{Host: o.Host, Port: o.Port, Netns: "-", OS: runtime.GOOS, Family: o.Family,
			UID: uint32(max(os.Geteuid(), 0)), Count: o.Count, Mode: ModeConnect},
		Addresses: []*AddrProbe{},
	}
	if o.Source.IsValid() {
		rep.Target.Source = o.Source.String()
	}

	conf := readOSDNS()
	dnsRep, addrs := resolveSystem(ctx, o.Host, o.Family, conf, &rep.Checks)
	rep.DNS = dnsRep
	rep.Proxy = CheckProxy(o.Env, o.Host, o.Port)
	sys, chk := readOSProxy(o.Host)
	for _, s := range sys {
		rep.Proxy.Applies = rep.Proxy.Applies || s.Applies
	}
	rep.Proxy.System = sys
	rep.Checks = append(rep.Checks, chk)
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
	routeCheck := Check{Name: "route", Status: "ok", Detail: "the OS route lookup (" + osRouteHow + ")"}
	for _, a := range addrs {
		ap := &AddrProbe{Addr: a.String(), Family: "ipv4", Attempts: []Attempt{}}
		if a.Is6() {
			ap.Family = "ipv6"
		}
		ap.Local = osRoute(a, o.Source)
		switch {
		case ap.Local.RouteOK && ap.Local.RouteError != "":
			routeCheck = Check{Name: "route", Status: "skipped", Detail: ap.Local.RouteError}
		case !ap.Local.RouteOK:
			routeCheck = Check{Name: "route", Status: "failed", Detail: ap.Local.RouteError}
		}
		rep.Addresses = append(rep.Addresses, ap)
	}
	rep.Checks = append(rep.Checks, routeCheck)

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
				at, fw := connectOnce(ctx, dst, o.Source, o.Timeout)
				if ctx.Err() != nil && at.Outcome == OutTimeout {
					break // interrupted, not lost
				}
				at.Seq = n + 1
				mu.Lock()
				ap.Attempts = append(ap.Attempts, at)
				if fw && len(ap.Local.Firewall) == 0 {
					ap.Local.Firewall = []FWRule{{Where: osFirewallName, Rule: at.Error, Verdict: fwOSRefused, Delta: -1}}
				}
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
	rep.Checks = append(rep.Checks,
		Check{Name: "handshakes", Status: "ok", Detail: fmt.Sprintf("%d address(es), connect() with the OS's errors", len(rep.Addresses))},
		Check{Name: "path", Status: "skipped", Detail: "--path is Linux-only"},
		Check{Name: "firewall", Status: "skipped", Detail: "not checked: " + osFirewallName + " rules are not read; a connect the OS itself refuses is reported"},
		Check{Name: "raw-syn", Status: "skipped", Detail: "--raw is Linux-only: attempts use connect(), so the OS's SYN retransmits count inside an attempt"},
	)
	decide(rep)
	rep.Elapsed = ms(time.Since(start))
	return rep, nil
}

// connectOnce makes one handshake with the OS's connect(); a connected
// socket is closed with a reset (linger 0). fw is true when the OS said a
// local policy refused it.
func connectOnce(ctx context.Context, dst netip.AddrPort, src netip.Addr, timeout time.Duration) (Attempt, bool) {
	d := net.Dialer{Timeout: timeout}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", dst.String())
	rtt := time.Since(start)
	if err == nil {
		at := Attempt{Outcome: OutConnected, RTTms: ms(rtt)}
		if tc, ok := c.(*net.TCPConn); ok {
			if la, ok := tc.LocalAddr().(*net.TCPAddr); ok {
				at.LocalPort = uint16(la.Port)
			}
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		return at, false
	}
	out, text, fw := classifyDialErr(runtime.GOOS, err)
	at := Attempt{Outcome: out, Error: text}
	if out == OutRefused {
		at.RTTms = ms(rtt)
	}
	return at, fw
}

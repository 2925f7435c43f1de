package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// This file is name resolution on Windows and macOS, where the system
// resolver answers for applications and the probe asks each configured
// server beside it. It has no build constraint so Linux tests run it.

// osDNS is the OS's resolver configuration.
type osDNS struct {
	// Desc names where the servers came from (DNSReport.ResolvConf).
	Desc      string
	HostsFile string
	Scopes    []DNSScope
	Err       error
	// Lookup is the system resolver (net.DefaultResolver.LookupNetIP
	// when nil; tests give their own).
	Lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// resolveSystem asks the system resolver (what applications get) and then
// every configured server directly, and reads the hosts file.
func resolveSystem(ctx context.Context, host string, family int, conf osDNS, checks *[]Check) (*DNSReport, []netip.Addr) {
	rep := &DNSReport{Name: host, Addresses: []string{}}
	if a, err := netip.ParseAddr(host); err == nil {
		rep.Literal = true
		a = a.Unmap()
		rep.Addresses = []string{a.String()}
		*checks = append(*checks, Check{Name: "dns", Status: "skipped", Detail: "the host is an IP address"})
		return rep, []netip.Addr{a}
	}
	rep.System = true
	rep.ResolvConf, rep.HostsFile = conf.Desc, conf.HostsFile
	if f, err := os.Open(conf.HostsFile); err == nil {
		for _, e := range LookupHosts(f, host) {
			if wantFamily(e.Addr, family) {
				rep.Hosts = append(rep.Hosts, e.Addr.String())
			}
		}
		f.Close()
	}
	// Direct questions: every server of every scope that serves the name.
	r := &resolver{do: func(fn func() error) error { return fn() }, maxWait: 2 * time.Second}
	var servers []netip.AddrPort
	for i := range conf.Scopes {
		s := &conf.Scopes[i]
		s.Matches = scopeMatches(s.Domain, host)
		for _, a := range s.Servers {
			ap, err := netip.ParseAddrPort(a)
			if err != nil {
				if ad, err2 := netip.ParseAddr(a); err2 == nil {
					ap = netip.AddrPortFrom(ad, 53)
				} else {
					continue
				}
			}
			if s.Matches && !slices.Contains(servers, ap) && len(servers) < 2*maxNS {
				servers = append(servers, ap)
				rep.Servers = append(rep.Servers, ap.String())
			}
		}
	}
	rep.Scopes = conf.Scopes
	name := host
	if name[len(name)-1] != '.' {
		name += "."
	}
	for _, s := range servers {
		for _, qt := range familyTypes(family) {
			rep.Queries = append(rep.Queries, r.query(ctx, s, name, qt))
		}
	}
	// The system resolver: hosts file, NRPT / scoped resolvers, suffixes.
	network := map[int]string{0: "ip", 4: "ip4", 6: "ip6"}[family]
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lookup := conf.Lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupNetIP
	}
	got, err := lookup(lctx, network, host)
	var use []netip.Addr
	for _, a := range got {
		a = a.Unmap()
		if wantFamily(a, family) && !slices.Contains(use, a) {
			use = append(use, a)
			rep.Addresses = append(rep.Addresses, a.String())
		}
	}
	rep.HostsOverride = len(rep.Hosts) > 0 && len(use) > 0 && rep.Hosts[0] == use[0].String()
	detail := fmt.Sprintf("system resolver: %d address(es); %d server(s) asked directly", len(use), len(servers))
	if conf.Err != nil {
		detail += "; resolver configuration not fully read: " + conf.Err.Error()
	}
	switch {
	case err != nil:
		rep.Error = "system resolver: " + err.Error()
		*checks = append(*checks, Check{Name: "dns", Status: "failed", Detail: rep.Error})
	case len(use) == 0:
		rep.Error = "system resolver: no address"
		*checks = append(*checks, Check{Name: "dns", Status: "failed", Detail: rep.Error})
	default:
		*checks = append(*checks, Check{Name: "dns", Status: "ok", Detail: detail})
	}
	return rep, use
}

// familyTypes are the questions for --family: AAAA and A, or one.
func familyTypes(family int) []dnsmessage.Type {
	switch family {
	case 4:
		return []dnsmessage.Type{dnsmessage.TypeA}
	case 6:
		return []dnsmessage.Type{dnsmessage.TypeAAAA}
	}
	return []dnsmessage.Type{dnsmessage.TypeAAAA, dnsmessage.TypeA}
}

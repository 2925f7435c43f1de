package routes

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl"
	"github.com/synscope/synscope/internal/nl/rtnl"
)

// Collect dumps the namespace's routing state: routes of every table (one
// dump with table RT_TABLE_UNSPEC, each route keeping its table), rules,
// links, addresses and neighbours, for IPv4 and IPv6. A family the kernel
// does not support (IPv6 disabled at boot) is skipped silently. On error the
// state gathered so far is returned with it.
func Collect() (*State, error) { return collect(false) }

// CollectDefaults is Collect for hosts with huge routing tables (a BGP full
// table has ~1M routes): Routes keeps only what explaining a SYN-ACK route
// failure needs — every default route of every table, every route of a
// failing type (unreachable, blackhole, prohibit, throw), and the first route
// seen for each distinct (family, table, gateway, device), which is what
// InferGateway's route signal reads. The kernel still walks every route and
// the transport holds the whole dump while it is decoded; the savings are in
// what State keeps.
func CollectDefaults() (*State, error) { return collect(true) }

type gwKey struct {
	family, table, ifindex int
	gw                     netip.Addr
}

func collect(defaultsOnly bool) (*State, error) {
	c, err := rtnl.Dial(nl.Config{ReceiveBuffer: 4 << 20})
	if err != nil {
		return nil, fmt.Errorf("collect routes: %w", err)
	}
	defer c.Close()
	s := &State{}
	links, err := rtnl.Links(c)
	if err != nil {
		return s, fmt.Errorf("collect routes: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Index] = l.Name
		s.Links = append(s.Links, Link{Index: l.Index, Name: l.Name, Up: l.Up(), HardwareAddr: l.HardwareAddr,
			Kind: l.Kind, Master: l.Master, CarrierChanges: l.CarrierChanges})
	}
	// Best effort: nexthop objects exist from 5.3 and are usually none.
	nhs, _ := rtnl.Nexthops(c)
	nh := map[uint32]rtnl.Nexthop{}
	for _, n := range nhs {
		nh[n.ID] = n
	}
	var seen map[gwKey]bool
	if defaultsOnly {
		seen = map[gwKey]bool{}
	}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		for _, step := range []func(uint8) error{
			func(f uint8) error { return dumpAddrs(c, s, f) },
			func(f uint8) error { return dumpRoutes(c, s, f, names, nh, seen) },
			func(f uint8) error { return dumpRules(c, s, f) },
			func(f uint8) error { return dumpNeighbors(c, s, f, names) },
		} {
			if err := step(fam); err != nil {
				if fam == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
					break
				}
				return s, fmt.Errorf("collect routes: %w", err)
			}
		}
	}
	return s, nil
}

func dumpAddrs(c *nl.Conn, s *State, family uint8) error {
	as, err := rtnl.Addrs(c, family)
	if err != nil {
		return err
	}
	for _, a := range as {
		p := a.Prefix()
		if !p.IsValid() {
			continue
		}
		var age time.Duration
		if a.HasCacheinfo {
			age = sinceBoot(a.Created)
		}
		s.Addrs = append(s.Addrs, Addr{Ifindex: a.Ifindex, Prefix: p, Scope: rtnl.ScopeName(a.Scope),
			Flags: rtnl.AddrFlagsText(a.Flags), Age: age})
	}
	return nil
}

// sinceBoot turns a time since boot (ifa_cacheinfo's cstamp) into how long
// ago that was, on the same clock (CLOCK_MONOTONIC, which like jiffies
// stops in suspend); 0 when unknown.
func sinceBoot(at time.Duration) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	if now := time.Duration(ts.Nano()); now > at {
		return now - at
	}
	return 0
}

func dumpRoutes(c *nl.Conn, s *State, family uint8, names map[int]string, nh map[uint32]rtnl.Nexthop, seen map[gwKey]bool) error {
	n0 := len(s.Routes)
	seen0 := map[gwKey]bool{}
	for k := range seen {
		seen0[k] = true
	}
	start := func() {
		// An interrupted dump is asked again: drop what it added.
		s.Routes = s.Routes[:n0]
		if seen != nil {
			clear(seen)
			for k := range seen0 {
				seen[k] = true
			}
		}
	}
	return rtnl.WalkRoutes(c, family, start, func(m rtnl.Route) error {
		failing := m.Type == unix.RTN_UNREACHABLE || m.Type == unix.RTN_BLACKHOLE || m.Type == unix.RTN_PROHIBIT || m.Type == unix.RTN_THROW
		// The cheap part of the filter: local/broadcast routes of the local
		// table are never gateways, defaults, or failing.
		if seen != nil && m.DstLen != 0 && !failing && m.Type != unix.RTN_UNICAST {
			return nil
		}
		viewRoutes(m, names, nh, func(rr Route) {
			if seen != nil && m.DstLen != 0 && !failing {
				if !rr.Gateway.IsValid() {
					return
				}
				k := gwKey{rr.Family, rr.Table, rr.Ifindex, rr.Gateway}
				if seen[k] {
					return
				}
				seen[k] = true
			}
			s.Routes = append(s.Routes, rr)
		})
		return nil
	})
}

// viewRoutes turns a decoded route into State's per-hop Routes, handed to
// fn: a multipath route (or one using a nexthop group) appears once per hop.
func viewRoutes(m rtnl.Route, names map[int]string, nh map[uint32]rtnl.Nexthop, fn func(Route)) {
	r := Route{
		Family:    int(m.Family),
		Table:     m.Table,
		Type:      rtnl.TypeName(m.Type),
		Protocol:  rtnl.ProtocolName(m.Protocol),
		Metric:    int(m.Priority),
		Src:       m.PrefSrc,
		HasExpiry: m.HasExpiry,
		Expires:   m.Expires,
	}
	if m.Dst.IsValid() && m.DstLen != 0 {
		r.Dst = m.Dst
	}
	hops := m.Hops
	if m.NHID != 0 && len(hops) == 0 {
		hops = expandNexthop(nil, nh, m.NHID, 0)
		if o, ok := nh[m.NHID]; ok && o.Blackhole && m.Type == unix.RTN_UNICAST {
			r.Type = "blackhole"
		}
	}
	hop := func(h rtnl.Hop) {
		rr := r
		rr.Gateway, rr.Ifindex, rr.Linkdown = h.Gateway, h.Ifindex, h.Flags&unix.RTNH_F_LINKDOWN != 0
		rr.Dev = names[h.Ifindex]
		fn(rr)
	}
	if len(hops) == 0 {
		hop(rtnl.Hop{Gateway: m.Gateway, Ifindex: m.Oif, Flags: uint8(m.Flags)})
		return
	}
	for _, h := range hops {
		hop(h)
	}
}

// expandNexthop resolves a nexthop object, following groups one level deep
// (the kernel forbids nested groups).
func expandNexthop(out []rtnl.Hop, nh map[uint32]rtnl.Nexthop, id uint32, depth int) []rtnl.Hop {
	n, ok := nh[id]
	if !ok {
		return out
	}
	if len(n.Group) > 0 && depth == 0 {
		for _, m := range n.Group {
			out = expandNexthop(out, nh, m, 1)
		}
		return out
	}
	return append(out, rtnl.Hop{Gateway: n.Gateway, Ifindex: n.Oif})
}

func dumpRules(c *nl.Conn, s *State, family uint8) error {
	rs, err := rtnl.Rules(c, family)
	if err != nil {
		return err
	}
	for _, r := range rs {
		s.Rules = append(s.Rules, ruleFrom(r))
	}
	return nil
}

func dumpNeighbors(c *nl.Conn, s *State, family uint8, names map[int]string) error {
	ns, err := rtnl.Neighbors(c, family)
	if err != nil {
		return err
	}
	for _, n := range ns {
		if !n.IP.IsValid() {
			continue
		}
		s.Neighbors = append(s.Neighbors, Neighbor{Ifindex: n.Ifindex, Dev: names[n.Ifindex], IP: n.IP,
			LLAddr: n.LLAddr, State: rtnl.NeighStateText(n.State), Router: n.Router()})
	}
	return nil
}

// RefreshNeighbors re-reads the neighbour table into s. The doctor collects
// routes while its window runs, but a next hop that fails to resolve only
// shows as INCOMPLETE/FAILED while the kernel is trying it, and failed
// entries are garbage-collected: reading them again at the window's end
// catches what the window's traffic did.
func (s *State) RefreshNeighbors() error {
	c, err := rtnl.Dial(nl.Config{})
	if err != nil {
		return fmt.Errorf("refresh neighbours: %w", err)
	}
	defer c.Close()
	names := map[int]string{}
	for _, l := range s.Links {
		names[l.Index] = l.Name
	}
	fresh := &State{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := dumpNeighbors(c, fresh, fam, names); err != nil {
			if fam == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
				break
			}
			return fmt.Errorf("refresh neighbours: %w", err)
		}
	}
	s.Neighbors = fresh.Neighbors
	return nil
}

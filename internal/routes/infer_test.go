package routes

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestInferGateway(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	ip := netip.MustParseAddr
	rtrMAC := mac("02:00:00:00:00:01")
	otherMAC := mac("02:00:00:00:00:02")
	nb := func(a, dev, state string, m net.HardwareAddr, router bool) Neighbor {
		return Neighbor{Ifindex: map[string]int{"s0": 2, "s1": 3}[dev], Dev: dev, IP: ip(a), LLAddr: m, State: state, Router: router}
	}
	gwRoute := func(fam int, table int, dst, gw, dev string) Route {
		return Route{Family: fam, Table: table, Type: "unicast", Dst: netip.MustParsePrefix(dst), Gateway: ip(gw), Dev: dev,
			Ifindex: map[string]int{"s0": 2, "s1": 3}[dev]}
	}
	cases := []struct {
		name    string
		family  int
		dev     string
		hints   []net.HardwareAddr
		state   State
		want    string // "" = not OK
		how     string // substring of How
		wantDev string
	}{
		{
			name: "1: hint MAC beats router flag and routes", family: unix.AF_INET6, dev: "s0", hints: []net.HardwareAddr{rtrMAC},
			state: State{
				Neighbors: []Neighbor{nb("fd77::9", "s0", "REACHABLE", otherMAC, true), nb("fd77::1", "s0", "STALE", rtrMAC, false)},
				Routes:    []Route{gwRoute(unix.AF_INET6, 254, "2001:db8::/32", "fd77::8", "s0")},
			},
			want: "fd77::1", how: "source MAC of the unanswered SYNs",
		},
		{
			name: "1: global preferred over link-local of the same MAC", family: unix.AF_INET6, dev: "s0", hints: []net.HardwareAddr{rtrMAC},
			state: State{Neighbors: []Neighbor{nb("fe80::1", "s0", "REACHABLE", rtrMAC, true), nb("fd77::1", "s0", "STALE", rtrMAC, true)}},
			want:  "fd77::1", how: "source MAC",
		},
		{
			name: "1: link-local only says it needs dev", family: unix.AF_INET6, dev: "s0", hints: []net.HardwareAddr{rtrMAC},
			state: State{Neighbors: []Neighbor{nb("fe80::1", "s0", "REACHABLE", rtrMAC, true)}},
			want:  "fe80::1", how: "needs its dev",
		},
		{
			name: "1: v4 ARP entry, v6 entries of the same MAC ignored", family: unix.AF_INET, dev: "s0", hints: []net.HardwareAddr{rtrMAC},
			state: State{Neighbors: []Neighbor{nb("fd77::1", "s0", "REACHABLE", rtrMAC, true), nb("10.0.0.1", "s0", "STALE", rtrMAC, false)}},
			want:  "10.0.0.1", how: "source MAC",
		},
		{
			name: "1: FAILED entry of the hint MAC is skipped, falls to routes", family: unix.AF_INET, dev: "s0", hints: []net.HardwareAddr{rtrMAC},
			state: State{
				Neighbors: []Neighbor{nb("10.0.0.1", "s0", "FAILED", rtrMAC, false)},
				Routes:    []Route{gwRoute(unix.AF_INET, 100, "192.0.2.0/24", "10.0.0.254", "s0")},
			},
			want: "10.0.0.254", how: "already the gateway",
		},
		{
			name: "1: neighbour on another device does not count", family: unix.AF_INET, dev: "s0", hints: []net.HardwareAddr{rtrMAC},
			state: State{Neighbors: []Neighbor{nb("10.1.0.1", "s1", "REACHABLE", rtrMAC, false)}},
			how:   "no IPv4 neighbour on s0 has MAC 02:00:00:00:00:01",
		},
		{
			name: "2: router flag, upgraded to global twin", family: unix.AF_INET6, dev: "s0",
			state: State{
				Neighbors: []Neighbor{nb("fe80::1", "s0", "REACHABLE", rtrMAC, true), nb("fd77::1", "s0", "STALE", rtrMAC, false)},
				Routes:    []Route{gwRoute(unix.AF_INET6, 254, "2001:db8::/32", "fd77::8", "s0")},
			},
			want: "fd77::1", how: "router-flagged",
		},
		{
			name: "2: router flag on other device ignored", family: unix.AF_INET6, dev: "s0",
			state: State{
				Neighbors: []Neighbor{nb("fd78::1", "s1", "REACHABLE", rtrMAC, true)},
				Routes:    []Route{gwRoute(unix.AF_INET6, 254, "2001:db8::/32", "fd77::8", "s0")},
			},
			want: "fd77::8", how: "already the gateway",
		},
		{
			name: "2: router flag is no signal for IPv4", family: unix.AF_INET, dev: "s0",
			state: State{Neighbors: []Neighbor{nb("fd77::1", "s0", "REACHABLE", rtrMAC, true)}},
			how:   "no IPv4 route in any table",
		},
		{
			name: "3: most used gateway with a live neighbour wins", family: unix.AF_INET, dev: "s0",
			state: State{
				Neighbors: []Neighbor{nb("10.0.0.2", "s0", "REACHABLE", otherMAC, false)},
				Routes: []Route{
					gwRoute(unix.AF_INET, 254, "192.0.2.0/24", "10.0.0.1", "s0"),
					gwRoute(unix.AF_INET, 254, "198.51.100.0/24", "10.0.0.1", "s0"),
					gwRoute(unix.AF_INET, 100, "203.0.113.0/24", "10.0.0.2", "s0"),
				},
			},
			want: "10.0.0.2", how: "already the gateway of 1 IPv4 route",
		},
		{
			name: "3: other family's gateway is no help", family: unix.AF_INET6, dev: "s0",
			state: State{Routes: []Route{gwRoute(unix.AF_INET, 254, "0.0.0.0/0", "10.0.0.1", "s0")}},
			how:   "no IPv6 route in any table has a gateway on s0",
		},
		{
			name: "3: link-local gateway upgraded through its neighbour's MAC", family: unix.AF_INET6, dev: "s0",
			state: State{
				Neighbors: []Neighbor{nb("fe80::1", "s0", "STALE", rtrMAC, false), nb("fd77::1", "s0", "STALE", rtrMAC, false)},
				Routes:    []Route{gwRoute(unix.AF_INET6, 100, "::/0", "fe80::1", "s0")},
			},
			want: "fd77::1", how: "same router's global address",
		},
		{
			name: "4: EUI-64 link-local neighbour without lladdr", family: unix.AF_INET6, dev: "s0", hints: []net.HardwareAddr{mac("52:54:00:12:34:56")},
			state: State{Neighbors: []Neighbor{nb("fe80::5054:ff:fe12:3456", "s0", "INCOMPLETE", nil, false)}},
			want:  "fe80::5054:ff:fe12:3456", how: "EUI-64",
		},
		{
			name: "nothing: How lists what was tried", family: unix.AF_INET6, dev: "s0", hints: []net.HardwareAddr{rtrMAC},
			state: State{},
			how:   "no gateway found: no IPv6 neighbour on s0 has MAC 02:00:00:00:00:01 (the SYNs' source); no router-flagged IPv6 neighbour on s0; no IPv6 route in any table has a gateway on s0; no neighbour fe80::ff:fe00:1 (EUI-64 of 02:00:00:00:00:01) on s0",
		},
		{
			name: "nothing without hints says so", family: unix.AF_INET, dev: "s0", state: State{},
			how: "no source MAC of the SYNs was known",
		},
		{
			name: "dev empty: any device, guess names it", family: unix.AF_INET6, dev: "", state: State{
				Neighbors: []Neighbor{nb("fd78::1", "s1", "REACHABLE", rtrMAC, true)},
			},
			want: "fd78::1", how: "router-flagged", wantDev: "s1",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := c.state.InferGateway(c.family, c.dev, c.hints)
			if c.want == "" {
				if g.OK {
					t.Fatalf("want no guess, got %+v", g)
				}
			} else if !g.OK || g.Gateway != ip(c.want) {
				t.Fatalf("got %+v, want %s", g, c.want)
			}
			if !strings.Contains(g.How, c.how) {
				t.Errorf("How = %q, want it to contain %q", g.How, c.how)
			}
			if c.wantDev != "" && g.Dev != c.wantDev {
				t.Errorf("Dev = %q, want %q", g.Dev, c.wantDev)
			}
			if c.want != "" && c.wantDev == "" && g.Dev != c.dev {
				t.Errorf("Dev = %q, want %q", g.Dev, c.dev)
			}
		})
	}
}

func TestStateHelpers(t *testing.T) {
	s := State{
		Links: []Link{{Index: 2, Name: "s0"}},
		Addrs: []Addr{
			{Ifindex: 2, Prefix: netip.MustParsePrefix("10.0.0.1/24")},
			{Ifindex: 2, Prefix: netip.MustParsePrefix("10.9.0.1/24"), Flags: "noprefixroute"},
		},
		Routes: []Route{
			{Family: unix.AF_INET, Table: 254, Type: "unicast", Gateway: netip.MustParseAddr("10.0.0.254")},
			{Family: unix.AF_INET, Table: 100, Type: "unreachable"},
			{Family: unix.AF_INET6, Table: 254, Type: "unicast"},
			{Family: unix.AF_INET, Table: 254, Type: "unicast", Dst: netip.MustParsePrefix("10.0.0.0/24")},
		},
	}
	if d := s.DefaultRoutes(unix.AF_INET, 0); len(d) != 1 || d[0].Gateway.String() != "10.0.0.254" {
		t.Errorf("DefaultRoutes main: %+v", d)
	}
	if d := s.DefaultRoutes(unix.AF_INET, 100); len(d) != 1 || d[0].Type != "unreachable" {
		t.Errorf("DefaultRoutes 100: %+v", d)
	}
	if a, ok := s.OnLink(netip.MustParseAddr("10.0.0.7")); !ok || a.Ifindex != 2 {
		t.Error("OnLink 10.0.0.7")
	}
	for _, a := range []string{"10.0.0.1", "10.9.0.7", "192.0.2.1"} {
		if _, ok := s.OnLink(netip.MustParseAddr(a)); ok {
			t.Errorf("OnLink(%s) should be false", a)
		}
	}
	if got, _ := eui64LinkLocal(net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}); got.String() != "fe80::5054:ff:fe12:3456" {
		t.Errorf("eui64 = %s", got)
	}
}

package routes

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultRoutes returns the default routes (0.0.0.0/0 or ::/0) of one family
// in one table; table 0 means main. Typed defaults ("unreachable default")
// are included: check Type.
func (s *State) DefaultRoutes(family int, table int) []Route {
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	var out []Route
	for _, r := range s.Routes {
		if r.Family == family && r.Table == table && r.IsDefault() {
			out = append(out, r)
		}
	}
	return out
}

// LinkName returns the interface name of ifindex, or "if<N>" (which iproute2
// also accepts) when it is unknown.
func (s *State) LinkName(ifindex int) string {
	for _, l := range s.Links {
		if l.Index == ifindex {
			return l.Name
		}
	}
	return fmt.Sprintf("if%d", ifindex)
}

// OnLink reports whether a lies in the connected prefix of an interface
// address (not counting a being that address itself, and not counting
// noprefixroute addresses, which install no connected route). For link-local
// addresses the first interface with a link-local address answers; the
// scope is ambiguous by nature.
func (s *State) OnLink(a netip.Addr) (Addr, bool) {
	a = a.Unmap()
	for _, ad := range s.Addrs {
		if ad.Prefix.Addr() == a || strings.Contains(ad.Flags, "noprefixroute") {
			continue
		}
		if ad.Prefix.Contains(a) {
			return ad, true
		}
	}
	return Addr{}, false
}

// GatewayGuess is InferGateway's answer: a next hop for a missing default
// route, and why it is believed.
type GatewayGuess struct {
	Gateway netip.Addr
	Dev     string
	How     string // one sentence: the signal that chose Gateway, or what was tried
	OK      bool
}

// InferGateway proposes the next hop for a default route of family on dev
// (the interface the unanswered SYNs arrived on; "" = any), strongest signal
// first:
//
//  1. A neighbour on dev whose link-layer address is one of hintMACs, the
//     source MACs of the unanswered SYNs. The host with that MAC delivered
//     the client's packets to us, so it has a route to the client: sending
//     the SYN-ACK back through it makes the path symmetric, which also keeps
//     rp_filter and stateful firewalls on the path happy.
//  2. IPv6 only: a neighbour on dev with the router flag. The flag is set
//     only from the neighbour's own Neighbor/Router Advertisements (R bit),
//     i.e. the host declared itself a forwarding router on this link.
//  3. The gateway of another route of the same family via dev, in any
//     table. Someone already configured it as a next hop on this link. A
//     gateway of the other family is no help and is never used.
//  4. IPv6 only: the EUI-64 link-local address derived from a hint MAC, if
//     the neighbour table has an entry for it (so it was seen on dev). Many
//     routers form their link-local address that way; the entry is what
//     makes it more than a guess.
//
// Within a signal, a global address beats a link-local one of the same MAC
// (a fix command with fe80:: works only with "dev"), then REACHABLE beats
// STALE. FAILED and INCOMPLETE neighbours are never proposed.
func (s *State) InferGateway(family int, dev string, hintMACs []net.HardwareAddr) GatewayGuess {
	fam := "IPv4"
	if family == unix.AF_INET6 {
		fam = "IPv6"
	}
	on := "on " + dev
	if dev == "" {
		on = "on any interface"
	}
	var tried []string

	// 1. the SYNs' source MAC.
	if len(hintMACs) == 0 {
		tried = append(tried, "no source MAC of the SYNs was known")
	}
	for _, mac := range hintMACs {
		var cands []Neighbor
		for _, n := range s.Neighbors {
			if s.neighUsable(n, family, dev) && bytes.Equal(n.LLAddr, mac) {
				cands = append(cands, n)
			}
		}
		if n, ok := bestNeighbor(cands); ok {
			return GatewayGuess{Gateway: n.IP, Dev: n.Dev, OK: true,
				How: fmt.Sprintf("%s is the %s neighbour %s with MAC %s, the source MAC of the unanswered SYNs, so it is the router that delivered them%s",
					n.IP, fam, "on "+n.Dev, mac, linkLocalNote(n.IP))}
		}
		tried = append(tried, fmt.Sprintf("no %s neighbour %s has MAC %s (the SYNs' source)", fam, on, mac))
	}

	// 2. router-flagged IPv6 neighbours.
	if family == unix.AF_INET6 {
		var cands []Neighbor
		for _, n := range s.Neighbors {
			if n.Router && s.neighUsable(n, family, dev) {
				cands = append(cands, n)
			}
		}
		if n, ok := bestNeighbor(cands); ok {
			n = s.globalTwin(n, family)
			return GatewayGuess{Gateway: n.IP, Dev: n.Dev, OK: true,
				How: fmt.Sprintf("%s is a router-flagged IPv6 neighbour on %s (it announced itself as a router)%s", n.IP, n.Dev, linkLocalNote(n.IP))}
		}
		tried = append(tried, "no router-flagged IPv6 neighbour "+on)
	}

	// 3. gateways of other routes via dev.
	type gwUse struct {
		gw     netip.Addr
		dev    string
		routes int
		neigh  bool
		first  Route
	}
	uses := map[netip.Addr]*gwUse{}
	for _, r := range s.Routes {
		if r.Family != family || !r.Gateway.IsValid() || (dev != "" && r.Dev != dev) || r.Type != "unicast" {
			continue
		}
		if (family == unix.AF_INET) != r.Gateway.Is4() {
			continue // RFC 5549 v6 next hop of a v4 route: not a v4 gateway
		}
		u := uses[r.Gateway]
		if u == nil {
			u = &gwUse{gw: r.Gateway, dev: r.Dev, first: r}
			for _, n := range s.Neighbors {
				if n.IP == r.Gateway && n.Ifindex == r.Ifindex && s.neighUsable(n, family, "") {
					u.neigh = true
				}
			}
			uses[r.Gateway] = u
		}
		u.routes++
	}
	if len(uses) > 0 {
		list := make([]*gwUse, 0, len(uses))
		for _, u := range uses {
			list = append(list, u)
		}
		sort.Slice(list, func(i, j int) bool {
			a, b := list[i], list[j]
			if a.neigh != b.neigh {
				return a.neigh
			}
			if a.routes != b.routes {
				return a.routes > b.routes
			}
			return a.gw.Less(b.gw)
		})
		u := list[0]
		gw, d := u.gw, u.dev
		if n, ok := s.neighborOf(gw, d); ok {
			if t := s.globalTwin(n, family); t.IP != gw {
				gw = t.IP
			}
		}
		return GatewayGuess{Gateway: gw, Dev: d, OK: true,
			How: fmt.Sprintf("%s is already the gateway of %d %s route(s) via %s (e.g. %q)%s", u.gw, u.routes, fam, d, u.first.String(), twinNote(u.gw, gw))}
	}
	tried = append(tried, fmt.Sprintf("no %s route in any table has a gateway %s", fam, on))

	// 4. EUI-64 link-local of a hint MAC.
	if family == unix.AF_INET6 {
		for _, mac := range hintMACs {
			ll, ok := eui64LinkLocal(mac)
			if !ok {
				continue
			}
			for _, n := range s.Neighbors {
				if n.IP == ll && (dev == "" || n.Dev == dev) && n.State != "FAILED" && (len(n.LLAddr) == 0 || bytes.Equal(n.LLAddr, mac)) {
					return GatewayGuess{Gateway: ll, Dev: n.Dev, OK: true,
						How: fmt.Sprintf("%s is the EUI-64 link-local address of %s (the SYNs' source MAC) and is in the neighbour table on %s (%s); link-local, so the route needs dev %s", ll, mac, n.Dev, n.State, n.Dev)}
				}
			}
			tried = append(tried, fmt.Sprintf("no neighbour %s (EUI-64 of %s) %s", ll, mac, on))
		}
	}
	return GatewayGuess{Dev: dev, How: "no gateway found: " + strings.Join(tried, "; ")}
}

// neighUsable: right family, right device, a resolved or resolvable entry
// for a unicast address.
func (s *State) neighUsable(n Neighbor, family int, dev string) bool {
	if dev != "" && n.Dev != dev {
		return false
	}
	if (family == unix.AF_INET) != n.IP.Is4() {
		return false
	}
	if !n.IP.IsGlobalUnicast() && !n.IP.IsLinkLocalUnicast() {
		return false
	}
	switch n.State {
	case "FAILED", "INCOMPLETE", "NONE", "NOARP":
		return false
	}
	return true
}

func stateRank(st string) int {
	switch st {
	case "REACHABLE", "PERMANENT":
		return 0
	case "DELAY", "PROBE":
		return 1
	case "STALE":
		return 2
	}
	return 3
}

// bestNeighbor: global before link-local, fresher state first, then the
// lowest address so the answer is deterministic.
func bestNeighbor(c []Neighbor) (Neighbor, bool) {
	if len(c) == 0 {
		return Neighbor{}, false
	}
	sort.SliceStable(c, func(i, j int) bool {
		a, b := c[i], c[j]
		if al, bl := a.IP.IsLinkLocalUnicast(), b.IP.IsLinkLocalUnicast(); al != bl {
			return !al
		}
		if ra, rb := stateRank(a.State), stateRank(b.State); ra != rb {
			return ra < rb
		}
		return a.IP.Less(b.IP)
	})
	return c[0], true
}

// globalTwin returns a usable global-address neighbour on the same device
// with the same MAC as n (routers answer NDP for their link-local and global
// addresses alike), or n itself.
func (s *State) globalTwin(n Neighbor, family int) Neighbor {
	if !n.IP.IsLinkLocalUnicast() || len(n.LLAddr) == 0 {
		return n
	}
	var cands []Neighbor
	for _, m := range s.Neighbors {
		if m.Ifindex == n.Ifindex && bytes.Equal(m.LLAddr, n.LLAddr) && !m.IP.IsLinkLocalUnicast() && s.neighUsable(m, family, "") {
			cands = append(cands, m)
		}
	}
	if b, ok := bestNeighbor(cands); ok {
		return b
	}
	return n
}

func (s *State) neighborOf(ip netip.Addr, dev string) (Neighbor, bool) {
	for _, n := range s.Neighbors {
		if n.IP == ip && n.Dev == dev {
			return n, true
		}
	}
	return Neighbor{}, false
}

func linkLocalNote(a netip.Addr) string {
	if a.IsLinkLocalUnicast() {
		return "; link-local, so the route needs its dev"
	}
	return ""
}

func twinNote(orig, chosen netip.Addr) string {
	if orig == chosen {
		return linkLocalNote(orig)
	}
	return fmt.Sprintf("; %s is the same router's global address (same MAC)", chosen)
}

// eui64LinkLocal derives fe80::/64 + modified EUI-64 from a 48-bit MAC.
func eui64LinkLocal(mac net.HardwareAddr) (netip.Addr, bool) {
	if len(mac) != 6 {
		return netip.Addr{}, false
	}
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8] = mac[0] ^ 0x02
	b[9], b[10] = mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b), true
}

package routes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Constants x/sys/unix does not export (linux/rtnetlink.h, linux/nexthop.h).
const (
	rtaNHID          = 30 // RTA_NH_ID
	rtmGetNexthop    = 106
	nhaID            = 1
	nhaGroup         = 2
	nhaBlackhole     = 3
	nhaOIF           = 5
	nhaGateway       = 6
	sizeofNhmsg      = 8
	sizeofNexthopGrp = 8
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
// InferGateway's route signal reads. The kernel still walks every route; the
// savings are in parsing and memory.
func CollectDefaults() (*State, error) { return collect(true) }

type gwKey struct {
	family, table, ifindex int
	gw                     netip.Addr
}

func collect(defaultsOnly bool) (*State, error) {
	c, err := dialRoute()
	if err != nil {
		return nil, fmt.Errorf("collect routes: %w", err)
	}
	defer c.close()
	s := &State{}
	names := map[int]string{}
	if err := c.dumpLinks(s, names); err != nil {
		return s, fmt.Errorf("collect routes: %w", err)
	}
	nh := c.dumpNexthops() // best effort: absent before 5.3 and usually empty
	var seen map[gwKey]bool
	if defaultsOnly {
		seen = map[gwKey]bool{}
	}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		for _, step := range []func(uint8) error{
			func(f uint8) error { return c.dumpAddrs(s, f) },
			func(f uint8) error { return c.dumpRoutes(s, f, names, nh, seen) },
			func(f uint8) error { return c.dumpRules(s, f) },
			func(f uint8) error { return c.dumpNeighbors(s, f, names) },
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

func (c *nlConn) dumpLinks(s *State, names map[int]string) error {
	hdr := make([]byte, unix.SizeofIfInfomsg)
	attrs := []nlAttr{{unix.IFLA_EXT_MASK, u32attr(rtextFilterSkipStats)}}
	return c.do("dump links", unix.RTM_GETLINK, unix.NLM_F_DUMP, hdr, attrs, func(typ uint16, p []byte) error {
		if typ != unix.RTM_NEWLINK || len(p) < unix.SizeofIfInfomsg {
			return nil
		}
		ne := binary.NativeEndian
		l := Link{
			Index: int(int32(ne.Uint32(p[4:]))),
			Up:    ne.Uint32(p[8:])&unix.IFF_UP != 0,
		}
		forAttrs(p[unix.SizeofIfInfomsg:], func(t uint16, d []byte) {
			switch t {
			case unix.IFLA_IFNAME:
				l.Name = cString(d)
			case unix.IFLA_ADDRESS:
				l.HardwareAddr = append(net.HardwareAddr(nil), d...)
			case unix.IFLA_MASTER:
				l.Master = int(getU32(d))
			case unix.IFLA_CARRIER_CHANGES:
				l.CarrierChanges = getU32(d)
			case unix.IFLA_LINKINFO:
				forAttrs(d, func(t uint16, d []byte) {
					if t == unix.IFLA_INFO_KIND {
						l.Kind = cString(d)
					}
				})
			}
		})
		names[l.Index] = l.Name
		s.Links = append(s.Links, l)
		return nil
	})
}

func (c *nlConn) dumpAddrs(s *State, family uint8) error {
	hdr := make([]byte, unix.SizeofIfAddrmsg)
	hdr[0] = family
	return c.do("dump addresses", unix.RTM_GETADDR, unix.NLM_F_DUMP, hdr, nil, func(typ uint16, p []byte) error {
		if typ != unix.RTM_NEWADDR || len(p) < unix.SizeofIfAddrmsg || p[0] != family {
			return nil
		}
		flags := uint32(p[2])
		var local, addr netip.Addr
		var age time.Duration
		forAttrs(p[unix.SizeofIfAddrmsg:], func(t uint16, d []byte) {
			switch t {
			case unix.IFA_CACHEINFO:
				age = addrAge(d)
			case unix.IFA_LOCAL:
				local, _ = netip.AddrFromSlice(d)
			case unix.IFA_ADDRESS:
				addr, _ = netip.AddrFromSlice(d)
			case unix.IFA_FLAGS:
				flags = getU32(d)
			}
		})
		// IFA_LOCAL is our address; on point-to-point links IFA_ADDRESS is
		// the peer's.
		if local.IsValid() {
			addr = local
		}
		if !addr.IsValid() {
			return nil
		}
		s.Addrs = append(s.Addrs, Addr{
			Ifindex: int(binary.NativeEndian.Uint32(p[4:])),
			Prefix:  netip.PrefixFrom(addr, int(p[1])),
			Scope:   scopeName(p[3]),
			Flags:   addrFlagsText(flags),
			Age:     age,
		})
		return nil
	})
}

// nexthop is a nexthop object (ip nexthop), referenced by RTA_NH_ID.
type nexthop struct {
	gw        netip.Addr
	oif       int
	blackhole bool
	group     []uint32
}

func (c *nlConn) dumpNexthops() map[uint32]nexthop {
	out := map[uint32]nexthop{}
	hdr := make([]byte, sizeofNhmsg)
	_ = c.do("dump nexthops", rtmGetNexthop, unix.NLM_F_DUMP, hdr, nil, func(typ uint16, p []byte) error {
		if len(p) < sizeofNhmsg {
			return nil
		}
		var id uint32
		var n nexthop
		forAttrs(p[sizeofNhmsg:], func(t uint16, d []byte) {
			switch t {
			case nhaID:
				id = getU32(d)
			case nhaOIF:
				n.oif = int(getU32(d))
			case nhaGateway:
				n.gw, _ = netip.AddrFromSlice(d)
			case nhaBlackhole:
				n.blackhole = true
			case nhaGroup:
				for len(d) >= sizeofNexthopGrp {
					n.group = append(n.group, getU32(d))
					d = d[sizeofNexthopGrp:]
				}
			}
		})
		out[id] = n
		return nil
	})
	return out
}

// hop is one next hop of a route.
type hop struct {
	gw       netip.Addr
	ifindex  int
	linkdown bool
}

func (c *nlConn) dumpRoutes(s *State, family uint8, names map[int]string, nh map[uint32]nexthop, seen map[gwKey]bool) error {
	hdr := make([]byte, unix.SizeofRtMsg)
	hdr[0] = family
	var hops []hop
	return c.do("dump routes", unix.RTM_GETROUTE, unix.NLM_F_DUMP, hdr, nil, func(typ uint16, p []byte) error {
		if typ != unix.RTM_NEWROUTE || len(p) < unix.SizeofRtMsg || p[0] != family {
			return nil
		}
		rtmFlags := binary.NativeEndian.Uint32(p[8:])
		if rtmFlags&unix.RTM_F_CLONED != 0 {
			return nil
		}
		dstLen := int(p[1])
		rtype := p[7]
		failing := rtype == unix.RTN_UNREACHABLE || rtype == unix.RTN_BLACKHOLE || rtype == unix.RTN_PROHIBIT || rtype == unix.RTN_THROW
		// The cheap part of the filter: local/broadcast routes of the local
		// table are never gateways, defaults, or failing.
		if seen != nil && dstLen != 0 && !failing && rtype != unix.RTN_UNICAST {
			return nil
		}
		r := Route{
			Family:   int(family),
			Table:    int(p[4]),
			Type:     routeTypeName(rtype),
			Protocol: protoName(p[5]),
		}
		var dst netip.Addr
		hops = hops[:0]
		var single hop
		var nhid uint32
		forAttrs(p[unix.SizeofRtMsg:], func(t uint16, d []byte) {
			switch t {
			case unix.RTA_DST:
				dst, _ = netip.AddrFromSlice(d)
			case unix.RTA_TABLE:
				r.Table = int(getU32(d))
			case unix.RTA_GATEWAY:
				single.gw, _ = netip.AddrFromSlice(d)
			case unix.RTA_VIA:
				single.gw = viaAddr(d)
			case unix.RTA_OIF:
				single.ifindex = int(getU32(d))
			case unix.RTA_PRIORITY:
				r.Metric = int(getU32(d))
			case unix.RTA_PREFSRC:
				r.Src, _ = netip.AddrFromSlice(d)
			case unix.RTA_CACHEINFO:
				r.HasExpiry, r.Expires = routeExpiry(d)
			case rtaNHID:
				nhid = getU32(d)
			case unix.RTA_MULTIPATH:
				for len(d) >= unix.SizeofRtNexthop {
					l := int(binary.NativeEndian.Uint16(d))
					if l < unix.SizeofRtNexthop || l > len(d) {
						break
					}
					h := hop{ifindex: int(int32(binary.NativeEndian.Uint32(d[4:]))), linkdown: d[2]&unix.RTNH_F_LINKDOWN != 0}
					forAttrs(d[unix.SizeofRtNexthop:l], func(t uint16, d []byte) {
						switch t {
						case unix.RTA_GATEWAY:
							h.gw, _ = netip.AddrFromSlice(d)
						case unix.RTA_VIA:
							h.gw = viaAddr(d)
						}
					})
					hops = append(hops, h)
					d = d[min(nlAlign(l), len(d)):]
				}
			}
		})
		if dst.IsValid() && dstLen != 0 {
			r.Dst = netip.PrefixFrom(dst, dstLen)
		}
		if nhid != 0 && len(hops) == 0 {
			hops = expandNexthop(hops, nh, nhid, 0)
			if o, ok := nh[nhid]; ok && o.blackhole && r.Type == "unicast" {
				r.Type = "blackhole"
			}
		}
		if len(hops) == 0 {
			single.linkdown = rtmFlags&unix.RTNH_F_LINKDOWN != 0
			hops = append(hops, single)
		}
		for _, h := range hops {
			rr := r
			rr.Gateway, rr.Ifindex, rr.Linkdown = h.gw, h.ifindex, h.linkdown
			rr.Dev = names[h.ifindex]
			if seen != nil && dstLen != 0 && !failing {
				if !rr.Gateway.IsValid() {
					continue
				}
				k := gwKey{rr.Family, rr.Table, rr.Ifindex, rr.Gateway}
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			s.Routes = append(s.Routes, rr)
		}
		return nil
	})
}

// expandNexthop resolves a nexthop object, following groups one level deep
// (the kernel forbids nested groups).
func expandNexthop(out []hop, nh map[uint32]nexthop, id uint32, depth int) []hop {
	n, ok := nh[id]
	if !ok {
		return out
	}
	if len(n.group) > 0 && depth == 0 {
		for _, m := range n.group {
			out = expandNexthop(out, nh, m, 1)
		}
		return out
	}
	return append(out, hop{gw: n.gw, ifindex: n.oif})
}

func (c *nlConn) dumpRules(s *State, family uint8) error {
	const sizeofFibRuleHdr = 12
	hdr := make([]byte, sizeofFibRuleHdr)
	hdr[0] = family
	return c.do("dump rules", unix.RTM_GETRULE, unix.NLM_F_DUMP, hdr, nil, func(typ uint16, p []byte) error {
		if typ != unix.RTM_NEWRULE || len(p) < sizeofFibRuleHdr || p[0] != family {
			return nil
		}
		s.Rules = append(s.Rules, parseRule(p))
		return nil
	})
}

// parseRule decodes a fib_rule_hdr and its attributes (one RTM_NEWRULE payload).
func parseRule(p []byte) Rule {
	const sizeofFibRuleHdr = 12
	ne := binary.NativeEndian
	flags := ne.Uint32(p[8:])
	r := Rule{
		Family: int(p[0]),
		Table:  int(p[4]),
		Action: ruleActionName(p[7]),
		Invert: flags&unix.FIB_RULE_INVERT != 0,
	}
	dstLen, srcLen, tos := int(p[1]), int(p[2]), p[3]
	var x ruleExtras
	if tos != 0 {
		x.tos = fmt.Sprintf("0x%02x", tos)
	}
	var src, dst netip.Addr
	maskSeen := false
	var l3mdev bool
	suppress := -1
	forAttrs(p[sizeofFibRuleHdr:], func(t uint16, d []byte) {
		switch t {
		case unix.FRA_PRIORITY:
			r.Priority = int(getU32(d))
		case unix.FRA_TABLE:
			r.Table = int(getU32(d))
		case unix.FRA_SRC:
			src, _ = netip.AddrFromSlice(d)
		case unix.FRA_DST:
			dst, _ = netip.AddrFromSlice(d)
		case unix.FRA_FWMARK:
			r.Mark, r.HasMark = getU32(d), true
		case unix.FRA_FWMASK:
			r.Mask, r.HasMark, maskSeen = getU32(d), true, true
		case unix.FRA_IIFNAME:
			r.IifName = cString(d)
		case unix.FRA_OIFNAME:
			r.OifName = cString(d)
		case unix.FRA_GOTO:
			r.Goto = int(getU32(d))
		case unix.FRA_UID_RANGE:
			if len(d) >= 8 {
				r.UIDRange = fmt.Sprintf("%d-%d", ne.Uint32(d), ne.Uint32(d[4:]))
			}
		case unix.FRA_IP_PROTO:
			if len(d) >= 1 {
				x.ipproto = "ipproto " + ipProtoName(d[0])
			}
		case unix.FRA_SPORT_RANGE, unix.FRA_DPORT_RANGE:
			if len(d) >= 4 {
				lo, hi := ne.Uint16(d), ne.Uint16(d[2:])
				v := strconv.Itoa(int(lo))
				if lo != hi {
					v = fmt.Sprintf("%d-%d", lo, hi)
				}
				if t == unix.FRA_DPORT_RANGE {
					x.dport = "dport " + v
				} else {
					x.sport = "sport " + v
				}
			}
		case unix.FRA_L3MDEV:
			l3mdev = len(d) > 0 && d[0] != 0
		case unix.FRA_SUPPRESS_PREFIXLEN:
			suppress = int(int32(getU32(d)))
		}
	})
	if r.HasMark && !maskSeen {
		r.Mask = 0xffffffff
	}
	if src.IsValid() {
		r.Src = netip.PrefixFrom(src, srcLen)
	}
	if dst.IsValid() {
		r.Dst = netip.PrefixFrom(dst, dstLen)
	}
	if flags&unix.FIB_RULE_IIF_DETACHED != 0 && r.IifName != "" {
		r.IifName += " [detached]"
	}
	if flags&unix.FIB_RULE_OIF_DETACHED != 0 && r.OifName != "" {
		r.OifName += " [detached]"
	}
	if suppress >= 0 {
		x.suppress = strconv.Itoa(suppress)
	}
	r.Text = r.render(x)
	if l3mdev && r.Action == "lookup" {
		r.Text = replaceLookup(r.Text, TableName(r.Table), "[l3mdev-table]")
	}
	return r
}

func replaceLookup(text, table, with string) string {
	old := " lookup " + table
	for i := len(text) - len(old); i >= 0; i-- {
		if text[i:i+len(old)] == old {
			return text[:i] + " lookup " + with + text[i+len(old):]
		}
	}
	return text
}

func ipProtoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "ipv6-icmp"
	case unix.IPPROTO_SCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

func (c *nlConn) dumpNeighbors(s *State, family uint8, names map[int]string) error {
	hdr := make([]byte, unix.SizeofNdMsg)
	hdr[0] = family
	return c.do("dump neighbours", unix.RTM_GETNEIGH, unix.NLM_F_DUMP, hdr, nil, func(typ uint16, p []byte) error {
		if typ != unix.RTM_NEWNEIGH || len(p) < unix.SizeofNdMsg || p[0] != family {
			return nil
		}
		ne := binary.NativeEndian
		n := Neighbor{
			Ifindex: int(int32(ne.Uint32(p[4:]))),
			State:   neighStateText(ne.Uint16(p[8:])),
			Router:  p[10]&unix.NTF_ROUTER != 0,
		}
		n.Dev = names[n.Ifindex]
		forAttrs(p[unix.SizeofNdMsg:], func(t uint16, d []byte) {
			switch t {
			case unix.NDA_DST:
				n.IP, _ = netip.AddrFromSlice(d)
			case unix.NDA_LLADDR:
				n.LLAddr = append(net.HardwareAddr(nil), d...)
			}
		})
		if !n.IP.IsValid() {
			return nil
		}
		s.Neighbors = append(s.Neighbors, n)
		return nil
	})
}

// RefreshNeighbors re-reads the neighbour table into s. The doctor collects
// routes while its window runs, but a next hop that fails to resolve only
// shows as INCOMPLETE/FAILED while the kernel is trying it, and failed
// entries are garbage-collected: reading them again at the window's end
// catches what the window's traffic did.
func (s *State) RefreshNeighbors() error {
	c, err := dialRoute()
	if err != nil {
		return fmt.Errorf("refresh neighbours: %w", err)
	}
	defer c.close()
	names := map[int]string{}
	for _, l := range s.Links {
		names[l.Index] = l.Name
	}
	fresh := &State{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := c.dumpNeighbors(fresh, fam, names); err != nil {
			if fam == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
				break
			}
			return fmt.Errorf("refresh neighbours: %w", err)
		}
	}
	s.Neighbors = fresh.Neighbors
	return nil
}

// userHZ is the tick rate of rta_cacheinfo's and ifa_cacheinfo's times
// (jiffies_to_clock_t, cstamp_delta: hundredths of a second).
const userHZ = 100

// routeExpiry reads rta_expires (s32 ticks at offset 8 of struct
// rta_cacheinfo): non-zero only for routes with RTF_EXPIRES, negative once
// they expired.
func routeExpiry(d []byte) (bool, time.Duration) {
	if len(d) < 12 {
		return false, 0
	}
	ex := int32(binary.NativeEndian.Uint32(d[8:]))
	if ex == 0 {
		return false, 0
	}
	return true, time.Duration(ex) * time.Second / userHZ
}

// addrAge reads cstamp (u32 hundredths of a second since boot, offset 8 of
// struct ifa_cacheinfo) and returns how long ago that was, on the same
// clock (CLOCK_MONOTONIC, which like jiffies stops in suspend).
func addrAge(d []byte) time.Duration {
	if len(d) < 16 {
		return 0
	}
	created := time.Duration(binary.NativeEndian.Uint32(d[8:])) * time.Second / userHZ
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	if now := time.Duration(ts.Nano()); now > created {
		return now - created
	}
	return 0
}

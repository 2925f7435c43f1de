package rtnl

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl"
)

// Attributes and sizes x/sys/unix does not export (linux/rtnetlink.h).
const (
	rtaNHID = 30 // RTA_NH_ID
	// rtaCacheinfoExpires and rtaCacheinfoError are the offsets of
	// rta_expires and rta_error (s32 each) in struct rta_cacheinfo.
	rtaCacheinfoExpires = 8
	rtaCacheinfoError   = 12
	// UserHZ is the tick rate of rta_cacheinfo's and ifa_cacheinfo's times
	// (jiffies_to_clock_t: hundredths of a second).
	UserHZ = 100
)

// Route is one route message (RTM_NEWROUTE / RTM_DELROUTE) as the kernel
// sent it: the rtmsg header with every attribute synscope reads. It is the
// one decoded form of a route; the packages above keep views of it.
type Route struct {
	Family uint8 // unix.AF_INET or unix.AF_INET6
	// DstLen and SrcLen are rtm_dst_len and rtm_src_len. Dst and Src hold
	// RTA_DST / RTA_SRC with those lengths; they are invalid when the
	// attribute is absent (a default route has DstLen 0 and no RTA_DST).
	DstLen, SrcLen uint8
	Dst, Src       netip.Prefix
	Tos            uint8
	Table          int // RTA_TABLE when present (tables above 255), rtm_table otherwise
	Protocol       uint8
	Scope          uint8
	Type           uint8
	// Flags is rtm_flags: RTM_F_* and, for a single-hop route, its hop's
	// RTNH_F_* (dead, linkdown, onlink...).
	Flags    uint32
	Gateway  netip.Addr // RTA_GATEWAY, or the address of RTA_VIA
	Oif      int        // RTA_OIF
	Priority uint32     // RTA_PRIORITY (the metric)
	PrefSrc  netip.Addr // RTA_PREFSRC
	Pref     uint8      // RTA_PREF (IPv6 router preference)
	NHID     uint32     // RTA_NH_ID: the route uses nexthop object NHID
	// Hops are the next hops of RTA_MULTIPATH, nil for a single-hop route
	// (see NextHops).
	Hops []Hop
	// HasExpiry is set when RTA_CACHEINFO carries a non-zero rta_expires
	// (routes with a lifetime: RA-learned); Expires is what was left of it
	// when the kernel built the message, <= 0 once expired (the kernel
	// keeps listing an expired route until its garbage collector runs).
	HasExpiry bool
	Expires   time.Duration
	// Error is rta_error of RTA_CACHEINFO as a positive errno: older IPv6
	// kernels answered a lookup that ends on a failing route with the
	// route and this error.
	Error unix.Errno
}

// Hop is one next hop of a route.
type Hop struct {
	Gateway netip.Addr
	Ifindex int
	Flags   uint8 // RTNH_F_*
}

// IsDefault reports whether r is a default route (prefix length 0).
func (r Route) IsDefault() bool { return r.DstLen == 0 }

// NextHops lists the route's next hops: the RTA_MULTIPATH ones, or the one
// the header and RTA_GATEWAY/RTA_OIF describe.
func (r Route) NextHops() []Hop {
	if len(r.Hops) > 0 {
		return r.Hops
	}
	return []Hop{{Gateway: r.Gateway, Ifindex: r.Oif, Flags: uint8(r.Flags)}}
}

// Expired reports whether the route has a lifetime and it ran out: the
// kernel still lists it and lookups skip it.
func (r Route) Expired() bool { return r.HasExpiry && r.Expires <= 0 }

// Usable is synscope's one definition of a route a lookup can send traffic
// through: a unicast route, not expired, its hop not dead, and not
// link-down where the namespace ignores link-down routes
// (ignore_routes_with_linkdown). hopFlags are the hop's RTNH_F_* flags.
func Usable(typ uint8, expired bool, hopFlags uint32, ignoreLinkdown bool) bool {
	if typ != unix.RTN_UNICAST || expired {
		return false
	}
	if hopFlags&unix.RTNH_F_DEAD != 0 {
		return false
	}
	return !ignoreLinkdown || hopFlags&unix.RTNH_F_LINKDOWN == 0
}

// DecodeRoute decodes the payload of a route message (after the netlink
// header).
func DecodeRoute(p []byte) (Route, error) {
	if len(p) < unix.SizeofRtMsg {
		return Route{}, fmt.Errorf("route message: %d bytes, rtmsg needs %d", len(p), unix.SizeofRtMsg)
	}
	r := Route{
		Family:   p[0],
		DstLen:   p[1],
		SrcLen:   p[2],
		Tos:      p[3],
		Table:    int(p[4]),
		Protocol: p[5],
		Scope:    p[6],
		Type:     p[7],
		Flags:    binary.NativeEndian.Uint32(p[8:12]),
	}
	var hopsErr error
	err := nl.Attributes(p, unix.SizeofRtMsg, func(ad *nl.AttrDecoder) {
		switch ad.Type() {
		case unix.RTA_DST:
			if a := ad.Addr(); a.IsValid() {
				r.Dst = netip.PrefixFrom(a, int(r.DstLen))
			}
		case unix.RTA_SRC:
			if a := ad.Addr(); a.IsValid() {
				r.Src = netip.PrefixFrom(a, int(r.SrcLen))
			}
		case unix.RTA_TABLE:
			r.Table = int(ad.Uint32())
		case unix.RTA_GATEWAY:
			r.Gateway = ad.Addr()
		case unix.RTA_VIA:
			r.Gateway = viaAddr(ad.Bytes())
		case unix.RTA_OIF:
			r.Oif = int(ad.Uint32())
		case unix.RTA_PRIORITY:
			r.Priority = ad.Uint32()
		case unix.RTA_PREFSRC:
			r.PrefSrc = ad.Addr()
		case unix.RTA_PREF:
			r.Pref = ad.Uint8()
		case rtaNHID:
			r.NHID = ad.Uint32()
		case unix.RTA_CACHEINFO:
			d := ad.Bytes()
			if len(d) >= rtaCacheinfoExpires+4 {
				if ex := int32(binary.NativeEndian.Uint32(d[rtaCacheinfoExpires:])); ex != 0 {
					r.HasExpiry = true
					r.Expires = time.Duration(ex) * time.Second / UserHZ
				}
			}
			if len(d) >= rtaCacheinfoError+4 {
				if e := int32(binary.NativeEndian.Uint32(d[rtaCacheinfoError:])); e != 0 {
					r.Error = unix.Errno(max(e, -e))
				}
			}
		case unix.RTA_MULTIPATH:
			r.Hops, hopsErr = decodeMultipath(ad.Bytes())
		}
	})
	if err == nil {
		err = hopsErr
	}
	if err != nil {
		return r, fmt.Errorf("route message: %w", err)
	}
	return r, nil
}

// decodeMultipath walks struct rtnexthop entries: len u16, flags u8,
// hops u8, ifindex s32, then the hop's attributes.
func decodeMultipath(d []byte) ([]Hop, error) {
	var out []Hop
	for len(d) > 0 {
		if len(d) < unix.SizeofRtNexthop {
			return out, fmt.Errorf("multipath: %d trailing bytes", len(d))
		}
		l := int(binary.NativeEndian.Uint16(d[0:2]))
		if l < unix.SizeofRtNexthop || l > len(d) {
			return out, fmt.Errorf("multipath: next hop length %d of %d bytes", l, len(d))
		}
		h := Hop{Flags: d[2], Ifindex: int(int32(binary.NativeEndian.Uint32(d[4:8])))}
		err := nl.Nested(d[unix.SizeofRtNexthop:l], func(ad *nl.AttrDecoder) {
			switch ad.Type() {
			case unix.RTA_GATEWAY:
				h.Gateway = ad.Addr()
			case unix.RTA_VIA:
				h.Gateway = viaAddr(ad.Bytes())
			}
		})
		if err != nil {
			return out, fmt.Errorf("multipath: %w", err)
		}
		out = append(out, h)
		d = d[min(nl.Align(l), len(d)):]
	}
	return out, nil
}

// viaAddr decodes struct rtvia: a u16 family, then the address.
func viaAddr(d []byte) netip.Addr {
	if len(d) < 2 {
		return netip.Addr{}
	}
	return nl.Addr(d[2:])
}

// EncodeRoute lays out a route message payload for RTM_NEWROUTE or
// RTM_DELROUTE from r: the header fields, RTA_TABLE (always, so tables
// above 255 work), RTA_DST/RTA_SRC when valid, RTA_OIF, RTA_GATEWAY,
// RTA_PRIORITY, RTA_PREFSRC and RTA_PREF when set. Multipath and nexthop
// objects are not encoded.
func EncodeRoute(r Route) ([]byte, error) {
	hdr := make([]byte, unix.SizeofRtMsg)
	hdr[0] = r.Family
	hdr[1] = r.DstLen
	hdr[2] = r.SrcLen
	hdr[3] = r.Tos
	if r.Table < 256 {
		hdr[4] = uint8(r.Table)
	}
	hdr[5], hdr[6], hdr[7] = r.Protocol, r.Scope, r.Type
	binary.NativeEndian.PutUint32(hdr[8:12], r.Flags)
	return nl.Payload(hdr, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.RTA_TABLE, uint32(r.Table))
		if r.Dst.IsValid() {
			ae.Bytes(unix.RTA_DST, r.Dst.Addr().AsSlice())
		}
		if r.Src.IsValid() {
			ae.Bytes(unix.RTA_SRC, r.Src.Addr().AsSlice())
		}
		if r.Oif != 0 {
			ae.Uint32(unix.RTA_OIF, uint32(r.Oif))
		}
		if r.Gateway.IsValid() {
			ae.Bytes(unix.RTA_GATEWAY, r.Gateway.AsSlice())
		}
		if r.Priority != 0 {
			ae.Uint32(unix.RTA_PRIORITY, r.Priority)
		}
		if r.PrefSrc.IsValid() {
			ae.Bytes(unix.RTA_PREFSRC, r.PrefSrc.AsSlice())
		}
		if r.Pref != 0 {
			ae.Uint8(unix.RTA_PREF, r.Pref)
		}
	})
}

// Lookup is an RTM_GETROUTE query: what `ip route get` sends.
type Lookup struct {
	Dst, Src netip.Addr // Src may be invalid
	Oif      int        // 0 = none
	Mark     uint32
	HasMark  bool
	UID      uint32
	HasUID   bool
	IPProto  uint8 // 0 = not sent
	Sport    uint16
	Dport    uint16 // sent when IPProto is
	Tos      uint8
	Flags    uint32 // rtm_flags, e.g. RTM_F_LOOKUP_TABLE
}

// Payload lays out the query's route message.
func (q Lookup) Payload() ([]byte, error) {
	dst := q.Dst.Unmap()
	if !dst.IsValid() {
		return nil, fmt.Errorf("route lookup without destination")
	}
	hdr := make([]byte, unix.SizeofRtMsg)
	hdr[0] = Family(dst)
	hdr[1] = uint8(dst.BitLen())
	src := q.Src
	if src.IsValid() {
		src = src.Unmap()
		hdr[2] = uint8(src.BitLen())
	}
	hdr[3] = q.Tos
	binary.NativeEndian.PutUint32(hdr[8:12], q.Flags)
	return nl.Payload(hdr, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(unix.RTA_DST, dst.AsSlice())
		if src.IsValid() {
			ae.Bytes(unix.RTA_SRC, src.AsSlice())
		}
		if q.Oif != 0 {
			ae.Uint32(unix.RTA_OIF, uint32(q.Oif))
		}
		if q.HasMark {
			ae.Uint32(unix.RTA_MARK, q.Mark)
		}
		if q.HasUID {
			ae.Uint32(unix.RTA_UID, q.UID)
		}
		if q.IPProto != 0 {
			ae.Uint8(unix.RTA_IP_PROTO, q.IPProto)
			be := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
			ae.Bytes(unix.RTA_SPORT, be(q.Sport))
			ae.Bytes(unix.RTA_DPORT, be(q.Dport))
		}
	})
}

// Family is the address family of a (unmapped) address.
func Family(a netip.Addr) uint8 {
	if a.Unmap().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

package rtnl

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl"
)

// Link is one link message (RTM_NEWLINK) decoded.
type Link struct {
	Index        int
	Flags        uint32 // ifi_flags (IFF_*)
	Name         string
	HardwareAddr net.HardwareAddr
	Kind         string // IFLA_INFO_KIND: veth, bridge, vrf, ... ("" for physical devices)
	Master       int    // IFLA_MASTER, 0 = none
	// CarrierChanges counts carrier up/down transitions since the device
	// was created (IFLA_CARRIER_CHANGES); admin down/up counts too.
	CarrierChanges uint32
}

// Up reports IFF_UP (administratively up).
func (l Link) Up() bool { return l.Flags&unix.IFF_UP != 0 }

// Carrier reports IFF_LOWER_UP (the device has carrier).
func (l Link) Carrier() bool { return l.Flags&unix.IFF_LOWER_UP != 0 }

// DecodeLink decodes the payload of a link message.
func DecodeLink(p []byte) (Link, error) {
	if len(p) < unix.SizeofIfInfomsg {
		return Link{}, fmt.Errorf("link message: %d bytes, ifinfomsg needs %d", len(p), unix.SizeofIfInfomsg)
	}
	l := Link{
		Index: int(int32(binary.NativeEndian.Uint32(p[4:8]))),
		Flags: binary.NativeEndian.Uint32(p[8:12]),
	}
	var infoErr error
	err := nl.Attributes(p, unix.SizeofIfInfomsg, func(ad *nl.AttrDecoder) {
		switch ad.Type() {
		case unix.IFLA_IFNAME:
			l.Name = nl.CString(ad.Bytes())
		case unix.IFLA_ADDRESS:
			l.HardwareAddr = append(net.HardwareAddr(nil), ad.Bytes()...)
		case unix.IFLA_MASTER:
			l.Master = int(ad.Uint32())
		case unix.IFLA_CARRIER_CHANGES:
			l.CarrierChanges = ad.Uint32()
		case unix.IFLA_LINKINFO:
			infoErr = nl.Nested(ad.Bytes(), func(ad *nl.AttrDecoder) {
				if ad.Type() == unix.IFLA_INFO_KIND {
					l.Kind = nl.CString(ad.Bytes())
				}
			})
		}
	})
	if err == nil {
		err = infoErr
	}
	if err != nil {
		return l, fmt.Errorf("link message: %w", err)
	}
	return l, nil
}

// Addr is one address message (RTM_NEWADDR / RTM_DELADDR) decoded.
type Addr struct {
	Family    uint8
	PrefixLen uint8
	Flags     uint32 // IFA_FLAGS when present, ifa_flags otherwise
	Scope     uint8
	Ifindex   int
	// Local is IFA_LOCAL and Address IFA_ADDRESS; on point-to-point links
	// IFA_ADDRESS is the peer's, elsewhere both are the local address.
	Local, Address netip.Addr
	// Created is ifa_cacheinfo's cstamp (time since boot, CLOCK_MONOTONIC,
	// hundredths of a second); HasCacheinfo tells whether it was sent.
	Created      time.Duration
	HasCacheinfo bool
}

// Prefix is the local address with the connected prefix length (invalid
// when the message carried no address).
func (a Addr) Prefix() netip.Prefix {
	ip := a.Local
	if !ip.IsValid() {
		ip = a.Address
	}
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(ip, int(a.PrefixLen))
}

// DecodeAddr decodes the payload of an address message.
func DecodeAddr(p []byte) (Addr, error) {
	if len(p) < unix.SizeofIfAddrmsg {
		return Addr{}, fmt.Errorf("address message: %d bytes, ifaddrmsg needs %d", len(p), unix.SizeofIfAddrmsg)
	}
	a := Addr{
		Family:    p[0],
		PrefixLen: p[1],
		Flags:     uint32(p[2]),
		Scope:     p[3],
		Ifindex:   int(binary.NativeEndian.Uint32(p[4:8])),
	}
	err := nl.Attributes(p, unix.SizeofIfAddrmsg, func(ad *nl.AttrDecoder) {
		switch ad.Type() {
		case unix.IFA_LOCAL:
			a.Local = ad.Addr()
		case unix.IFA_ADDRESS:
			a.Address = ad.Addr()
		case unix.IFA_FLAGS:
			a.Flags = ad.Uint32()
		case unix.IFA_CACHEINFO:
			// struct ifa_cacheinfo: prefered, valid, cstamp, tstamp (u32).
			if d := ad.Bytes(); len(d) >= 12 {
				a.Created = time.Duration(binary.NativeEndian.Uint32(d[8:12])) * time.Second / UserHZ
				a.HasCacheinfo = true
			}
		}
	})
	if err != nil {
		return a, fmt.Errorf("address message: %w", err)
	}
	return a, nil
}

// Neigh is one neighbour message (RTM_NEWNEIGH / RTM_DELNEIGH) decoded.
type Neigh struct {
	Family  uint8
	Ifindex int
	State   uint16 // NUD_*
	Flags   uint8  // NTF_*
	Type    uint8
	IP      netip.Addr // NDA_DST
	LLAddr  net.HardwareAddr
}

// Router reports NTF_ROUTER (the neighbour said it is a router).
func (n Neigh) Router() bool { return n.Flags&unix.NTF_ROUTER != 0 }

// DecodeNeigh decodes the payload of a neighbour message.
func DecodeNeigh(p []byte) (Neigh, error) {
	if len(p) < unix.SizeofNdMsg {
		return Neigh{}, fmt.Errorf("neighbour message: %d bytes, ndmsg needs %d", len(p), unix.SizeofNdMsg)
	}
	n := Neigh{
		Family:  p[0],
		Ifindex: int(int32(binary.NativeEndian.Uint32(p[4:8]))),
		State:   binary.NativeEndian.Uint16(p[8:10]),
		Flags:   p[10],
		Type:    p[11],
	}
	err := nl.Attributes(p, unix.SizeofNdMsg, func(ad *nl.AttrDecoder) {
		switch ad.Type() {
		case unix.NDA_DST:
			n.IP = ad.Addr()
		case unix.NDA_LLADDR:
			n.LLAddr = append(net.HardwareAddr(nil), ad.Bytes()...)
		}
	})
	if err != nil {
		return n, fmt.Errorf("neighbour message: %w", err)
	}
	return n, nil
}

// netconf attributes (linux/netconf.h); x/sys/unix does not carry them.
const (
	netconfaIfindex        = 1
	netconfaForwarding     = 2
	netconfaRpFilter       = 3
	netconfaIgnoreLinkdown = 6
	sizeofNetconfmsg       = 4
	// NetconfIfindexAll and NetconfIfindexDefault are the Ifindex of the
	// "all" and "default" configurations.
	NetconfIfindexAll     = -1
	NetconfIfindexDefault = -2
)

// Netconf is one netconf message (RTM_NEWNETCONF) decoded. A value the
// message did not carry is -1.
type Netconf struct {
	Family         uint8
	Ifindex        int
	Forwarding     int
	RPFilter       int
	IgnoreLinkdown int
}

// DecodeNetconf decodes the payload of a netconf message.
func DecodeNetconf(p []byte) (Netconf, error) {
	if len(p) < sizeofNetconfmsg {
		return Netconf{}, fmt.Errorf("netconf message: %d bytes, netconfmsg needs %d", len(p), sizeofNetconfmsg)
	}
	n := Netconf{Family: p[0], Forwarding: -1, RPFilter: -1, IgnoreLinkdown: -1}
	err := nl.Attributes(p, sizeofNetconfmsg, func(ad *nl.AttrDecoder) {
		switch ad.Type() {
		case netconfaIfindex:
			n.Ifindex = int(ad.Int32())
		case netconfaForwarding:
			n.Forwarding = int(ad.Int32())
		case netconfaRpFilter:
			n.RPFilter = int(ad.Int32())
		case netconfaIgnoreLinkdown:
			n.IgnoreLinkdown = int(ad.Int32())
		}
	})
	if err != nil {
		return n, fmt.Errorf("netconf message: %w", err)
	}
	return n, nil
}

// Nexthop attributes (linux/nexthop.h), absent from x/sys/unix.
const (
	RTMGetNexthop    = 106
	rtmNewNexthop    = 104
	nhaID            = 1
	nhaGroup         = 2
	nhaBlackhole     = 3
	nhaOIF           = 5
	nhaGateway       = 6
	sizeofNhmsg      = 8
	sizeofNexthopGrp = 8
)

// Nexthop is one nexthop object message (RTM_NEWNEXTHOP) decoded: what a
// route's NHID refers to.
type Nexthop struct {
	ID        uint32
	Gateway   netip.Addr
	Oif       int
	Blackhole bool
	Group     []uint32 // member ids of a group
}

// DecodeNexthop decodes the payload of a nexthop message.
func DecodeNexthop(p []byte) (Nexthop, error) {
	var n Nexthop
	err := nl.Attributes(p, sizeofNhmsg, func(ad *nl.AttrDecoder) {
		switch ad.Type() {
		case nhaID:
			n.ID = ad.Uint32()
		case nhaOIF:
			n.Oif = int(ad.Uint32())
		case nhaGateway:
			n.Gateway = ad.Addr()
		case nhaBlackhole:
			n.Blackhole = true
		case nhaGroup:
			// struct nexthop_grp: id u32, weight u8, resvd...
			for d := ad.Bytes(); len(d) >= sizeofNexthopGrp; d = d[sizeofNexthopGrp:] {
				n.Group = append(n.Group, binary.NativeEndian.Uint32(d))
			}
		}
	})
	if err != nil {
		return n, fmt.Errorf("nexthop message: %w", err)
	}
	return n, nil
}

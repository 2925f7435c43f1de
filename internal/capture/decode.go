package capture

import (
	"encoding/binary"
	"net/netip"
)

// Link types accepted by Decode: the ARPHRD_* values of linux/if_arp.h, as
// sockaddr_ll.sll_hatype reports them. Kept here so the decoder has no
// dependency on the platform.
const (
	LinkEthernet uint16 = 1   // ARPHRD_ETHER
	LinkTunnel   uint16 = 768 // ARPHRD_TUNNEL (ipip)
	LinkTunnel6  uint16 = 769 // ARPHRD_TUNNEL6 (ip6tnl)
	LinkLoopback uint16 = 772 // ARPHRD_LOOPBACK
	LinkRawIP    uint16 = 519 // ARPHRD_RAWIP
	LinkNone     uint16 = 0xfffe
)

// TCP flag bits as they sit in byte 13 of the TCP header.
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagPSH uint8 = 0x08
	FlagACK uint8 = 0x10
)

const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100
	etherTypeQinQ  = 0x88a8
	protoTCP       = 6
	ethHeaderLen   = 14
	vlanTagLen     = 4
	ipv6HeaderLen  = 40
	tcpMinHeader   = 20
	maxIPv6ExtHdrs = 8 // bound on the extension-header walk
)

// Packet is one decoded TCP segment header. It holds no reference to the
// frame it came from, so the read buffer can be reused at once.
type Packet struct {
	Src, Dst netip.AddrPort
	Flags    uint8  // TCP flag byte (FlagSYN, ...)
	TTL      uint8  // IPv4 TTL or IPv6 hop limit
	MSS      uint16 // MSS option, 0 if absent or not captured
	SrcMAC   [6]byte
	HasMAC   bool   // SrcMAC is valid (the link has an Ethernet header)
	VLAN     uint16 // 802.1Q VLAN ID when the tag was in the frame, else 0
}

// SYN reports a connection request (SYN without ACK).
func (p *Packet) SYN() bool { return p.Flags&(FlagSYN|FlagACK|FlagRST) == FlagSYN }

// SYNACK reports a connection acceptance (SYN and ACK, no RST).
func (p *Packet) SYNACK() bool { return p.Flags&(FlagSYN|FlagACK|FlagRST) == FlagSYN|FlagACK }

// RST reports a reset (with or without other flags).
func (p *Packet) RST() bool { return p.Flags&FlagRST != 0 }

// Decode parses a frame as delivered by an AF_PACKET SOCK_RAW socket on an
// interface of the given link type. It returns false for anything that is
// not a complete IPv4/IPv6 TCP header (other protocols, non-first fragments,
// truncated frames, unknown link types); it never panics and never
// allocates. The TCP options are parsed as far as they were captured.
func Decode(frame []byte, linkType uint16) (Packet, bool) {
	var p Packet
	var l3 []byte
	switch linkType {
	case LinkEthernet, LinkLoopback:
		if len(frame) < ethHeaderLen {
			return p, false
		}
		copy(p.SrcMAC[:], frame[6:12])
		p.HasMAC = true
		et := binary.BigEndian.Uint16(frame[12:14])
		off := ethHeaderLen
		if et == etherTypeVLAN || et == etherTypeQinQ {
			if len(frame) < ethHeaderLen+vlanTagLen {
				return p, false
			}
			p.VLAN = binary.BigEndian.Uint16(frame[14:16]) & 0x0fff
			et = binary.BigEndian.Uint16(frame[16:18])
			off += vlanTagLen
		}
		switch et {
		case etherTypeIPv4, etherTypeIPv6:
		default:
			return p, false
		}
		l3 = frame[off:]
		// The IP version must agree with the EtherType.
		if len(l3) == 0 || (et == etherTypeIPv4) != (l3[0]>>4 == 4) {
			return p, false
		}
	case LinkNone, LinkRawIP, LinkTunnel, LinkTunnel6:
		l3 = frame
	default:
		return p, false
	}
	if len(l3) == 0 {
		return p, false
	}
	var tcp []byte
	switch l3[0] >> 4 {
	case 4:
		if len(l3) < 20 {
			return p, false
		}
		ihl := int(l3[0]&0x0f) * 4
		if ihl < 20 || len(l3) < ihl || l3[9] != protoTCP {
			return p, false
		}
		if binary.BigEndian.Uint16(l3[6:8])&0x1fff != 0 {
			return p, false // a later fragment: no TCP header here
		}
		p.TTL = l3[8]
		src := netip.AddrFrom4([4]byte(l3[12:16]))
		dst := netip.AddrFrom4([4]byte(l3[16:20]))
		tcp = l3[ihl:]
		if len(tcp) < tcpMinHeader {
			return p, false
		}
		p.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:2]))
		p.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:4]))
	case 6:
		if len(l3) < ipv6HeaderLen {
			return p, false
		}
		p.TTL = l3[7]
		src := netip.AddrFrom16([16]byte(l3[8:24]))
		dst := netip.AddrFrom16([16]byte(l3[24:40]))
		next, rest, ok := skipIPv6Ext(l3[6], l3[ipv6HeaderLen:])
		if !ok || next != protoTCP || len(rest) < tcpMinHeader {
			return p, false
		}
		tcp = rest
		p.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:2]))
		p.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:4]))
	default:
		return p, false
	}
	p.Flags = tcp[13]
	doff := int(tcp[12]>>4) * 4
	if doff < tcpMinHeader {
		return p, false
	}
	if doff > len(tcp) {
		doff = len(tcp) // options cut by the snap length: parse what we have
	}
	p.MSS = parseMSS(tcp[tcpMinHeader:doff])
	return p, true
}

// skipIPv6Ext walks the extension headers that may precede TCP. The kernel
// filter does not do this (see the package doc); the decoder does so that
// it can also serve recorded captures.
func skipIPv6Ext(next uint8, b []byte) (uint8, []byte, bool) {
	for i := 0; i < maxIPv6ExtHdrs; i++ {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < 8 {
				return 0, nil, false
			}
			n := (int(b[1]) + 1) * 8
			if len(b) < n {
				return 0, nil, false
			}
			next, b = b[0], b[n:]
		case 44: // fragment
			if len(b) < 8 {
				return 0, nil, false
			}
			if binary.BigEndian.Uint16(b[2:4])&0xfff8 != 0 {
				return 0, nil, false // not the first fragment
			}
			next, b = b[0], b[8:]
		default:
			return next, b, true
		}
	}
	return 0, nil, false
}

// parseMSS returns the MSS option's value from the TCP option bytes.
func parseMSS(opts []byte) uint16 {
	for i := 0; i < len(opts); {
		switch kind := opts[i]; kind {
		case 0: // end of options
			return 0
		case 1: // no-op
			i++
		default:
			if i+1 >= len(opts) {
				return 0
			}
			l := int(opts[i+1])
			if l < 2 || i+l > len(opts) {
				return 0
			}
			if kind == 2 && l == 4 {
				return binary.BigEndian.Uint16(opts[i+2 : i+4])
			}
			i += l
		}
	}
	return 0
}

package capture

import (
	"net/netip"

	"github.com/synscope/synscope/internal/packet"
)

// TCP flag bits as they sit in byte 13 of the TCP header.
const (
	FlagSYN uint8 = packet.SYN
	FlagRST uint8 = packet.RST
	FlagACK uint8 = packet.ACK
)

// Packet is one decoded TCP segment header, in the form the flow table
// keys on. It holds no reference to the frame it came from, so the read
// buffer can be reused at once.
type Packet struct {
	Src, Dst netip.AddrPort
	Flags    uint8  // TCP flag byte (FlagSYN, ...)
	TTL      uint8  // IPv4 TTL or IPv6 hop limit
	MSS      uint16 // MSS option, 0 if absent
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
// interface of the given ARPHRD type, with internal/packet's decoder (the
// one pcap uses). It returns false for anything that is not a bare
// IPv4/IPv6 TCP header: other protocols, non-first fragments, truncated
// headers, unknown link types, and segments inside a tunnel (the kernel
// filter passes none). It never panics and never allocates.
func Decode(frame []byte, hatype uint16) (Packet, bool) {
	link, ok := packet.LinkFromARPHRD(hatype)
	if !ok {
		return Packet{}, false
	}
	var d packet.Decoder
	var pk packet.Packet
	if err := d.Decode(link, frame, &pk); err != nil || pk.Kind != packet.KindTCP || pk.Encaps != 0 {
		return Packet{}, false
	}
	return Packet{
		Src:    netip.AddrPortFrom(pk.Src.IP(pk.V6), pk.SrcPort),
		Dst:    netip.AddrPortFrom(pk.Dst.IP(pk.V6), pk.DstPort),
		Flags:  pk.Flags,
		TTL:    pk.TTL,
		MSS:    pk.Opt.MSS,
		SrcMAC: pk.SrcMAC,
		HasMAC: pk.HasMAC,
		VLAN:   pk.VLAN,
	}, true
}

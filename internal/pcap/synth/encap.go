package synth

import (
	"encoding/binary"
	"net/netip"

	"github.com/synscope/synscope/internal/packet/checksum"
)

// IPPacket wraps payload in an IPv4 or IPv6 header (by src's family)
// with the given protocol number.
func IPPacket(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	if src.Is4() {
		ip := make([]byte, 20, 20+len(payload))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(payload)))
		ip[6] = 0x40
		ip[8], ip[9] = 64, proto
		a, b := src.As4(), dst.As4()
		copy(ip[12:], a[:])
		copy(ip[16:], b[:])
		binary.BigEndian.PutUint16(ip[10:], ^checksum.Of(ip, 0))
		return append(ip, payload...)
	}
	ip := make([]byte, 40, 40+len(payload))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(payload)))
	ip[6], ip[7] = proto, 64
	a, b := src.As16(), dst.As16()
	copy(ip[8:], a[:])
	copy(ip[24:], b[:])
	return append(ip, payload...)
}

// UDPPacket is an IP packet carrying a UDP datagram (checksum 0).
func UDPPacket(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u, sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return IPPacket(src, dst, 17, append(u, payload...))
}

// GRE is a GRE header (flags: 0x8000 checksum, 0x2000 key, 0x1000
// sequence; the optional words are zero) and its payload.
func GRE(flags, proto uint16, payload []byte) []byte {
	g := binary.BigEndian.AppendUint16(nil, flags)
	g = binary.BigEndian.AppendUint16(g, proto)
	for _, bit := range []uint16{0x8000, 0x2000, 0x1000} {
		if flags&bit != 0 {
			g = append(g, 0, 0, 0, 1)
		}
	}
	return append(g, payload...)
}

// ERSPAN2 is an ERSPAN type II header before a mirrored Ethernet frame
// (carry it in GRE with the sequence bit, protocol 0x88be).
func ERSPAN2(frame []byte) []byte {
	return append([]byte{0x10, 0x01, 0x00, 0x07, 0, 0, 0, 0}, frame...)
}

// ERSPAN3 is an ERSPAN type III header (with the 8-byte platform
// subheader when platform is set) before a mirrored Ethernet frame
// (GRE protocol 0x22eb).
func ERSPAN3(frame []byte, platform bool) []byte {
	h := []byte{0x20, 0x01, 0x00, 0x07, 1, 2, 3, 4, 0, 0, 0, 0}
	if platform {
		h[11] |= 1
		h = append(h, 0x08, 0, 0, 0, 0, 0, 0, 0)
	}
	return append(h, frame...)
}

// VXLAN is a VXLAN header (VNI 42) before an Ethernet frame (UDP 4789).
func VXLAN(frame []byte) []byte {
	return append([]byte{0x08, 0, 0, 0, 0, 0, 42, 0}, frame...)
}

// GENEVE is a GENEVE header with optWords 4-byte option words (zero)
// before payload of protocol proto (UDP 6081).
func GENEVE(proto uint16, optWords int, payload []byte) []byte {
	h := []byte{byte(optWords & 0x3f), 0, byte(proto >> 8), byte(proto), 0, 0, 42, 0}
	h = append(h, make([]byte, 4*optWords)...)
	return append(h, payload...)
}

// GTPU is a GTPv1-U G-PDU carrying an IP packet; ext adds the sequence
// number word and one PDU-session extension header (UDP 2152).
func GTPU(ip []byte, ext bool) []byte {
	h := []byte{0x30, 0xff, 0, 0, 0, 0, 0, 7}
	if ext {
		h[0] |= 0x04 | 0x02
		h = append(h, 0, 1, 0, 0x85)       // sequence, N-PDU, next: PDU session container
		h = append(h, 1, 0x00, 0x09, 0x00) // length 1 (4 bytes), content, next 0
	}
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)-8+len(ip)))
	return append(h, ip...)
}

// EthernetType wraps payload in an Ethernet header of the given type.
func EthernetType(etype uint16, payload []byte) []byte {
	b := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}
	b = binary.BigEndian.AppendUint16(b, etype)
	return append(b, payload...)
}

// PPPoE is an Ethernet frame carrying ip in a PPPoE session.
func PPPoE(ip []byte) []byte {
	proto := uint16(0x0021)
	if ip[0]>>4 == 6 {
		proto = 0x0057
	}
	h := []byte{0x11, 0x00, 0x00, 0x01, 0, 0}
	binary.BigEndian.PutUint16(h[4:], uint16(2+len(ip)))
	h = binary.BigEndian.AppendUint16(h, proto)
	return EthernetType(0x8864, append(h, ip...))
}

// MPLS is an Ethernet frame carrying payload under the label stack
// (payload: an IP packet, or a control word and an Ethernet frame).
func MPLS(labels []uint32, payload []byte) []byte {
	var h []byte
	for i, l := range labels {
		w := l<<12 | 64
		if i == len(labels)-1 {
			w |= 1 << 8
		}
		h = binary.BigEndian.AppendUint32(h, w)
	}
	return EthernetType(0x8847, append(h, payload...))
}

// Radiotap80211 is a radiotap header and an 802.11 QoS data frame (to
// the AP) carrying ip behind LLC/SNAP; protected sets the Protected
// Frame bit (the body is then not decodable).
func Radiotap80211(ip []byte, protected bool) []byte {
	rt := []byte{0, 0, 12, 0, 0x02, 0, 0, 0, 0x10, 0, 0, 0} // flags field present: FCS at end
	fc1 := byte(0x01)                                       // to DS
	if protected {
		fc1 |= 0x40
	}
	w := []byte{0x88, fc1, 0, 0}
	w = append(w, make([]byte, 18)...) // three addresses
	w = append(w, 0, 0)                // sequence control
	w = append(w, 0, 0)                // QoS control
	et := uint16(0x0800)
	if ip[0]>>4 == 6 {
		et = 0x86dd
	}
	w = append(w, 0xaa, 0xaa, 0x03, 0, 0, 0, byte(et>>8), byte(et))
	w = append(w, ip...)
	w = append(w, 0xde, 0xad, 0xbe, 0xef) // FCS
	return append(rt, w...)
}

// AH wraps payload in an IPsec Authentication Header (RFC 4302) with a
// 96-bit ICV; next is the payload's protocol number.
func AH(next uint8, spi uint32, payload []byte) []byte {
	h := make([]byte, 24, 24+len(payload))
	h[0], h[1] = next, 24/4-2
	binary.BigEndian.PutUint32(h[4:], spi)
	binary.BigEndian.PutUint32(h[8:], 1)
	return append(h, payload...)
}

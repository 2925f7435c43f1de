package dataplane

import (
	"encoding/binary"
	"net/netip"
)

// Synthesized handshake segments: what a Linux client's SYN (and the
// server's SYN-ACK) look like on the wire, with valid checksums, so that a
// program parsing them sees a real one.

const (
	clientPort = 40000
	synFlag    = 0x02
	synAckFlag = 0x12
)

// frame returns an Ethernet frame carrying a SYN from c to s (or, with
// synack, the SYN-ACK from s back to c). dstMAC is the receiving device's
// address when known.
func frame(c netip.Addr, s netip.AddrPort, synack bool, dstMAC []byte) []byte {
	src, dst := c, s.Addr()
	sport, dport := uint16(clientPort), s.Port()
	flags := byte(synFlag)
	if synack {
		src, dst, sport, dport, flags = dst, src, dport, sport, synAckFlag
	}
	tcp := tcpHeader(sport, dport, flags)
	be := binary.BigEndian
	eth := make([]byte, 14)
	copy(eth[0:6], dstMAC)
	copy(eth[6:12], []byte{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01})
	var ip []byte
	if src.Is4() {
		be.PutUint16(eth[12:], 0x0800)
		ip = make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, 6
		be.PutUint16(ip[2:], uint16(20+len(tcp)))
		be.PutUint16(ip[6:], 0x4000) // DF
		s4, d4 := src.As4(), dst.As4()
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		be.PutUint16(ip[10:], ^fold(sum(ip, 0)))
	} else {
		be.PutUint16(eth[12:], 0x86dd)
		ip = make([]byte, 40)
		ip[0], ip[6], ip[7] = 0x60, 6, 64
		be.PutUint16(ip[4:], uint16(len(tcp)))
		s16, d16 := src.As16(), dst.As16()
		copy(ip[8:], s16[:])
		copy(ip[24:], d16[:])
	}
	// TCP checksum over the pseudo-header.
	var ps uint32
	sb, db := src.AsSlice(), dst.AsSlice()
	ps = sum(sb, ps)
	ps = sum(db, ps)
	ps += 6 + uint32(len(tcp))
	be.PutUint16(tcp[16:], ^fold(sum(tcp, ps)))
	out := append(eth, ip...)
	return append(out, tcp...)
}

// tcpHeader is a 40-byte TCP header with the usual SYN options.
func tcpHeader(sport, dport uint16, flags byte) []byte {
	be := binary.BigEndian
	h := make([]byte, 40)
	be.PutUint16(h[0:], sport)
	be.PutUint16(h[2:], dport)
	be.PutUint32(h[4:], 0x5eed0001)
	if flags&0x10 != 0 {
		be.PutUint32(h[8:], 0x5eed0002)
	}
	h[12] = 10 << 4
	h[13] = flags
	be.PutUint16(h[14:], 64240)
	// MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
	copy(h[20:], []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7})
	return h
}

func sum(b []byte, acc uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	return acc
}

func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

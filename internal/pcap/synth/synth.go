// Package synth builds TCP/IP frames and classic pcap files for tests
// and the benchmark generator: Ethernet (optionally 802.1Q/QinQ tagged)
// carrying IPv4 or IPv6 and TCP with SYN options and correct checksums,
// and ICMP errors quoting a packet.
package synth

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"

	"github.com/synscope/synscope/internal/packet/checksum"
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// Seg describes one TCP segment.
type Seg struct {
	Src, Dst     netip.Addr
	Sport, Dport uint16
	Seq, Ack     uint32
	Flags        uint8
	Win          uint16
	Payload      int
	MSS          uint16 // 0: no option
	WScale       int8   // -1: no option
	SACKOK       bool
	TS           bool
	TSval, TSecr uint32
	IPID         uint16
	TTL          uint8
	VLAN         []uint16
	// BadTCPChecksum corrupts the TCP checksum.
	BadTCPChecksum bool
	// Opts, when set, are the TCP options verbatim (padded to 32 bits)
	// instead of those built from MSS, SACKOK, TS and WScale.
	Opts []byte
}

// IP returns the IP packet (no link header).
func (s *Seg) IP() []byte {
	var opts []byte
	if s.MSS != 0 {
		opts = append(opts, 2, 4, byte(s.MSS>>8), byte(s.MSS))
	}
	if s.SACKOK {
		opts = append(opts, 4, 2)
	}
	if s.TS {
		opts = append(opts, 8, 10)
		opts = binary.BigEndian.AppendUint32(opts, s.TSval)
		opts = binary.BigEndian.AppendUint32(opts, s.TSecr)
	}
	if s.WScale >= 0 && s.Flags&SYN != 0 {
		opts = append(opts, 1, 3, 3, byte(s.WScale))
	}
	if s.Opts != nil {
		opts = append([]byte(nil), s.Opts...)
	}
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	tcp := make([]byte, 20+len(opts)+s.Payload)
	binary.BigEndian.PutUint16(tcp[0:], s.Sport)
	binary.BigEndian.PutUint16(tcp[2:], s.Dport)
	binary.BigEndian.PutUint32(tcp[4:], s.Seq)
	binary.BigEndian.PutUint32(tcp[8:], s.Ack)
	tcp[12] = byte((20 + len(opts)) / 4 << 4)
	tcp[13] = s.Flags
	win := s.Win
	if win == 0 && s.Flags&RST == 0 {
		win = 64240
	}
	binary.BigEndian.PutUint16(tcp[14:], win)
	copy(tcp[20:], opts)
	for i := 20 + len(opts); i < len(tcp); i++ {
		tcp[i] = byte(i)
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = 64
	}
	var ip []byte
	var pseudo uint32
	if s.Src.Is4() {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		binary.BigEndian.PutUint16(ip[4:], s.IPID)
		ip[6] = 0x40
		ip[8] = ttl
		ip[9] = 6
		a, b := s.Src.As4(), s.Dst.As4()
		copy(ip[12:], a[:])
		copy(ip[16:], b[:])
		binary.BigEndian.PutUint16(ip[10:], ^checksum.Of(ip, 0))
		pseudo = checksum.Sum(ip[12:20], 0)
	} else {
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6] = 6
		ip[7] = ttl
		a, b := s.Src.As16(), s.Dst.As16()
		copy(ip[8:], a[:])
		copy(ip[24:], b[:])
		pseudo = checksum.Sum(ip[8:40], 0)
	}
	pseudo += 6 + uint32(len(tcp))
	ck := ^checksum.Of(tcp, pseudo)
	if s.BadTCPChecksum {
		ck ^= 0x5a5a
	}
	binary.BigEndian.PutUint16(tcp[16:], ck)
	return append(ip, tcp...)
}

// Ethernet wraps an IP packet in an Ethernet header with optional VLAN
// tags (outer first; more than one tag gives QinQ with 0x88a8 outside).
func Ethernet(ip []byte, vlans []uint16) []byte {
	b := make([]byte, 12, 14+4*len(vlans)+len(ip))
	copy(b, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1})
	for i, v := range vlans {
		tpid := uint16(0x8100)
		if i == 0 && len(vlans) > 1 {
			tpid = 0x88a8
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, v)
	}
	et := uint16(0x0800)
	if len(ip) > 0 && ip[0]>>4 == 6 {
		et = 0x86dd
	}
	b = binary.BigEndian.AppendUint16(b, et)
	return append(b, ip...)
}

// Frame is Ethernet(s.IP(), s.VLAN).
func (s *Seg) Frame() []byte { return Ethernet(s.IP(), s.VLAN) }

// ICMPUnreachable builds an ICMP (v4 type 3 / v6 type 1) error from
// router to the sender of quoted, quoting as much of it as Linux does
// (the error fits in 576 bytes for IPv4, 1280 for IPv6).
func ICMPUnreachable(router netip.Addr, quoted []byte, code uint8) []byte {
	return ICMPUnreachableQuoting(router, quoted, code, 0)
}

// ICMPUnreachableQuoting is ICMPUnreachable quoting at most n bytes of
// the packet (0: as much as Linux quotes); RFC 792 routers quote the IP
// header and 8 bytes.
func ICMPUnreachableQuoting(router netip.Addr, quoted []byte, code uint8, n int) []byte {
	if router.Is4() {
		if n == 0 {
			n = 576 - 28
		}
		q := quoted[:min(len(quoted), n)]
		icmp := make([]byte, 8+len(q))
		icmp[0], icmp[1] = 3, code
		copy(icmp[8:], q)
		binary.BigEndian.PutUint16(icmp[2:], ^checksum.Of(icmp, 0))
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(icmp)))
		ip[8], ip[9] = 64, 1
		a := router.As4()
		copy(ip[12:], a[:])
		copy(ip[16:], quoted[12:16])
		binary.BigEndian.PutUint16(ip[10:], ^checksum.Of(ip, 0))
		return append(ip, icmp...)
	}
	if n == 0 {
		n = 1280 - 48
	}
	q := quoted[:min(len(quoted), n)]
	icmp := make([]byte, 8+len(q))
	icmp[0], icmp[1] = 1, code
	copy(icmp[8:], q)
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(icmp)))
	ip[6], ip[7] = 58, 64
	a := router.As16()
	copy(ip[8:], a[:])
	copy(ip[24:], quoted[8:24])
	ps := checksum.Sum(ip[8:40], 0) + 58 + uint32(len(icmp))
	binary.BigEndian.PutUint16(icmp[2:], ^checksum.Of(icmp, ps))
	return append(ip, icmp...)
}

// PcapWriter writes classic pcap.
type PcapWriter struct {
	w    *bufio.Writer
	bo   binary.ByteOrder
	nano bool
	hdr  [16]byte
}

// NewPcapWriter writes the file header for the given link type.
func NewPcapWriter(w io.Writer, link uint32, bo binary.ByteOrder, nano bool) (*PcapWriter, error) {
	pw := &PcapWriter{w: bufio.NewWriterSize(w, 1<<20), bo: bo, nano: nano}
	h := make([]byte, 24)
	magic := uint32(0xa1b2c3d4)
	if nano {
		magic = 0xa1b23c4d
	}
	bo.PutUint32(h[0:], magic)
	bo.PutUint16(h[4:], 2)
	bo.PutUint16(h[6:], 4)
	bo.PutUint32(h[16:], 262144)
	bo.PutUint32(h[20:], link)
	if _, err := pw.w.Write(h); err != nil {
		return nil, fmt.Errorf("write pcap header: %w", err)
	}
	return pw, nil
}

// Write appends a frame captured at ts (ns since the epoch).
func (p *PcapWriter) Write(ts int64, frame []byte) error {
	p.bo.PutUint32(p.hdr[0:], uint32(ts/1e9))
	frac := ts % 1e9
	if !p.nano {
		frac /= 1e3
	}
	p.bo.PutUint32(p.hdr[4:], uint32(frac))
	p.bo.PutUint32(p.hdr[8:], uint32(len(frame)))
	p.bo.PutUint32(p.hdr[12:], uint32(len(frame)))
	if _, err := p.w.Write(p.hdr[:]); err != nil {
		return fmt.Errorf("write pcap record: %w", err)
	}
	if _, err := p.w.Write(frame); err != nil {
		return fmt.Errorf("write pcap record: %w", err)
	}
	return nil
}

// Flush flushes buffered output.
func (p *PcapWriter) Flush() error {
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("flush pcap: %w", err)
	}
	return nil
}

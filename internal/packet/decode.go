// Package packet is synscope's one frame decoder, used by pcap (recorded
// captures, DLT link types) and by capture (live AF_PACKET frames, whose
// ARPHRD link types LinkFromARPHRD maps onto the same set). It turns frames into the few header fields the
// handshake analysis needs (addresses, ports, sequence numbers, flags,
// SYN options, ICMP errors) without allocating. It understands Ethernet,
// 802.1Q/802.1ad (QinQ) tags, Linux cooked v1/v2, BSD null/loop, PPP, raw
// IP, IPv4 and IPv6 with extension headers, 802.11 data frames (bare or
// with radiotap, LLC/SNAP), and the encapsulations mirrored traffic comes
// in: GRE (with ERSPAN I/II/III and transparent Ethernet bridging), VXLAN
// (and VXLAN-GPE), GENEVE, GTP-U, IP-in-IP (4in4, 6in4, 4in6, 6in6), PPPoE
// and MPLS (with a pseudowire control word). The innermost TCP segment is
// what a Packet describes; Packet.Encaps says which encapsulations it came
// through. Every offset is bounds-checked: malformed input yields an error
// value, never a panic.
package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/synscope/synscope/internal/packet/checksum"
)

// TCP flag bits.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
	URG = 0x20
)

// Kind says what a decoded packet is.
type Kind uint8

// Packet kinds.
const (
	KindOther Kind = iota
	KindTCP
	KindICMPError // ICMP/ICMPv6 error quoting a TCP header
)

// Errors for packets we cannot use (counted by Reason, never fatal).
var (
	ErrShort     = errors.New("frame too short")
	ErrLink      = errors.New("unsupported link type")
	ErrFragment  = errors.New("non-first IP fragment")
	ErrEncrypted = errors.New("encrypted 802.11 frame")
	ErrEncap     = errors.New("unsupported encapsulation")
	ErrDepth     = errors.New("encapsulations nested too deep")
	ErrESP       = errors.New("IPsec ESP (encrypted)")
	ErrIPComp    = errors.New("IPComp (compressed)")
)

// Reasons an undecodable frame is counted under, indexed by ReasonIndex.
var Reasons = [...]string{"truncated", "unsupported-link-type", "ip-fragment", "encrypted-802.11", "unsupported-encapsulation", "nested-too-deep", "ipsec-esp-encrypted", "ipcomp-compressed", "other"}

// ReasonIndex maps a Decode error onto an index of Reasons.
func ReasonIndex(err error) int {
	for i, e := range [...]error{ErrShort, ErrLink, ErrFragment, ErrEncrypted, ErrEncap, ErrDepth, ErrESP, ErrIPComp} {
		if errors.Is(err, e) {
			return i
		}
	}
	return len(Reasons) - 1
}

// Encap is one kind of encapsulation a segment can arrive in.
type Encap uint8

// Encapsulations, as bits of Packet.Encaps.
const (
	EncapGRE Encap = iota
	EncapERSPAN
	EncapVXLAN
	EncapGENEVE
	EncapGTPU
	EncapIPinIP
	EncapPPPoE
	EncapMPLS
	Encap80211
	EncapAH // IPsec Authentication Header (the payload stays readable)
	NumEncaps
)

// EncapNames names each Encap (the report's keys).
var EncapNames = [NumEncaps]string{"gre", "erspan", "vxlan", "geneve", "gtp-u", "ip-in-ip", "pppoe", "mpls", "802.11", "ipsec-ah"}

// maxDepth bounds nested encapsulations (a crafted frame could nest
// tunnels without end).
const maxDepth = 8

// Tunnel ports recognised on UDP.
const (
	portVXLAN      = 4789
	portVXLANLinux = 8472 // the Linux kernel's historical default
	portVXLANGPE   = 4790
	portGENEVE     = 6081
	portGTPU       = 2152
)

// Addr is an IP address in 16 bytes; IPv4 uses the first four.
type Addr [16]byte

// Options are the TCP options of interest (from any segment, used on SYNs).
type Options struct {
	MSS    uint16
	WScale int8 // -1 when absent
	SACKOK bool
	HasTS  bool
	TSval  uint32
	TSecr  uint32
	// Layout packs the option kinds in order (up to 8, 4 bits each,
	// kinds above 15 folded to 15): a cheap OS fingerprint.
	Layout uint32
}

// Packet is the decoded view of one frame.
type Packet struct {
	Kind     Kind
	V6       bool
	Src, Dst Addr
	IPID     uint16
	TTL      uint8
	// IPChecksumBad: IPv4 header checksum wrong (only when verified).
	IPChecksumBad bool
	SrcPort       uint16
	DstPort       uint16
	Seq, Ack      uint32
	Flags         uint8
	Window        uint16
	// PayloadLen is the TCP payload length according to the IP header.
	PayloadLen int
	// Truncated: fewer bytes captured than the IP header announces.
	Truncated bool
	// TCPChecksumBad: TCP checksum wrong (only when verified and the
	// segment was captured whole).
	TCPChecksumBad bool
	Opt            Options
	// For KindICMPError: type/code and the quoted packet's addresses,
	// ports and sequence number (the quoted packet went Src->Dst of the
	// inner fields, i.e. it was sent by the ICMP packet's destination).
	ICMPType, ICMPCode uint8
	InnerSrc, InnerDst Addr
	InnerSport         uint16
	InnerDport         uint16
	InnerSeq           uint32
	// InnerFlags are the quoted segment's flags when the error quotes at
	// least 14 bytes of it (InnerHasFlags).
	InnerFlags    uint8
	InnerHasFlags bool
	// SrcMAC is the outer Ethernet source address when HasMAC (link types
	// with an Ethernet header only).
	SrcMAC [6]byte
	HasMAC bool
	// VLAN is the VLAN ID (12 bits, priority bits removed) of the outer
	// frame's first 802.1Q/802.1ad tag, 0 when the frame carries none.
	VLAN uint16
	// L3Off is the offset of the (innermost) IP header in the frame.
	L3Off int
	// Encaps has bit 1<<Encap set for each encapsulation the packet
	// came through.
	Encaps uint16
	depth  int
}

// IP returns an address as netip.Addr.
func (a Addr) IP(v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16(a)
	}
	return netip.AddrFrom4([4]byte{a[0], a[1], a[2], a[3]})
}

// Decoder holds decode settings.
type Decoder struct {
	// VerifyChecksums checks the IPv4 header and TCP checksums, as Zeek
	// does without -C. Captures taken on an endpoint usually carry
	// offloaded (wrong) checksums on outgoing packets, so it is off by
	// default.
	VerifyChecksums bool
}

// Decode fills p from a frame of the given link type.
func (d *Decoder) Decode(link uint16, data []byte, p *Packet) error {
	*p = Packet{}
	off, etype, err := l2(link, data, p)
	if err != nil || etype == 0 {
		return err
	}
	return d.ether(data, off, etype, p)
}

// enter records one more encapsulation level.
func (p *Packet) enter(e Encap) error {
	p.Encaps |= 1 << e
	p.depth++
	if p.depth > maxDepth {
		return ErrDepth
	}
	return nil
}

// ether decodes what follows an EtherType at data[off:].
func (d *Decoder) ether(data []byte, off int, etype uint16, p *Packet) error {
	tagged := false
	for {
		switch etype {
		case 0x8100, 0x88a8, 0x9100:
			if len(data) < off+4 {
				return ErrShort
			}
			if p.depth == 0 && !tagged {
				p.VLAN = binary.BigEndian.Uint16(data[off:]) & 0x0fff
				tagged = true
			}
			etype = binary.BigEndian.Uint16(data[off+2:])
			off += 4
			continue
		case 0x0800:
			return d.ipv4(data, off, p)
		case 0x86dd:
			return d.ipv6(data, off, p)
		case 0x8864: // PPPoE session: 6-byte header, then the PPP protocol
			if err := p.enter(EncapPPPoE); err != nil {
				return err
			}
			if len(data) < off+8 {
				return ErrShort
			}
			etype = pppProto(binary.BigEndian.Uint16(data[off+6:]))
			off += 8
			if etype == 0 {
				return nil
			}
			continue
		case 0x8847, 0x8848:
			return d.mpls(data, off, p)
		}
		return nil // not IP: KindOther
	}
}

// pppProto maps a PPP protocol number to an EtherType (0: not IP).
func pppProto(proto uint16) uint16 {
	switch proto {
	case 0x0021:
		return 0x0800
	case 0x0057:
		return 0x86dd
	}
	return 0
}

// mpls skips a label stack; below it comes IPv4, IPv6, or a pseudowire
// control word and an Ethernet frame.
func (d *Decoder) mpls(data []byte, off int, p *Packet) error {
	if err := p.enter(EncapMPLS); err != nil {
		return err
	}
	for i := 0; ; i++ {
		if len(data) < off+4 || i > 16 {
			return ErrShort
		}
		bottom := data[off+2]&1 != 0
		off += 4
		if bottom {
			break
		}
	}
	if len(data) < off+1 {
		return ErrShort
	}
	switch data[off] >> 4 {
	case 4:
		return d.ipv4(data, off, p)
	case 6:
		return d.ipv6(data, off, p)
	case 0: // pseudowire control word, then Ethernet
		if len(data) < off+4+14 {
			return ErrShort
		}
		return d.ether(data, off+4+14, binary.BigEndian.Uint16(data[off+4+12:]), p)
	}
	return ErrEncap
}

// l2 returns the offset and EtherType of the network layer (EtherType 0
// with no error: a frame with nothing to decode, e.g. 802.11 management).
func l2(link uint16, data []byte, p *Packet) (int, uint16, error) {
	switch link {
	case LinkEthernet:
		if len(data) < 14 {
			return 0, 0, ErrShort
		}
		copy(p.SrcMAC[:], data[6:12])
		p.HasMAC = true
		return 14, binary.BigEndian.Uint16(data[12:]), nil
	case LinkSLL:
		if len(data) < 16 {
			return 0, 0, ErrShort
		}
		return 16, binary.BigEndian.Uint16(data[14:]), nil
	case LinkSLL2:
		if len(data) < 20 {
			return 0, 0, ErrShort
		}
		return 20, binary.BigEndian.Uint16(data[0:]), nil
	case LinkRaw:
		if len(data) < 1 {
			return 0, 0, ErrShort
		}
		if data[0]>>4 == 6 {
			return 0, 0x86dd, nil
		}
		return 0, 0x0800, nil
	case LinkIPv4:
		return 0, 0x0800, nil
	case LinkIPv6:
		return 0, 0x86dd, nil
	case LinkNull, LinkLoop:
		if len(data) < 4 {
			return 0, 0, ErrShort
		}
		// The family is in host (null) or network (loop) byte order;
		// checking the IP version nibble is simpler and always right.
		if len(data) > 4 && data[4]>>4 == 6 {
			return 4, 0x86dd, nil
		}
		return 4, 0x0800, nil
	case LinkPPP, LinkPPPHDLC:
		off := 0
		if len(data) >= 2 && data[0] == 0xff && data[1] == 0x03 {
			off = 2
		}
		if len(data) < off+2 {
			return 0, 0, ErrShort
		}
		return off + 2, pppProto(binary.BigEndian.Uint16(data[off:])), nil
	case LinkRadiotap:
		if len(data) < 8 {
			return 0, 0, ErrShort
		}
		n := int(binary.LittleEndian.Uint16(data[2:]))
		if n < 8 || len(data) < n {
			return 0, 0, ErrShort
		}
		// A trailing FCS needs no stripping: IP lengths bound the payload.
		off, et, err := wlan(data[n:], p)
		return off + n, et, err
	case Link80211:
		return wlan(data, p)
	}
	return 0, 0, ErrLink
}

// wlan parses an 802.11 frame up to the EtherType of its LLC/SNAP
// header. Management, control and null-data frames carry nothing to
// decode (EtherType 0); a protected data frame is ErrEncrypted.
func wlan(f []byte, p *Packet) (int, uint16, error) {
	if len(f) < 24 {
		return 0, 0, ErrShort
	}
	fc0, fc1 := f[0], f[1]
	if (fc0>>2)&3 != 2 || fc0&0x40 != 0 { // not data, or no data (null)
		return 0, 0, nil
	}
	if err := p.enter(Encap80211); err != nil {
		return 0, 0, err
	}
	off := 24
	if fc1&3 == 3 { // to and from DS: a fourth address
		off += 6
	}
	if fc0&0x80 != 0 { // QoS
		off += 2
		if fc1&0x80 != 0 { // +HTC
			off += 4
		}
	}
	if fc1&0x40 != 0 {
		return 0, 0, ErrEncrypted
	}
	if len(f) < off+8 {
		return 0, 0, ErrShort
	}
	if f[off] != 0xaa || f[off+1] != 0xaa || f[off+2] != 0x03 {
		return 0, 0, nil // not LLC/SNAP: not IP
	}
	return off + 8, binary.BigEndian.Uint16(f[off+6:]), nil
}

func (d *Decoder) ipv4(data []byte, off int, p *Packet) error {
	if len(data) < off+20 {
		return ErrShort
	}
	h := data[off:]
	ihl := int(h[0]&0x0f) * 4
	if h[0]>>4 != 4 || ihl < 20 || len(h) < ihl {
		return ErrShort
	}
	total := int(binary.BigEndian.Uint16(h[2:]))
	if total < ihl {
		// TSO captures show total length 0; trust the capture then.
		if total != 0 {
			return ErrShort
		}
		total = len(h)
	}
	p.L3Off = off
	p.V6 = false
	p.Src, p.Dst = Addr{}, Addr{}
	p.IPID = binary.BigEndian.Uint16(h[4:])
	p.TTL = h[8]
	copy(p.Src[:4], h[12:16])
	copy(p.Dst[:4], h[16:20])
	if d.VerifyChecksums && checksum.Of(h[:ihl], 0) != 0xffff {
		p.IPChecksumBad = true
	}
	frag := binary.BigEndian.Uint16(h[6:])
	if frag&0x1fff != 0 {
		return ErrFragment
	}
	end := min(total, len(h))
	return d.l4(h[:end], ihl, total-ihl, h[9], p, false)
}

func (d *Decoder) ipv6(data []byte, off int, p *Packet) error {
	if len(data) < off+40 {
		return ErrShort
	}
	h := data[off:]
	if h[0]>>4 != 6 {
		return ErrShort
	}
	p.V6 = true
	p.L3Off = off
	p.IPID = 0
	p.TTL = h[7]
	copy(p.Src[:], h[8:24])
	copy(p.Dst[:], h[24:40])
	plen := int(binary.BigEndian.Uint16(h[4:]))
	if plen == 0 {
		plen = len(h) - 40 // jumbogram or TSO: trust the capture
	}
	next := h[6]
	pos := 40
	for range 8 {
		switch next {
		case 0, 43, 60, 135: // hop-by-hop, routing, destination, mobility
			if len(h) < pos+2 {
				return ErrShort
			}
			next = h[pos]
			pos += (int(h[pos+1]) + 1) * 8
		case 44: // fragment
			if len(h) < pos+8 {
				return ErrShort
			}
			if binary.BigEndian.Uint16(h[pos+2:])&0xfff8 != 0 {
				return ErrFragment
			}
			next = h[pos]
			pos += 8
		case 51: // AH: its length field counts 32-bit words, minus 2
			if err := p.enter(EncapAH); err != nil {
				return err
			}
			if len(h) < pos+2 {
				return ErrShort
			}
			next = h[pos]
			pos += (int(h[pos+1]) + 2) * 4
		default:
			end := min(40+plen, len(h))
			if pos > end {
				return ErrShort
			}
			return d.l4(h[:end], pos, 40+plen-pos, next, p, true)
		}
	}
	return nil
}

// l4 decodes the transport header at ip[off:]; l4len is the transport
// length the IP header announces.
func (d *Decoder) l4(ip []byte, off, l4len int, proto uint8, p *Packet, v6 bool) error {
	// IPsec AH (RFC 4302) authenticates but does not hide its payload:
	// skip it (its length field counts 32-bit words, minus 2). Each one
	// takes at least 8 bytes and counts as a level (maxDepth), so the
	// loop is bounded.
	for proto == 51 {
		if err := p.enter(EncapAH); err != nil {
			return err
		}
		if len(ip) < off+2 {
			return ErrShort
		}
		n := (int(ip[off+1]) + 2) * 4
		proto = ip[off]
		off += n
		l4len -= n
		if len(ip) < off || l4len < 0 {
			return ErrShort
		}
	}
	switch proto {
	case 50:
		return ErrESP
	case 108:
		return ErrIPComp
	case 6:
		return d.tcp(ip, off, l4len, p, v6)
	case 4, 41: // IPv4 / IPv6 in IP
		if err := p.enter(EncapIPinIP); err != nil {
			return err
		}
		if proto == 4 {
			return d.ipv4(ip, off, p)
		}
		return d.ipv6(ip, off, p)
	case 47:
		return d.gre(ip, off, p)
	case 17:
		return d.udp(ip, off, p)
	case 1:
		if !v6 {
			return icmpErr(ip[off:], p, false)
		}
	case 58:
		if v6 {
			return icmpErr(ip[off:], p, true)
		}
	}
	return nil
}

// gre decodes GRE (RFC 2784/2890) carrying IP, Ethernet (transparent
// bridging), ERSPAN type I/II/III or MPLS.
func (d *Decoder) gre(ip []byte, off int, p *Packet) error {
	if err := p.enter(EncapGRE); err != nil {
		return err
	}
	g := ip[off:]
	if len(g) < 4 {
		return ErrShort
	}
	flags, proto := binary.BigEndian.Uint16(g), binary.BigEndian.Uint16(g[2:])
	if flags&7 != 0 {
		return ErrEncap // version 1 (PPTP) and others
	}
	n := 4
	for _, bit := range [...]uint16{0x8000, 0x2000, 0x1000} { // checksum, key, sequence
		if flags&bit != 0 {
			n += 4
		}
	}
	if len(g) < n {
		return ErrShort
	}
	switch proto {
	case 0x0800, 0x86dd:
		return d.ether(g, n, proto, p)
	case 0x6558:
		return d.ethernetAt(g, n, p)
	case 0x8847, 0x8848:
		return d.mpls(g, n, p)
	case 0x88be: // ERSPAN type II (8-byte header), type I without a sequence number
		if err := p.enter(EncapERSPAN); err != nil {
			return err
		}
		if flags&0x1000 != 0 {
			n += 8
		}
		return d.ethernetAt(g, n, p)
	case 0x22eb: // ERSPAN type III: 12 bytes, 8 more with the platform subheader
		if err := p.enter(EncapERSPAN); err != nil {
			return err
		}
		if len(g) < n+12 {
			return ErrShort
		}
		if g[n+11]&1 != 0 {
			n += 8
		}
		return d.ethernetAt(g, n+12, p)
	}
	return ErrEncap
}

// ethernetAt decodes an Ethernet frame that starts at b[off:].
func (d *Decoder) ethernetAt(b []byte, off int, p *Packet) error {
	if len(b) < off+14 {
		return ErrShort
	}
	return d.ether(b, off+14, binary.BigEndian.Uint16(b[off+12:]), p)
}

// udp decodes the UDP tunnels: VXLAN, VXLAN-GPE, GENEVE, GTP-U. Other
// UDP is not for us.
func (d *Decoder) udp(ip []byte, off int, p *Packet) error {
	u := ip[off:]
	if len(u) < 8 {
		return ErrShort
	}
	sport, dport := binary.BigEndian.Uint16(u), binary.BigEndian.Uint16(u[2:])
	b := u[8:]
	switch {
	case dport == portVXLAN || dport == portVXLANLinux:
		if len(b) < 8 || b[0]&0x08 == 0 {
			return nil
		}
		if err := p.enter(EncapVXLAN); err != nil {
			return err
		}
		return d.ethernetAt(b, 8, p)
	case dport == portVXLANGPE:
		if len(b) < 8 {
			return nil
		}
		if err := p.enter(EncapVXLAN); err != nil {
			return err
		}
		switch b[3] {
		case 1:
			return d.ipv4(b, 8, p)
		case 2:
			return d.ipv6(b, 8, p)
		case 3:
			return d.ethernetAt(b, 8, p)
		}
		return ErrEncap
	case dport == portGENEVE:
		if len(b) < 8 || b[0]>>6 != 0 {
			return nil
		}
		if err := p.enter(EncapGENEVE); err != nil {
			return err
		}
		n := 8 + int(b[0]&0x3f)*4
		if len(b) < n {
			return ErrShort
		}
		switch proto := binary.BigEndian.Uint16(b[2:]); proto {
		case 0x6558:
			return d.ethernetAt(b, n, p)
		case 0x0800, 0x86dd:
			return d.ether(b, n, proto, p)
		}
		return ErrEncap
	case dport == portGTPU || sport == portGTPU:
		return d.gtpu(b, p)
	}
	return nil
}

// gtpu decodes a GTPv1-U G-PDU (user data); signalling messages carry
// no user packet.
func (d *Decoder) gtpu(b []byte, p *Packet) error {
	if len(b) < 8 || b[0]>>5 != 1 || b[0]&0x10 == 0 || b[1] != 0xff {
		return nil
	}
	if err := p.enter(EncapGTPU); err != nil {
		return err
	}
	n := 8
	if b[0]&0x07 != 0 { // sequence number, N-PDU number or extension header present
		n += 4
		if len(b) < n {
			return ErrShort
		}
		next := b[n-1]
		if b[0]&0x04 == 0 {
			next = 0
		}
		for i := 0; next != 0; i++ {
			if len(b) < n+1 || i > 16 {
				return ErrShort
			}
			l := int(b[n]) * 4
			if l == 0 || len(b) < n+l {
				return ErrShort
			}
			next = b[n+l-1]
			n += l
		}
	}
	if len(b) < n+1 {
		return ErrShort
	}
	switch b[n] >> 4 {
	case 4:
		return d.ipv4(b, n, p)
	case 6:
		return d.ipv6(b, n, p)
	}
	return ErrEncap
}

func (d *Decoder) tcp(ip []byte, off, l4len int, p *Packet, v6 bool) error {
	t := ip[off:]
	if len(t) < 20 {
		return ErrShort
	}
	hl := int(t[12]>>4) * 4
	if hl < 20 || len(t) < hl || l4len < hl {
		return ErrShort
	}
	p.Kind = KindTCP
	p.SrcPort = binary.BigEndian.Uint16(t[0:])
	p.DstPort = binary.BigEndian.Uint16(t[2:])
	p.Seq = binary.BigEndian.Uint32(t[4:])
	p.Ack = binary.BigEndian.Uint32(t[8:])
	p.Flags = t[13]
	p.Window = binary.BigEndian.Uint16(t[14:])
	p.PayloadLen = l4len - hl
	p.Truncated = len(t) < l4len
	parseOptions(t[20:hl], &p.Opt)
	if d.VerifyChecksums && !p.Truncated {
		var sum uint32
		if v6 {
			sum = checksum.Sum(ip[8:40], 0)
		} else {
			sum = checksum.Sum(ip[12:20], 0)
		}
		sum += 6 + uint32(l4len)
		if checksum.Of(t[:l4len], sum) != 0xffff {
			p.TCPChecksumBad = true
		}
	}
	return nil
}

func parseOptions(o []byte, opt *Options) {
	opt.WScale = -1
	n := 0
	for len(o) > 0 {
		kind := o[0]
		if kind == 0 {
			break
		}
		if n < 8 {
			k := uint32(min(kind, 15))
			opt.Layout |= k << (4 * n)
			n++
		}
		if kind == 1 {
			o = o[1:]
			continue
		}
		if len(o) < 2 || o[1] < 2 || int(o[1]) > len(o) {
			break
		}
		l := int(o[1])
		switch {
		case kind == 2 && l == 4:
			opt.MSS = binary.BigEndian.Uint16(o[2:])
		case kind == 3 && l == 3:
			opt.WScale = int8(min(o[2], 14))
		case kind == 4:
			opt.SACKOK = true
		case kind == 8 && l == 10:
			opt.HasTS = true
			opt.TSval = binary.BigEndian.Uint32(o[2:])
			opt.TSecr = binary.BigEndian.Uint32(o[6:])
		}
		o = o[l:]
	}
}

// icmpErr decodes destination-unreachable style errors that quote a TCP
// header (at least 8 bytes of it: ports and sequence number).
func icmpErr(b []byte, p *Packet, v6 bool) error {
	if len(b) < 8 {
		return ErrShort
	}
	typ, code := b[0], b[1]
	isErr := false
	if v6 {
		isErr = typ == 1 || typ == 3 // unreachable, time exceeded
	} else {
		isErr = typ == 3 || typ == 11
	}
	if !isErr {
		return nil
	}
	q := b[8:]
	var proto uint8
	var tcp []byte
	var is6 bool
	if len(q) >= 20 && q[0]>>4 == 4 {
		ihl := int(q[0]&0x0f) * 4
		if ihl < 20 || len(q) < ihl+8 {
			return nil
		}
		proto = q[9]
		copy(p.InnerSrc[:4], q[12:16])
		copy(p.InnerDst[:4], q[16:20])
		tcp = q[ihl:]
	} else if len(q) >= 48 && q[0]>>4 == 6 {
		proto = q[6]
		copy(p.InnerSrc[:], q[8:24])
		copy(p.InnerDst[:], q[24:40])
		tcp = q[40:]
		is6 = true
	} else {
		return nil
	}
	if proto != 6 || is6 != v6 {
		return nil
	}
	p.Kind = KindICMPError
	p.ICMPType, p.ICMPCode = typ, code
	p.InnerSport = binary.BigEndian.Uint16(tcp[0:])
	p.InnerDport = binary.BigEndian.Uint16(tcp[2:])
	p.InnerSeq = binary.BigEndian.Uint32(tcp[4:])
	if len(tcp) >= 14 {
		p.InnerFlags, p.InnerHasFlags = tcp[13], true
	}
	return nil
}

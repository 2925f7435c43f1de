// Package decode turns captured frames into the few header fields the
// handshake analysis needs (addresses, ports, sequence numbers, flags,
// SYN options, ICMP errors) without allocating. It understands Ethernet,
// 802.1Q/802.1ad (QinQ) tags, Linux cooked v1/v2, BSD null/loop, raw IP,
// IPv4 and IPv6 with extension headers. Every offset is bounds-checked:
// malformed input yields an error value, never a panic.
package decode

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/synscope/synscope/internal/pcap/capfile"
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

// Errors for packets we cannot use (counted, never fatal).
var (
	ErrShort    = errors.New("frame too short")
	ErrLink     = errors.New("unsupported link type")
	ErrFragment = errors.New("non-first IP fragment")
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
	// L3Off is the offset of the IP header in the frame (for rewriting).
	L3Off int
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
	off, etype, err := l2(link, data)
	if err != nil {
		return err
	}
	for {
		switch etype {
		case 0x8100, 0x88a8, 0x9100:
			if len(data) < off+4 {
				return ErrShort
			}
			etype = binary.BigEndian.Uint16(data[off+2:])
			off += 4
			continue
		case 0x0800:
			return d.ipv4(data, off, p)
		case 0x86dd:
			return d.ipv6(data, off, p)
		}
		return nil // not IP: KindOther
	}
}

func l2(link uint16, data []byte) (int, uint16, error) {
	switch link {
	case capfile.LinkEthernet:
		if len(data) < 14 {
			return 0, 0, ErrShort
		}
		return 14, binary.BigEndian.Uint16(data[12:]), nil
	case capfile.LinkSLL:
		if len(data) < 16 {
			return 0, 0, ErrShort
		}
		return 16, binary.BigEndian.Uint16(data[14:]), nil
	case capfile.LinkSLL2:
		if len(data) < 20 {
			return 0, 0, ErrShort
		}
		return 20, binary.BigEndian.Uint16(data[0:]), nil
	case capfile.LinkRaw:
		if len(data) < 1 {
			return 0, 0, ErrShort
		}
		if data[0]>>4 == 6 {
			return 0, 0x86dd, nil
		}
		return 0, 0x0800, nil
	case capfile.LinkIPv4:
		return 0, 0x0800, nil
	case capfile.LinkIPv6:
		return 0, 0x86dd, nil
	case capfile.LinkNull, capfile.LinkLoop:
		if len(data) < 4 {
			return 0, 0, ErrShort
		}
		// The family is in host (null) or network (loop) byte order;
		// checking the IP version nibble is simpler and always right.
		if len(data) > 4 && data[4]>>4 == 6 {
			return 4, 0x86dd, nil
		}
		return 4, 0x0800, nil
	}
	return 0, 0, ErrLink
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
	p.IPID = binary.BigEndian.Uint16(h[4:])
	p.TTL = h[8]
	copy(p.Src[:4], h[12:16])
	copy(p.Dst[:4], h[16:20])
	if d.VerifyChecksums && checksum(h[:ihl], 0) != 0xffff {
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
		case 51: // AH
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
	switch proto {
	case 6:
		return d.tcp(ip, off, l4len, p, v6)
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
			sum = sumBytes(ip[8:40], 0)
		} else {
			sum = sumBytes(ip[12:20], 0)
		}
		sum += 6 + uint32(l4len)
		if checksum(t[:l4len], sum) != 0xffff {
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
	return nil
}

func sumBytes(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// checksum returns the folded ones' complement sum of b plus initial.
func checksum(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v >> 32
		sum += v & 0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

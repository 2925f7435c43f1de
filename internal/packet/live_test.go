package packet

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"

	pt "github.com/synscope/synscope/internal/packet/packettest"
)

// decodeLive decodes a frame the way live capture does: device type first.
func decodeLive(t testing.TB, hatype uint16, frame []byte) (Packet, error) {
	t.Helper()
	var p Packet
	link, ok := LinkFromARPHRD(hatype)
	if !ok {
		return p, ErrLink
	}
	var d Decoder
	return p, d.Decode(link, frame, &p)
}

func addrPorts(p *Packet) (netip.AddrPort, netip.AddrPort) {
	return netip.AddrPortFrom(p.Src.IP(p.V6), p.SrcPort), netip.AddrPortFrom(p.Dst.IP(p.V6), p.DstPort)
}

func TestLinkFromARPHRD(t *testing.T) {
	cases := []struct {
		hatype uint16
		link   uint16
		ok     bool
	}{
		{ARPHRDEther, LinkEthernet, true},
		{ARPHRDLoopback, LinkEthernet, true},
		{ARPHRDNone, LinkRaw, true},
		{ARPHRDRawIP, LinkRaw, true},
		{ARPHRDTunnel, LinkRaw, true},
		{ARPHRDTunnel6, LinkRaw, true},
		{24, 0, false},  // ARPHRD_IEEE1394
		{778, 0, false}, // ARPHRD_IPGRE: a GRE header, not IP
		{32, 0, false},  // ARPHRD_INFINIBAND
	}
	for _, c := range cases {
		if l, ok := LinkFromARPHRD(c.hatype); l != c.link || ok != c.ok {
			t.Errorf("LinkFromARPHRD(%d) = %d %v, want %d %v", c.hatype, l, ok, c.link, c.ok)
		}
	}
}

// TestDecodeLiveFrames is live capture's table (frames as AF_PACKET
// delivers them, crafted by gopacket).
func TestDecodeLiveFrames(t *testing.T) {
	cases := []struct {
		name   string
		spec   pt.Frame
		hatype uint16
		vlan   uint16
	}{
		{"v4 syn", pt.Frame{Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64, MSS: 1460}, ARPHRDEther, 0},
		{"v4 ip options", pt.Frame{Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 63, MSS: 1400, IPOpts: true}, ARPHRDEther, 0},
		{"v4 vlan", pt.Frame{Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64, MSS: 1460, VLAN: 42}, ARPHRDEther, 42},
		{"v4 vlan with priority bits", pt.Frame{Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64, MSS: 1460, VLAN: 42, PCP: 7}, ARPHRDEther, 42},
		{"v4 loopback synack", pt.Frame{Src: pt.V4S, Dst: pt.V4C, SYN: true, ACK: true, TTL: 64, MSS: 65495}, ARPHRDLoopback, 0},
		{"v4 rst no mss", pt.Frame{Src: pt.V4S, Dst: pt.V4C, RST: true, ACK: true, TTL: 64}, ARPHRDEther, 0},
		{"v6 syn", pt.Frame{V6: true, Src: pt.V6C, Dst: pt.V6S, SYN: true, TTL: 255, MSS: 1440}, ARPHRDEther, 0},
		{"v6 vlan", pt.Frame{V6: true, Src: pt.V6C, Dst: pt.V6S, SYN: true, TTL: 64, MSS: 1440, VLAN: 4094, PCP: 5}, ARPHRDEther, 4094},
		{"v4 raw ip (tun)", pt.Frame{Raw: true, Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64, MSS: 1360}, ARPHRDNone, 0},
		{"v6 raw ip", pt.Frame{Raw: true, V6: true, Src: pt.V6C, Dst: pt.V6S, SYN: true, TTL: 64, MSS: 1360}, ARPHRDRawIP, 0},
		{"v4 ipip device", pt.Frame{Raw: true, Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 9, MSS: 1380}, ARPHRDTunnel, 0},
		{"v6 ip6tnl device", pt.Frame{Raw: true, V6: true, Src: pt.V6C, Dst: pt.V6S, SYN: true, TTL: 9, MSS: 1380}, ARPHRDTunnel6, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			frame := pt.Craft(t, c.spec)
			p, err := decodeLive(t, c.hatype, frame)
			if err != nil || p.Kind != KindTCP {
				t.Fatalf("rejected %x: kind %d err %v", frame, p.Kind, err)
			}
			src, dst := addrPorts(&p)
			if src != c.spec.Src || dst != c.spec.Dst {
				t.Errorf("addresses %v → %v, want %v → %v", src, dst, c.spec.Src, c.spec.Dst)
			}
			if p.TTL != c.spec.TTL || p.Opt.MSS != c.spec.MSS || p.VLAN != c.vlan {
				t.Errorf("ttl %d mss %d vlan %d, want %d %d %d", p.TTL, p.Opt.MSS, p.VLAN, c.spec.TTL, c.spec.MSS, c.vlan)
			}
			want := uint8(0)
			for _, f := range []struct {
				on  bool
				bit uint8
			}{{c.spec.SYN, SYN}, {c.spec.ACK, ACK}, {c.spec.RST, RST}} {
				if f.on {
					want |= f.bit
				}
			}
			if p.Flags != want {
				t.Errorf("flags %#x, want %#x", p.Flags, want)
			}
			if c.spec.Raw {
				if p.HasMAC {
					t.Error("raw IP frame reported a MAC")
				}
			} else if !p.HasMAC || !bytes.Equal(p.SrcMAC[:], pt.MACClient) {
				t.Errorf("src MAC %x (has %v), want %v", p.SrcMAC, p.HasMAC, pt.MACClient)
			}
		})
	}
}

func TestDecodeLiveRejects(t *testing.T) {
	syn := pt.Craft(t, pt.Frame{Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64, MSS: 1460})
	frag := append([]byte(nil), syn...)
	frag[14+6], frag[14+7] = 0x00, 0x10 // fragment offset 16*8
	mismatch := append([]byte(nil), syn...)
	mismatch[12], mismatch[13] = 0x86, 0xdd // says IPv6, carries IPv4
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	cases := []struct {
		name   string
		hatype uint16
		frame  []byte
	}{
		{"udp", ARPHRDEther, pt.Craft(t, pt.Frame{Src: pt.V4C, Dst: pt.V4S, UDP: true, TTL: 64})},
		{"udp over ipv6", ARPHRDEther, pt.Craft(t, pt.Frame{V6: true, Src: pt.V6C, Dst: pt.V6S, UDP: true, TTL: 64})},
		{"unknown device type", 24, syn},
		{"ethernet frame on a raw-IP device", ARPHRDNone, syn},
		{"arp", ARPHRDEther, arp},
		{"non-first fragment", ARPHRDEther, frag},
		{"ethertype/version mismatch", ARPHRDEther, mismatch},
	}
	for _, c := range cases {
		if p, err := decodeLive(t, c.hatype, c.frame); err == nil && p.Kind == KindTCP {
			t.Errorf("%s: accepted as TCP %+v", c.name, p)
		}
	}
}

// Truncation anywhere must be rejected or decoded right, never panic.
func TestDecodeLiveTruncated(t *testing.T) {
	for _, spec := range []pt.Frame{
		{Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64, MSS: 1460, IPOpts: true, VLAN: 7},
		{V6: true, Src: pt.V6C, Dst: pt.V6S, SYN: true, TTL: 64, MSS: 1440},
	} {
		frame := pt.Craft(t, spec)
		for n := 0; n < len(frame); n++ {
			p, err := decodeLive(t, ARPHRDEther, frame[:n])
			if err == nil && p.Kind == KindTCP {
				if src, _ := addrPorts(&p); src != spec.Src {
					t.Fatalf("len %d: decoded wrong source %v", n, src)
				}
			}
		}
	}
}

func TestDecodeLiveIPv6HopByHop(t *testing.T) {
	frame := pt.Craft(t, pt.Frame{V6: true, Src: pt.V6C, Dst: pt.V6S, SYN: true, TTL: 64, MSS: 1440})
	// An 8-byte hop-by-hop header (PadN) between IPv6 and TCP.
	ip := 14
	out := append([]byte(nil), frame[:ip+40]...)
	out = append(out, 6, 0, 1, 4, 0, 0, 0, 0)
	out = append(out, frame[ip+40:]...)
	out[ip+6] = 0 // next header: hop-by-hop
	out[ip+5] += 8
	p, err := decodeLive(t, ARPHRDEther, out)
	if src, _ := addrPorts(&p); err != nil || src != pt.V6C || p.Opt.MSS != 1440 {
		t.Fatalf("hop-by-hop: err %v %+v", err, p)
	}
}

func hexFrame(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Recorded frames, byte for byte (review P1-P6): each pins one field the
// decoders once got wrong or left untested.
const (
	// 802.1Q tag TCI 0xa02a: PCP 5, DEI 0, VID 42; then an IPv4 SYN
	// 10.0.0.1:1 -> 10.0.0.2:2 with MSS 1460.
	frameVLANPCP = `02 00 00 00 00 01 02 00 00 00 00 02 81 00 a0 2a 08 00
		45 00 00 2c 00 01 00 00 40 06 00 00 0a 00 00 01 0a 00 00 02
		00 01 00 02 00 00 00 07 00 00 00 00 60 02 ff ff 00 00 00 00
		02 04 05 b4`
)

func TestRecordedVLANPriorityBits(t *testing.T) {
	var d Decoder
	var p Packet
	if err := d.Decode(LinkEthernet, hexFrame(t, frameVLANPCP), &p); err != nil || p.Kind != KindTCP {
		t.Fatalf("err %v kind %d", err, p.Kind)
	}
	if p.VLAN != 42 {
		t.Errorf("VLAN %d (%#x), want 42: the priority bits are not part of the id", p.VLAN, p.VLAN)
	}
	if p.Opt.MSS != 1460 || p.SrcPort != 1 || p.DstPort != 2 {
		t.Errorf("%+v", p)
	}
}

// tcpWithOptions is an IPv4 SYN 10.0.0.1:1 -> 10.0.0.2:2 carrying opts
// (padded with EOL to a multiple of 4).
func tcpWithOptions(opts []byte) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	hl := 20 + len(opts)
	ip := []byte{0x45, 0, 0, 0, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	total := 20 + hl
	ip[2], ip[3] = byte(total>>8), byte(total)
	tcp := []byte{0, 1, 0, 2, 0, 0, 0, 7, 0, 0, 0, 0, byte(hl/4) << 4, SYN, 0xff, 0xff, 0, 0, 0, 0}
	return append(append(ip, tcp...), opts...)
}

// An MSS option counts only with its one valid length (4): a malformed
// one is skipped by its length and the walk goes on.
func TestMSSOptionLength(t *testing.T) {
	cases := []struct {
		name string
		opts []byte
		want uint16
	}{
		{"mss", []byte{2, 4, 0x05, 0xb4}, 1460},
		{"nops then mss", []byte{1, 1, 2, 4, 0x05, 0xb4}, 1460},
		{"sack-ok, timestamps, mss", []byte{4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 2, 4, 0x05, 0x78}, 1400},
		{"end of options first", []byte{0, 2, 4, 0x05, 0xb4}, 0},
		{"length 3", []byte{2, 3, 0x05, 1}, 0},
		{"length 6", []byte{2, 6, 0x05, 0xb4, 0, 0}, 0},
		{"malformed mss skipped, good one read", []byte{2, 3, 0x05, 2, 4, 0x01, 0x00}, 256},
		{"bad length stops the walk", []byte{3, 0, 2, 4, 0x05, 0xb4}, 0},
		{"length past the end", []byte{3, 200, 2, 4, 0x05, 0xb4}, 0},
	}
	for _, c := range cases {
		var d Decoder
		var p Packet
		if err := d.Decode(LinkRaw, tcpWithOptions(c.opts), &p); err != nil || p.Kind != KindTCP {
			t.Fatalf("%s: err %v", c.name, err)
		}
		if p.Opt.MSS != c.want {
			t.Errorf("%s: MSS %d, want %d", c.name, p.Opt.MSS, c.want)
		}
	}
}

// icmpFrame wraps a quoted IP packet in an ICMP (v6: ICMPv6) error of the
// given type from router to the quoted packet's source.
func icmpFrame(v6 bool, typ, code uint8, quoted []byte) []byte {
	body := append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, quoted...)
	if v6 {
		h := make([]byte, 40)
		h[0], h[6], h[7] = 0x60, 58, 64
		h[4], h[5] = byte(len(body)>>8), byte(len(body))
		copy(h[8:24], netip.MustParseAddr("2001:db8::fe").AsSlice())
		copy(h[24:40], netip.MustParseAddr("2001:db8::1").AsSlice())
		return append(h, body...)
	}
	h := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 192, 0, 2, 254, 10, 0, 0, 1}
	total := 20 + len(body)
	h[2], h[3] = byte(total>>8), byte(total)
	return append(h, body...)
}

func quotedSYN(v6 bool) []byte {
	tcp := []byte{0x9c, 0x40, 0x1f, 0x90, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x50, SYN, 0xff, 0xff, 0, 0, 0, 0}
	if v6 {
		h := make([]byte, 40)
		h[0], h[6], h[7] = 0x60, 6, 64
		h[5] = 20
		copy(h[8:24], netip.MustParseAddr("2001:db8::1").AsSlice())
		copy(h[24:40], netip.MustParseAddr("2001:db8::2").AsSlice())
		return append(h, tcp...)
	}
	h := []byte{0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	return append(h, tcp...)
}

// ICMP errors: which types quote a segment, and only of their own family.
func TestICMPErrors(t *testing.T) {
	cases := []struct {
		name       string
		v6         bool
		typ, code  uint8
		quotedV6   bool
		wantError  bool
		wantSport  uint16
		wantSeq    uint32
		wantFlags  uint8
		wantInner6 bool
	}{
		{"v4 unreachable", false, 3, 1, false, true, 40000, 1000, SYN, false},
		{"v4 time exceeded", false, 11, 0, false, true, 40000, 1000, SYN, false},
		{"v4 echo reply is not an error", false, 0, 0, false, false, 0, 0, 0, false},
		{"v4 redirect is not counted", false, 5, 1, false, false, 0, 0, 0, false},
		{"v6 unreachable", true, 1, 4, true, true, 40000, 1000, SYN, true},
		{"v6 time exceeded", true, 3, 0, true, true, 40000, 1000, SYN, true},
		{"v6 packet too big is not counted", true, 2, 0, true, false, 0, 0, 0, false},
		{"v4 error quoting an IPv6 packet", false, 3, 1, true, false, 0, 0, 0, false},
		{"v6 error quoting an IPv4 packet", true, 1, 4, false, false, 0, 0, 0, false},
	}
	for _, c := range cases {
		var d Decoder
		var p Packet
		if err := d.Decode(LinkRaw, icmpFrame(c.v6, c.typ, c.code, quotedSYN(c.quotedV6)), &p); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (p.Kind == KindICMPError) != c.wantError {
			t.Errorf("%s: kind %d, want ICMP error %v", c.name, p.Kind, c.wantError)
			continue
		}
		if !c.wantError {
			continue
		}
		if p.ICMPType != c.typ || p.ICMPCode != c.code || p.InnerSport != c.wantSport || p.InnerDport != 8080 ||
			p.InnerSeq != c.wantSeq || !p.InnerHasFlags || p.InnerFlags != c.wantFlags {
			t.Errorf("%s: %+v", c.name, p)
		}
		wantSrc := netip.MustParseAddr("10.0.0.1")
		if c.wantInner6 {
			wantSrc = netip.MustParseAddr("2001:db8::1")
		}
		if p.InnerSrc.IP(c.wantInner6) != wantSrc {
			t.Errorf("%s: inner source %v, want %v", c.name, p.InnerSrc.IP(c.wantInner6), wantSrc)
		}
	}
}

// Fragment offsets: every bit of the 13-bit field (IPv4) and of the
// 13-bit field above the flags (IPv6) makes a non-first fragment,
// including the top bit (offsets of 32 KiB and more).
func TestFragmentOffsetBits(t *testing.T) {
	for _, off := range []uint16{1, 0x0100, 0x0fff, 0x1000, 0x1fff} {
		b := tcpWithOptions([]byte{2, 4, 0x05, 0xb4})
		b[6], b[7] = byte(off>>8), byte(off)
		var d Decoder
		var p Packet
		if err := d.Decode(LinkRaw, b, &p); !errors.Is(err, ErrFragment) {
			t.Errorf("IPv4 offset %#x: err %v kind %d, want ErrFragment", off, err, p.Kind)
		}
	}
	// Flags alone (DF, MF with offset 0) is a first fragment: decoded.
	for _, flags := range []uint16{0x4000, 0x2000} {
		b := tcpWithOptions(nil)
		b[6], b[7] = byte(flags>>8), byte(flags)
		var d Decoder
		var p Packet
		if err := d.Decode(LinkRaw, b, &p); err != nil || p.Kind != KindTCP {
			t.Errorf("IPv4 flags %#x offset 0: err %v", flags, err)
		}
	}
	// IPv6 fragment header: offset in the top 13 bits, M flag in bit 0.
	for _, fo := range []struct {
		field uint16
		frag  bool
	}{{0x0008, true}, {0x8000, true}, {0xfff8, true}, {0x0001, false}, {0x0000, false}} {
		seg := quotedSYN(true)
		out := append([]byte(nil), seg[:40]...)
		out = append(out, 6, 0, byte(fo.field>>8), byte(fo.field), 0, 0, 0, 1)
		out = append(out, seg[40:]...)
		out[6] = 44
		out[5] += 8
		var d Decoder
		var p Packet
		err := d.Decode(LinkRaw, out, &p)
		if fo.frag && !errors.Is(err, ErrFragment) {
			t.Errorf("IPv6 fragment field %#x: err %v, want ErrFragment", fo.field, err)
		}
		if !fo.frag && (err != nil || p.Kind != KindTCP) {
			t.Errorf("IPv6 fragment field %#x: err %v kind %d, want a decoded first fragment", fo.field, err, p.Kind)
		}
	}
}

// FuzzDecodeLive: what the live path accepts has a consistent shape.
func FuzzDecodeLive(f *testing.F) {
	for _, spec := range []pt.Frame{
		{Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64, MSS: 1460, IPOpts: true},
		{Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64, MSS: 1460, VLAN: 3, PCP: 6},
		{V6: true, Src: pt.V6C, Dst: pt.V6S, SYN: true, ACK: true, TTL: 64, MSS: 1440},
		{Src: pt.V4S, Dst: pt.V4C, RST: true, TTL: 64},
	} {
		f.Add(pt.Craft(f, spec), ARPHRDEther)
	}
	f.Add(pt.Craft(f, pt.Frame{Raw: true, Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64}), ARPHRDNone)
	f.Fuzz(func(t *testing.T, frame []byte, hatype uint16) {
		p, err := decodeLive(t, hatype, frame)
		if err != nil || p.Kind != KindTCP {
			return
		}
		if p.VLAN > 0x0fff {
			t.Fatalf("VLAN id %#x wider than 12 bits", p.VLAN)
		}
		link, _ := LinkFromARPHRD(hatype)
		if p.HasMAC != (link == LinkEthernet) {
			t.Fatalf("HasMAC %v on link %d", p.HasMAC, link)
		}
		if p.HasMAC && !bytes.Equal(p.SrcMAC[:], frame[6:12]) {
			t.Fatalf("SrcMAC %x, frame says %x", p.SrcMAC, frame[6:12])
		}
	})
}

// BenchmarkDecodeLive: the per-frame cost live capture pays.
func BenchmarkDecodeLive(b *testing.B) {
	frames := [][]byte{
		pt.Craft(b, pt.Frame{Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64, MSS: 1460}),
		pt.Craft(b, pt.Frame{V6: true, Src: pt.V6C, Dst: pt.V6S, SYN: true, ACK: true, TTL: 64, MSS: 1440}),
	}
	var d Decoder
	var p Packet
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := d.Decode(LinkEthernet, frames[i&1], &p); err != nil || p.Kind != KindTCP {
			b.Fatal("rejected")
		}
	}
}

// TestVLANOfOuterFrame: the VLAN is the outer frame's first tag; tags of
// a QinQ stack's inner level or of a tunnelled Ethernet frame are not.
func TestVLANOfOuterFrame(t *testing.T) {
	ip := pt.Craft(t, pt.Frame{Raw: true, Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64})
	inner := pt.Craft(t, pt.Frame{VLAN: 10, Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64})
	vxlan := func(outerTag uint16) []byte {
		udp := append([]byte{0xc3, 0x50, 0x12, 0xb5, 0, byte(16 + len(inner)), 0, 0, 0x08, 0, 0, 0, 0, 0, 1, 0}, inner...)
		ip4 := append([]byte{0x45, 0, byte((20 + len(udp)) >> 8), byte(20 + len(udp)), 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2}, udp...)
		eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9}
		if outerTag != 0 {
			eth = append(eth, 0x81, 0x00, byte(outerTag>>8), byte(outerTag))
		}
		return append(append(eth, 0x08, 0x00), ip4...)
	}
	qinq := append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9, 0x88, 0xa8, 0x20, 0x05, 0x81, 0x00, 0x00, 0x06, 0x08, 0x00}, ip...)
	priorityTagged := append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9, 0x88, 0xa8, 0xe0, 0x00, 0x81, 0x00, 0x00, 0x06, 0x08, 0x00}, ip...)
	cases := []struct {
		name  string
		frame []byte
		vlan  uint16
		mac   byte // last byte of the source MAC
	}{
		{"qinq: the outer (service) tag", qinq, 5, 9},
		{"priority-tagged outer, inner 6: the outer tag's id 0", priorityTagged, 0, 9},
		{"vxlan, untagged outside, tagged inside", vxlan(0), 0, 9},
		{"vxlan, tag 3 outside, 10 inside", vxlan(3), 3, 9},
	}
	for _, c := range cases {
		var d Decoder
		var p Packet
		if err := d.Decode(LinkEthernet, c.frame, &p); err != nil || p.Kind != KindTCP {
			t.Fatalf("%s: err %v kind %d", c.name, err, p.Kind)
		}
		if p.VLAN != c.vlan || !p.HasMAC || p.SrcMAC[5] != c.mac {
			t.Errorf("%s: VLAN %d MAC %x (has %v), want VLAN %d and the outer source MAC", c.name, p.VLAN, p.SrcMAC, p.HasMAC, c.vlan)
		}
	}
}

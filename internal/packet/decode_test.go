package packet

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/synscope/synscope/internal/pcap/synth"
)

func TestDecodeLinkTypes(t *testing.T) {
	s := synth.Seg{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Sport: 1234, Dport: 80,
		Seq: 7, Flags: synth.SYN, MSS: 1400, WScale: 9, SACKOK: true, TS: true, TSval: 55, IPID: 321}
	ip := s.IP()
	sll := append(make([]byte, 14), 0x08, 0x00)
	sll2 := append([]byte{0x08, 0x00}, make([]byte, 18)...)
	cases := []struct {
		name string
		link uint16
		data []byte
	}{
		{"ethernet", LinkEthernet, synth.Ethernet(ip, nil)},
		{"vlan", LinkEthernet, synth.Ethernet(ip, []uint16{5})},
		{"qinq", LinkEthernet, synth.Ethernet(ip, []uint16{5, 6})},
		{"sll", LinkSLL, append(sll, ip...)},
		{"sll2", LinkSLL2, append(sll2, ip...)},
		{"raw", LinkRaw, ip},
		{"ipv4", LinkIPv4, ip},
		{"null", LinkNull, append([]byte{2, 0, 0, 0}, ip...)},
	}
	d := Decoder{VerifyChecksums: true}
	for _, c := range cases {
		var p Packet
		if err := d.Decode(c.link, c.data, &p); err != nil || p.Kind != KindTCP {
			t.Errorf("%s: kind %d err %v", c.name, p.Kind, err)
			continue
		}
		if p.SrcPort != 1234 || p.Seq != 7 || p.Opt.MSS != 1400 || p.Opt.WScale != 9 || !p.Opt.SACKOK || p.Opt.TSval != 55 || p.IPID != 321 || p.TCPChecksumBad || p.IPChecksumBad {
			t.Errorf("%s: %+v", c.name, p)
		}
	}
	s6 := s
	s6.Src, s6.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	s6.BadTCPChecksum = true
	var p Packet
	if err := d.Decode(LinkIPv6, s6.IP(), &p); err != nil || !p.V6 || !p.TCPChecksumBad {
		t.Errorf("ipv6 bad checksum: %+v %v", p, err)
	}
	icmp := synth.ICMPUnreachable(netip.MustParseAddr("192.0.2.254"), ip, 1)
	if err := d.Decode(LinkRaw, icmp, &p); err != nil || p.Kind != KindICMPError || p.InnerSport != 1234 || p.InnerSeq != 7 || p.ICMPCode != 1 {
		t.Errorf("icmp: %+v %v", p, err)
	}
}

func FuzzDecode(f *testing.F) {
	s := synth.Seg{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Sport: 1, Dport: 2, Flags: synth.SYN, MSS: 1, WScale: 1, TS: true}
	f.Add(uint16(1), synth.Ethernet(s.IP(), []uint16{1, 2}))
	s.Src, s.Dst = netip.MustParseAddr("::1"), netip.MustParseAddr("::2")
	f.Add(uint16(101), s.IP())
	f.Add(uint16(101), synth.ICMPUnreachable(netip.MustParseAddr("::3"), s.IP(), 4))
	f.Fuzz(func(t *testing.T, link uint16, data []byte) {
		d := Decoder{VerifyChecksums: true}
		var p Packet
		_ = d.Decode(link, data, &p)
	})
}

// TestEncapsulations decodes the inner TCP segment of every
// encapsulation mirrored or tunnelled traffic arrives in, and records
// which ones it came through.
func TestEncapsulations(t *testing.T) {
	s := synth.Seg{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Sport: 1234, Dport: 80,
		Seq: 7, Flags: synth.SYN, MSS: 1400, WScale: 9, SACKOK: true, TS: true, TSval: 55, IPID: 321}
	ip := s.IP()
	s6 := s
	s6.Src, s6.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	ip6 := s6.IP()
	o1, o2 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	o61, o62 := netip.MustParseAddr("2001:db8:ff::1"), netip.MustParseAddr("2001:db8:ff::2")
	eth := synth.Ethernet(ip, []uint16{10})
	bit := func(es ...Encap) uint16 {
		var b uint16
		for _, e := range es {
			b |= 1 << e
		}
		return b
	}
	cases := []struct {
		name   string
		link   uint16
		data   []byte
		v6     bool
		encaps uint16
	}{
		{"gre ipv4", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 47, synth.GRE(0, 0x0800, ip)), nil), false, bit(EncapGRE)},
		{"gre key+seq+csum ipv6 over ipv6", LinkEthernet, synth.Ethernet(synth.IPPacket(o61, o62, 47, synth.GRE(0xb000, 0x86dd, ip6)), nil), true, bit(EncapGRE)},
		{"gre teb", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 47, synth.GRE(0x2000, 0x6558, eth)), nil), false, bit(EncapGRE)},
		{"erspan I", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 47, synth.GRE(0, 0x88be, eth)), nil), false, bit(EncapGRE, EncapERSPAN)},
		{"erspan II", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 47, synth.GRE(0x1000, 0x88be, synth.ERSPAN2(eth))), nil), false, bit(EncapGRE, EncapERSPAN)},
		{"erspan III", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 47, synth.GRE(0x1000, 0x22eb, synth.ERSPAN3(eth, false))), nil), false, bit(EncapGRE, EncapERSPAN)},
		{"erspan III platform", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 47, synth.GRE(0x1000, 0x22eb, synth.ERSPAN3(eth, true))), nil), false, bit(EncapGRE, EncapERSPAN)},
		{"vxlan", LinkEthernet, synth.Ethernet(synth.UDPPacket(o1, o2, 50000, 4789, synth.VXLAN(eth)), nil), false, bit(EncapVXLAN)},
		{"vxlan over ipv6", LinkEthernet, synth.Ethernet(synth.UDPPacket(o61, o62, 50000, 4789, synth.VXLAN(synth.Ethernet(ip6, nil))), nil), true, bit(EncapVXLAN)},
		{"geneve ethernet", LinkEthernet, synth.Ethernet(synth.UDPPacket(o1, o2, 50000, 6081, synth.GENEVE(0x6558, 2, eth)), nil), false, bit(EncapGENEVE)},
		{"geneve ip", LinkEthernet, synth.Ethernet(synth.UDPPacket(o1, o2, 50000, 6081, synth.GENEVE(0x86dd, 0, ip6)), nil), true, bit(EncapGENEVE)},
		{"gtp-u", LinkEthernet, synth.Ethernet(synth.UDPPacket(o1, o2, 2152, 2152, synth.GTPU(ip, false)), nil), false, bit(EncapGTPU)},
		{"gtp-u extension header", LinkEthernet, synth.Ethernet(synth.UDPPacket(o1, o2, 2152, 2152, synth.GTPU(ip6, true)), nil), true, bit(EncapGTPU)},
		{"ipip", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 4, ip), nil), false, bit(EncapIPinIP)},
		{"6in4", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 41, ip6), nil), true, bit(EncapIPinIP)},
		{"4in6", LinkRaw, synth.IPPacket(o61, o62, 4, ip), false, bit(EncapIPinIP)},
		{"pppoe", LinkEthernet, synth.PPPoE(ip), false, bit(EncapPPPoE)},
		{"pppoe ipv6", LinkEthernet, synth.PPPoE(ip6), true, bit(EncapPPPoE)},
		{"mpls 2 labels", LinkEthernet, synth.MPLS([]uint32{100, 200}, ip), false, bit(EncapMPLS)},
		{"mpls pseudowire", LinkEthernet, synth.MPLS([]uint32{100}, append([]byte{0, 0, 0, 0}, eth...)), false, bit(EncapMPLS)},
		{"radiotap 802.11", 127, synth.Radiotap80211(ip, false), false, bit(Encap80211)},
		{"802.11", 105, synth.Radiotap80211(ip6, false)[12:], true, bit(Encap80211)},
		{"vxlan in gre in vlan", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 47, synth.GRE(0, 0x0800, synth.UDPPacket(o1, o2, 1, 4789, synth.VXLAN(eth)))), []uint16{3}), false, bit(EncapGRE, EncapVXLAN)},
	}
	d := Decoder{VerifyChecksums: true}
	for _, c := range cases {
		var p Packet
		if err := d.Decode(c.link, c.data, &p); err != nil || p.Kind != KindTCP {
			t.Errorf("%s: kind %d err %v", c.name, p.Kind, err)
			continue
		}
		want := s
		if c.v6 {
			want = s6
		}
		if p.V6 != c.v6 || p.Src.IP(p.V6) != want.Src || p.Dst.IP(p.V6) != want.Dst || p.SrcPort != 1234 || p.Seq != 7 || p.Opt.MSS != 1400 || p.TCPChecksumBad || p.IPChecksumBad {
			t.Errorf("%s: inner segment wrong: %+v", c.name, p)
		}
		if p.Encaps != c.encaps {
			t.Errorf("%s: encaps %#x, want %#x", c.name, p.Encaps, c.encaps)
		}
	}
	// What cannot be decoded says why.
	bad := []struct {
		name string
		link uint16
		data []byte
		err  error
	}{
		{"protected 802.11", 127, synth.Radiotap80211(ip, true), ErrEncrypted},
		{"gre version 1", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 47, synth.GRE(1, 0x880b, ip)), nil), ErrEncap},
		{"gre unknown protocol", LinkEthernet, synth.Ethernet(synth.IPPacket(o1, o2, 47, synth.GRE(0, 0x1234, ip)), nil), ErrEncap},
		{"unknown link", 147, ip, ErrLink},
		{"truncated vxlan", LinkEthernet, synth.Ethernet(synth.UDPPacket(o1, o2, 1, 4789, synth.VXLAN(eth[:20])), nil), ErrShort},
	}
	for _, c := range bad {
		var p Packet
		err := d.Decode(c.link, c.data, &p)
		if !errors.Is(err, c.err) || Reasons[ReasonIndex(err)] == "other" {
			t.Errorf("%s: err %v, want %v", c.name, err, c.err)
		}
	}
	// Tunnels nested without end stop at maxDepth.
	deep := ip
	for range maxDepth + 2 {
		deep = synth.IPPacket(o1, o2, 4, deep)
	}
	var p Packet
	if err := d.Decode(LinkRaw, deep, &p); !errors.Is(err, ErrDepth) {
		t.Errorf("deep nesting: %v", err)
	}
}

package decode

import (
	"net/netip"
	"testing"

	"github.com/synscope/synscope/internal/pcap/capfile"
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
		{"ethernet", capfile.LinkEthernet, synth.Ethernet(ip, nil)},
		{"vlan", capfile.LinkEthernet, synth.Ethernet(ip, []uint16{5})},
		{"qinq", capfile.LinkEthernet, synth.Ethernet(ip, []uint16{5, 6})},
		{"sll", capfile.LinkSLL, append(sll, ip...)},
		{"sll2", capfile.LinkSLL2, append(sll2, ip...)},
		{"raw", capfile.LinkRaw, ip},
		{"ipv4", capfile.LinkIPv4, ip},
		{"null", capfile.LinkNull, append([]byte{2, 0, 0, 0}, ip...)},
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
	if err := d.Decode(capfile.LinkIPv6, s6.IP(), &p); err != nil || !p.V6 || !p.TCPChecksumBad {
		t.Errorf("ipv6 bad checksum: %+v %v", p, err)
	}
	icmp := synth.ICMPUnreachable(netip.MustParseAddr("192.0.2.254"), ip, 1)
	if err := d.Decode(capfile.LinkRaw, icmp, &p); err != nil || p.Kind != KindICMPError || p.InnerSport != 1234 || p.InnerSeq != 7 || p.ICMPCode != 1 {
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

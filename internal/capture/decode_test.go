package capture

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	macClient = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	macServer = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
)

// frameSpec describes a frame to craft with gopacket, an encoder
// independent of Decode.
type frameSpec struct {
	v6       bool
	vlan     uint16 // 0: untagged
	raw      bool   // no Ethernet header
	src, dst netip.AddrPort
	syn, ack bool
	rst      bool
	ttl      uint8
	mss      uint16 // 0: no MSS option
	ipOpts   bool   // IPv4 options (IHL > 5)
	udp      bool
}

func craft(t testing.TB, f frameSpec) []byte {
	t.Helper()
	var ls []gopacket.SerializableLayer
	etherType := layers.EthernetTypeIPv4
	if f.v6 {
		etherType = layers.EthernetTypeIPv6
	}
	if !f.raw {
		eth := &layers.Ethernet{SrcMAC: macClient, DstMAC: macServer, EthernetType: etherType}
		if f.vlan != 0 {
			eth.EthernetType = layers.EthernetTypeDot1Q
			ls = append(ls, eth, &layers.Dot1Q{VLANIdentifier: f.vlan, Type: etherType})
		} else {
			ls = append(ls, eth)
		}
	}
	proto := layers.IPProtocolTCP
	if f.udp {
		proto = layers.IPProtocolUDP
	}
	var nl gopacket.NetworkLayer
	if f.v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: f.ttl, NextHeader: proto,
			SrcIP: f.src.Addr().AsSlice(), DstIP: f.dst.Addr().AsSlice()}
		nl = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, TTL: f.ttl, Protocol: proto,
			SrcIP: f.src.Addr().AsSlice(), DstIP: f.dst.Addr().AsSlice()}
		if f.ipOpts {
			// Router alert (4 bytes) plus a padded timestamp-like option.
			ip.Options = []layers.IPv4Option{
				{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}},
				{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0},
			}
		}
		nl = ip
		ls = append(ls, ip)
	}
	if f.udp {
		u := &layers.UDP{SrcPort: layers.UDPPort(f.src.Port()), DstPort: layers.UDPPort(f.dst.Port())}
		u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u, gopacket.Payload("hello"))
	} else {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(f.src.Port()), DstPort: layers.TCPPort(f.dst.Port()),
			SYN: f.syn, ACK: f.ack, RST: f.rst, Window: 64240, Seq: 1000}
		opts := []layers.TCPOption{{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindNop}}
		if f.mss != 0 {
			opts = append(opts, layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4,
				OptionData: []byte{byte(f.mss >> 8), byte(f.mss)}})
		}
		opts = append(opts, layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}})
		tcp.Options = opts
		tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("crafting frame: %v", err)
	}
	return buf.Bytes()
}

var (
	v4c = netip.MustParseAddrPort("10.77.0.2:40000")
	v4s = netip.MustParseAddrPort("10.77.0.1:8080")
	v6c = netip.MustParseAddrPort("[fd77::2]:40000")
	v6s = netip.MustParseAddrPort("[fd77::1]:8080")
)

func TestDecode(t *testing.T) {
	cases := []struct {
		name string
		spec frameSpec
		link uint16
		vlan uint16
	}{
		{"v4 syn", frameSpec{src: v4c, dst: v4s, syn: true, ttl: 64, mss: 1460}, LinkEthernet, 0},
		{"v4 ip options", frameSpec{src: v4c, dst: v4s, syn: true, ttl: 63, mss: 1400, ipOpts: true}, LinkEthernet, 0},
		{"v4 vlan", frameSpec{src: v4c, dst: v4s, syn: true, ttl: 64, mss: 1460, vlan: 42}, LinkEthernet, 42},
		{"v4 loopback synack", frameSpec{src: v4s, dst: v4c, syn: true, ack: true, ttl: 64, mss: 65495}, LinkLoopback, 0},
		{"v4 rst no mss", frameSpec{src: v4s, dst: v4c, rst: true, ack: true, ttl: 64}, LinkEthernet, 0},
		{"v6 syn", frameSpec{v6: true, src: v6c, dst: v6s, syn: true, ttl: 255, mss: 1440}, LinkEthernet, 0},
		{"v6 vlan", frameSpec{v6: true, src: v6c, dst: v6s, syn: true, ttl: 64, mss: 1440, vlan: 4094}, LinkEthernet, 4094},
		{"v4 raw ip (tun)", frameSpec{raw: true, src: v4c, dst: v4s, syn: true, ttl: 64, mss: 1360}, LinkNone, 0},
		{"v6 raw ip", frameSpec{raw: true, v6: true, src: v6c, dst: v6s, syn: true, ttl: 64, mss: 1360}, LinkRawIP, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			frame := craft(t, c.spec)
			p, ok := Decode(frame, c.link)
			if !ok {
				t.Fatalf("Decode rejected %x", frame)
			}
			if p.Src != c.spec.src || p.Dst != c.spec.dst {
				t.Errorf("addresses %v → %v, want %v → %v", p.Src, p.Dst, c.spec.src, c.spec.dst)
			}
			if p.TTL != c.spec.ttl || p.MSS != c.spec.mss || p.VLAN != c.vlan {
				t.Errorf("ttl %d mss %d vlan %d, want %d %d %d", p.TTL, p.MSS, p.VLAN, c.spec.ttl, c.spec.mss, c.vlan)
			}
			if got, want := p.SYN(), c.spec.syn && !c.spec.ack; got != want {
				t.Errorf("SYN() = %v", got)
			}
			if got, want := p.SYNACK(), c.spec.syn && c.spec.ack; got != want {
				t.Errorf("SYNACK() = %v", got)
			}
			if p.RST() != c.spec.rst {
				t.Errorf("RST() = %v", p.RST())
			}
			if c.spec.raw {
				if p.HasMAC {
					t.Error("raw IP frame reported a MAC")
				}
			} else if !p.HasMAC || net.HardwareAddr(p.SrcMAC[:]).String() != macClient.String() {
				t.Errorf("src MAC %v (has %v)", net.HardwareAddr(p.SrcMAC[:]), p.HasMAC)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	udp := craft(t, frameSpec{src: v4c, dst: v4s, udp: true, ttl: 64})
	if _, ok := Decode(udp, LinkEthernet); ok {
		t.Error("UDP accepted")
	}
	udp6 := craft(t, frameSpec{v6: true, src: v6c, dst: v6s, udp: true, ttl: 64})
	if _, ok := Decode(udp6, LinkEthernet); ok {
		t.Error("UDP over IPv6 accepted")
	}
	syn := craft(t, frameSpec{src: v4c, dst: v4s, syn: true, ttl: 64, mss: 1460})
	if _, ok := Decode(syn, 24 /* ARPHRD_IEEE1394 */); ok {
		t.Error("unknown link type accepted")
	}
	if _, ok := Decode(syn, LinkNone); ok {
		t.Error("Ethernet frame accepted as raw IP")
	}
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	if _, ok := Decode(arp, LinkEthernet); ok {
		t.Error("ARP accepted")
	}
	frag := append([]byte(nil), syn...)
	frag[14+6], frag[14+7] = 0x00, 0x10 // fragment offset 16*8
	if _, ok := Decode(frag, LinkEthernet); ok {
		t.Error("non-first IPv4 fragment accepted")
	}
	mismatch := append([]byte(nil), syn...)
	mismatch[12], mismatch[13] = 0x86, 0xdd // says IPv6, carries IPv4
	if _, ok := Decode(mismatch, LinkEthernet); ok {
		t.Error("EtherType/version mismatch accepted")
	}
}

// Truncation anywhere must be rejected or decoded, never panic; a cut
// inside the TCP options only loses the MSS.
func TestDecodeTruncated(t *testing.T) {
	for _, spec := range []frameSpec{
		{src: v4c, dst: v4s, syn: true, ttl: 64, mss: 1460, ipOpts: true, vlan: 7},
		{v6: true, src: v6c, dst: v6s, syn: true, ttl: 64, mss: 1440},
	} {
		frame := craft(t, spec)
		for n := 0; n < len(frame); n++ {
			p, ok := Decode(frame[:n], LinkEthernet)
			if ok && p.Src != spec.src {
				t.Fatalf("len %d: decoded wrong source %v", n, p.Src)
			}
		}
	}
}

func TestParseMSS(t *testing.T) {
	cases := []struct {
		opts []byte
		want uint16
	}{
		{nil, 0},
		{[]byte{2, 4, 0x05, 0xb4}, 1460},
		{[]byte{1, 1, 2, 4, 0x05, 0xb4}, 1460},
		{[]byte{4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 2, 4, 0x05, 0x78}, 1400},
		{[]byte{0, 2, 4, 0x05, 0xb4}, 0},            // end of options first
		{[]byte{3, 0, 2, 4, 0x05, 0xb4}, 0},         // bad length stops the walk
		{[]byte{2, 4, 0x05}, 0},                     // cut
		{[]byte{3, 200, 2, 4, 0x05, 0xb4}, 0},       // length past the end
		{[]byte{2, 3, 0x05, 2, 4, 0x01, 0x00}, 256}, // malformed MSS skipped
	}
	for _, c := range cases {
		if got := parseMSS(c.opts); got != c.want {
			t.Errorf("parseMSS(%x) = %d, want %d", c.opts, got, c.want)
		}
	}
}

func TestDecodeIPv6ExtensionHeaders(t *testing.T) {
	frame := craft(t, frameSpec{v6: true, src: v6c, dst: v6s, syn: true, ttl: 64, mss: 1440})
	// Insert an 8-byte hop-by-hop header (PadN) between IPv6 and TCP.
	ip := 14
	ext := []byte{protoTCP, 0, 1, 4, 0, 0, 0, 0}
	out := append([]byte(nil), frame[:ip+40]...)
	out = append(out, ext...)
	out = append(out, frame[ip+40:]...)
	out[ip+6] = 0 // next header: hop-by-hop
	p, ok := Decode(out, LinkEthernet)
	if !ok || p.Src != v6c || p.MSS != 1440 {
		t.Fatalf("hop-by-hop: ok=%v %+v", ok, p)
	}
}

func FuzzDecode(f *testing.F) {
	for _, spec := range []frameSpec{
		{src: v4c, dst: v4s, syn: true, ttl: 64, mss: 1460, ipOpts: true},
		{src: v4c, dst: v4s, syn: true, ttl: 64, mss: 1460, vlan: 3},
		{v6: true, src: v6c, dst: v6s, syn: true, ack: true, ttl: 64, mss: 1440},
		{src: v4s, dst: v4c, rst: true, ttl: 64},
	} {
		f.Add(craft(f, spec), LinkEthernet)
	}
	f.Add(craft(f, frameSpec{raw: true, src: v4c, dst: v4s, syn: true, ttl: 64}), LinkNone)
	f.Fuzz(func(t *testing.T, frame []byte, link uint16) {
		p, ok := Decode(frame, link)
		if !ok {
			return
		}
		if !p.Src.IsValid() || !p.Dst.IsValid() {
			t.Fatalf("accepted frame with invalid addresses: %+v", p)
		}
		if p.Src.Addr().Is4() != p.Dst.Addr().Is4() {
			t.Fatalf("mixed address families: %+v", p)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	frames := [][]byte{
		craft(b, frameSpec{src: v4c, dst: v4s, syn: true, ttl: 64, mss: 1460}),
		craft(b, frameSpec{v6: true, src: v6c, dst: v6s, syn: true, ack: true, ttl: 64, mss: 1440}),
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := Decode(frames[i&1], LinkEthernet); !ok {
			b.Fatal("rejected")
		}
	}
}

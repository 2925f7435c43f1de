// Package packettest crafts frames for the tests of the frame decoder and
// of the classic-BPF filters with gopacket, an encoder independent of
// internal/packet, so that a decoder bug cannot hide behind a matching
// encoder bug. Only tests import it.
package packettest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// MACs of the crafted frames: the client sends from MACClient.
var (
	MACClient = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	MACServer = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
)

// Endpoints the tests use.
var (
	V4C = netip.MustParseAddrPort("10.77.0.2:40000")
	V4S = netip.MustParseAddrPort("10.77.0.1:8080")
	V6C = netip.MustParseAddrPort("[fd77::2]:40000")
	V6S = netip.MustParseAddrPort("[fd77::1]:8080")
)

// Frame describes a frame to craft.
type Frame struct {
	V6       bool
	VLAN     uint16 // 0: untagged
	PCP      uint8  // 802.1p priority of the tag
	Raw      bool   // no Ethernet header
	Src, Dst netip.AddrPort
	SYN, ACK bool
	RST      bool
	TTL      uint8
	MSS      uint16 // 0: no MSS option
	IPOpts   bool   // IPv4 options (IHL > 5)
	UDP      bool
}

// Craft serialises f (checksums and lengths computed).
func Craft(t testing.TB, f Frame) []byte {
	t.Helper()
	var ls []gopacket.SerializableLayer
	etherType := layers.EthernetTypeIPv4
	if f.V6 {
		etherType = layers.EthernetTypeIPv6
	}
	if !f.Raw {
		eth := &layers.Ethernet{SrcMAC: MACClient, DstMAC: MACServer, EthernetType: etherType}
		if f.VLAN != 0 || f.PCP != 0 {
			eth.EthernetType = layers.EthernetTypeDot1Q
			ls = append(ls, eth, &layers.Dot1Q{VLANIdentifier: f.VLAN, Priority: f.PCP, Type: etherType})
		} else {
			ls = append(ls, eth)
		}
	}
	proto := layers.IPProtocolTCP
	if f.UDP {
		proto = layers.IPProtocolUDP
	}
	var nl gopacket.NetworkLayer
	if f.V6 {
		ip := &layers.IPv6{Version: 6, HopLimit: f.TTL, NextHeader: proto,
			SrcIP: f.Src.Addr().AsSlice(), DstIP: f.Dst.Addr().AsSlice()}
		nl = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, TTL: f.TTL, Protocol: proto,
			SrcIP: f.Src.Addr().AsSlice(), DstIP: f.Dst.Addr().AsSlice()}
		if f.IPOpts {
			// Router alert (4 bytes) plus padding.
			ip.Options = []layers.IPv4Option{
				{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}},
				{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0},
			}
		}
		nl = ip
		ls = append(ls, ip)
	}
	if f.UDP {
		u := &layers.UDP{SrcPort: layers.UDPPort(f.Src.Port()), DstPort: layers.UDPPort(f.Dst.Port())}
		if err := u.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, u, gopacket.Payload("hello"))
	} else {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(f.Src.Port()), DstPort: layers.TCPPort(f.Dst.Port()),
			SYN: f.SYN, ACK: f.ACK, RST: f.RST, Window: 64240, Seq: 1000}
		opts := []layers.TCPOption{{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindNop}}
		if f.MSS != 0 {
			opts = append(opts, layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4,
				OptionData: []byte{byte(f.MSS >> 8), byte(f.MSS)}})
		}
		opts = append(opts, layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}})
		tcp.Options = opts
		if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, tcp)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("crafting frame: %v", err)
	}
	return buf.Bytes()
}

package capture

import (
	"bytes"
	"testing"

	"github.com/synscope/synscope/internal/packet"
	pt "github.com/synscope/synscope/internal/packet/packettest"
)

// The decoder's own table (every device type, VLAN, MSS, extension
// headers, truncation, rejects) lives in internal/packet; these tests pin
// what the adapter adds: the device-type mapping, the conversion into the
// flow table's form, and that segments inside tunnels are not flows.

var (
	v4c, v4s = pt.V4C, pt.V4S
	v6c, v6s = pt.V6C, pt.V6S
)

func TestDecodeAdapter(t *testing.T) {
	cases := []struct {
		name   string
		spec   pt.Frame
		hatype uint16
	}{
		{"v4 syn vlan", pt.Frame{Src: v4c, Dst: v4s, SYN: true, TTL: 61, MSS: 1460, VLAN: 42, PCP: 3}, packet.ARPHRDEther},
		{"v4 loopback synack", pt.Frame{Src: v4s, Dst: v4c, SYN: true, ACK: true, TTL: 64, MSS: 65495}, packet.ARPHRDLoopback},
		{"v6 rst", pt.Frame{V6: true, Src: v6s, Dst: v6c, RST: true, ACK: true, TTL: 255}, packet.ARPHRDEther},
		{"v6 raw syn", pt.Frame{Raw: true, V6: true, Src: v6c, Dst: v6s, SYN: true, TTL: 9, MSS: 1360}, packet.ARPHRDRawIP},
		{"v4 tun syn", pt.Frame{Raw: true, Src: v4c, Dst: v4s, SYN: true, TTL: 9, MSS: 1360}, packet.ARPHRDNone},
	}
	for _, c := range cases {
		p, ok := Decode(pt.Craft(t, c.spec), c.hatype)
		if !ok {
			t.Fatalf("%s: rejected", c.name)
		}
		if p.Src != c.spec.Src || p.Dst != c.spec.Dst || p.TTL != c.spec.TTL || p.MSS != c.spec.MSS || p.VLAN != c.spec.VLAN {
			t.Errorf("%s: %+v", c.name, p)
		}
		if p.SYN() != (c.spec.SYN && !c.spec.ACK) || p.SYNACK() != (c.spec.SYN && c.spec.ACK) || p.RST() != c.spec.RST {
			t.Errorf("%s: flags %#x", c.name, p.Flags)
		}
		if p.HasMAC == c.spec.Raw || (!c.spec.Raw && !bytes.Equal(p.SrcMAC[:], pt.MACClient)) {
			t.Errorf("%s: MAC %x has %v", c.name, p.SrcMAC, p.HasMAC)
		}
	}
	syn := pt.Craft(t, pt.Frame{Src: v4c, Dst: v4s, SYN: true, TTL: 64})
	if _, ok := Decode(syn, 24 /* ARPHRD_IEEE1394 */); ok {
		t.Error("unknown device type accepted")
	}
	// A SYN inside IP-in-IP is not a flow of this namespace's interfaces.
	inner := pt.Craft(t, pt.Frame{Raw: true, Src: v4c, Dst: v4s, SYN: true, TTL: 64})
	outer := append([]byte{0x45, 0, 0, byte(20 + len(inner)), 0, 0, 0, 0, 64, 4, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2}, inner...)
	if _, ok := Decode(outer, packet.ARPHRDNone); ok {
		t.Error("tunnelled segment accepted")
	}
}

func BenchmarkDecode(b *testing.B) {
	frames := [][]byte{
		pt.Craft(b, pt.Frame{Src: v4c, Dst: v4s, SYN: true, TTL: 64, MSS: 1460}),
		pt.Craft(b, pt.Frame{V6: true, Src: v6c, Dst: v6s, SYN: true, ACK: true, TTL: 64, MSS: 1440}),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, ok := Decode(frames[i&1], packet.ARPHRDEther); !ok {
			b.Fatal("rejected")
		}
	}
}

package capture

import (
	"testing"

	"golang.org/x/net/bpf"

	"github.com/synscope/synscope/internal/packet"
	pt "github.com/synscope/synscope/internal/packet/packettest"
)

// runFilter runs the handshake program in x/net/bpf's VM. The VM knows no
// ancillary loads, and the program only uses them to load the packet type
// and link type into A, so those are replaced by constants.
func runFilter(t *testing.T, ports []uint16, pkttype, hatype uint32, frame []byte) int {
	t.Helper()
	prog, err := handshakeProgram(ports)
	if err != nil {
		t.Fatal(err)
	}
	for i, ins := range prog {
		if ext, ok := ins.(bpf.LoadExtension); ok {
			switch ext.Num {
			case bpf.ExtType:
				prog[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: pkttype}
			case bpf.ExtLinkLayerType:
				prog[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: hatype}
			default:
				t.Fatalf("unexpected extension %v", ext.Num)
			}
		}
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("VM rejects program: %v", err)
	}
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatalf("VM: %v", err)
	}
	return n
}

const (
	pktHost     = 0
	pktOutgoing = 4
)

func TestFilterProgram(t *testing.T) {
	synOpts := pt.Craft(t, pt.Frame{Src: v4c, Dst: v4s, SYN: true, TTL: 64, MSS: 1460, IPOpts: true})
	syn6vlan := pt.Craft(t, pt.Frame{V6: true, VLAN: 9, Src: v6c, Dst: v6s, SYN: true, TTL: 64, MSS: 1440})
	rst := pt.Craft(t, pt.Frame{Src: v4s, Dst: v4c, RST: true, ACK: true, TTL: 64})
	ack := pt.Craft(t, pt.Frame{Src: v4c, Dst: v4s, ACK: true, TTL: 64})
	udp := pt.Craft(t, pt.Frame{Src: v4c, Dst: v4s, UDP: true, TTL: 64})
	rawSyn := pt.Craft(t, pt.Frame{Raw: true, Src: v4c, Dst: v4s, SYN: true, TTL: 64, MSS: 1460})
	rawSyn6 := pt.Craft(t, pt.Frame{Raw: true, V6: true, Src: v6c, Dst: v6s, SYN: true, TTL: 64, MSS: 1460})
	frag := append([]byte(nil), synOpts...)
	frag[14+7] = 0x10
	frag32k := append([]byte(nil), synOpts...)
	frag32k[14+6] = 0x10 // offset 0x1000*8: only the top bit of the field
	dfSyn := append([]byte(nil), synOpts...)
	dfSyn[14+6] = 0x40 // don't fragment, offset 0: a whole packet
	withPayload := append(append([]byte(nil), rst...), make([]byte, 500)...)
	hdrLen := func(link, ip, tcp int) int { return link + ip + tcp }

	cases := []struct {
		name    string
		ports   []uint16
		pkttype uint32
		hatype  uint16
		frame   []byte
		want    int // snap length; 0 = dropped
	}{
		{"v4 syn with ip options", nil, pktHost, packet.ARPHRDEther, synOpts, hdrLen(14, 28, 32)},
		{"v6 syn vlan", nil, pktHost, packet.ARPHRDEther, syn6vlan, hdrLen(18, 40, 32)},
		{"rst outgoing", nil, pktOutgoing, packet.ARPHRDEther, rst, hdrLen(14, 20, 28)},
		{"payload trimmed", nil, pktHost, packet.ARPHRDEther, withPayload, hdrLen(14, 20, 28)},
		{"pure ack", nil, pktHost, packet.ARPHRDEther, ack, 0},
		{"udp", nil, pktHost, packet.ARPHRDEther, udp, 0},
		{"later fragment", nil, pktHost, packet.ARPHRDEther, frag, 0},
		{"fragment at 32 KiB", nil, pktHost, packet.ARPHRDEther, frag32k, 0},
		{"don't-fragment syn", nil, pktHost, packet.ARPHRDEther, dfSyn, hdrLen(14, 28, 32)},
		{"loopback incoming", nil, pktHost, packet.ARPHRDLoopback, synOpts, hdrLen(14, 28, 32)},
		{"loopback outgoing copy", nil, pktOutgoing, packet.ARPHRDLoopback, synOpts, 0},
		{"raw ip tun", nil, pktHost, packet.ARPHRDNone, rawSyn, hdrLen(0, 20, 32)},
		{"raw ipv6", nil, pktOutgoing, packet.ARPHRDRawIP, rawSyn6, hdrLen(0, 40, 32)},
		{"ethernet frame on raw link", nil, pktHost, packet.ARPHRDNone, synOpts, 0},
		{"unknown link type", nil, pktHost, 24, synOpts, 0},
		{"truncated", nil, pktHost, packet.ARPHRDEther, synOpts[:40], 0},
		{"port dst match", []uint16{443, 8080}, pktHost, packet.ARPHRDEther, synOpts, hdrLen(14, 28, 32)},
		{"port src match (reply)", []uint16{8080}, pktOutgoing, packet.ARPHRDEther, rst, hdrLen(14, 20, 28)},
		{"port mismatch", []uint16{443}, pktHost, packet.ARPHRDEther, synOpts, 0},
	}
	for _, c := range cases {
		if got := runFilter(t, c.ports, c.pkttype, uint32(c.hatype), c.frame); got != c.want {
			t.Errorf("%s: filter returned %d, want %d", c.name, got, c.want)
		}
	}
}

func TestFilterAssembles(t *testing.T) {
	many := make([]uint16, maxFilterPorts)
	for i := range many {
		many[i] = uint16(1000 + i)
	}
	for _, ports := range [][]uint16{nil, {80}, many} {
		raw, err := handshakeFilter(ports)
		if err != nil {
			t.Fatalf("%d ports: %v", len(ports), err)
		}
		if len(raw) > 4096 {
			t.Fatalf("program too long: %d", len(raw))
		}
	}
}

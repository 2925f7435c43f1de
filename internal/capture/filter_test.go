package capture

import (
	"testing"

	"golang.org/x/net/bpf"
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
	synOpts := craft(t, frameSpec{src: v4c, dst: v4s, syn: true, ttl: 64, mss: 1460, ipOpts: true})
	syn6vlan := craft(t, frameSpec{v6: true, vlan: 9, src: v6c, dst: v6s, syn: true, ttl: 64, mss: 1440})
	rst := craft(t, frameSpec{src: v4s, dst: v4c, rst: true, ack: true, ttl: 64})
	ack := craft(t, frameSpec{src: v4c, dst: v4s, ack: true, ttl: 64})
	udp := craft(t, frameSpec{src: v4c, dst: v4s, udp: true, ttl: 64})
	rawSyn := craft(t, frameSpec{raw: true, src: v4c, dst: v4s, syn: true, ttl: 64, mss: 1460})
	rawSyn6 := craft(t, frameSpec{raw: true, v6: true, src: v6c, dst: v6s, syn: true, ttl: 64, mss: 1460})
	frag := append([]byte(nil), synOpts...)
	frag[14+7] = 0x10
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
		{"v4 syn with ip options", nil, pktHost, LinkEthernet, synOpts, hdrLen(14, 28, 32)},
		{"v6 syn vlan", nil, pktHost, LinkEthernet, syn6vlan, hdrLen(18, 40, 32)},
		{"rst outgoing", nil, pktOutgoing, LinkEthernet, rst, hdrLen(14, 20, 28)},
		{"payload trimmed", nil, pktHost, LinkEthernet, withPayload, hdrLen(14, 20, 28)},
		{"pure ack", nil, pktHost, LinkEthernet, ack, 0},
		{"udp", nil, pktHost, LinkEthernet, udp, 0},
		{"later fragment", nil, pktHost, LinkEthernet, frag, 0},
		{"loopback incoming", nil, pktHost, LinkLoopback, synOpts, hdrLen(14, 28, 32)},
		{"loopback outgoing copy", nil, pktOutgoing, LinkLoopback, synOpts, 0},
		{"raw ip tun", nil, pktHost, LinkNone, rawSyn, hdrLen(0, 20, 32)},
		{"raw ipv6", nil, pktOutgoing, LinkRawIP, rawSyn6, hdrLen(0, 40, 32)},
		{"ethernet frame on raw link", nil, pktHost, LinkNone, synOpts, 0},
		{"unknown link type", nil, pktHost, 24, synOpts, 0},
		{"truncated", nil, pktHost, LinkEthernet, synOpts[:40], 0},
		{"port dst match", []uint16{443, 8080}, pktHost, LinkEthernet, synOpts, hdrLen(14, 28, 32)},
		{"port src match (reply)", []uint16{8080}, pktOutgoing, LinkEthernet, rst, hdrLen(14, 20, 28)},
		{"port mismatch", []uint16{443}, pktHost, LinkEthernet, synOpts, 0},
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

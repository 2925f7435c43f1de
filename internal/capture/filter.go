package capture

import (
	"fmt"

	"golang.org/x/net/bpf"

	"github.com/synscope/synscope/internal/cbpf"
	"github.com/synscope/synscope/internal/packet"
)

// maxFilterPorts bounds how many ports are compiled into the kernel filter.
// Each port costs two instructions; with more, the kernel accepts every
// handshake and Go does the port filtering.
const maxFilterPorts = 64

// Values the filter compares ancillary loads against (linux/if_packet.h).
const (
	packetOutgoing = 4 // PACKET_OUTGOING
)

// Header values and sizes the filter walks.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8
	protoTCP      = 6
	ethHeaderLen  = 14
	vlanTagLen    = 4
	ipv6HeaderLen = 40
)

// handshakeFilter builds the classic BPF program that passes only TCP
// segments with SYN or RST set, over IPv4 or IPv6, on the link types the
// package doc lists, and returns as snap length exactly the bytes up to the
// end of the TCP header (options included). If ports is non-empty (and not
// longer than maxFilterPorts) a segment must also have one of them as its
// source or destination port.
//
// Register use: X holds the offset of the current header, A the value under
// test. Loads past the end of the packet make the kernel return 0 (drop).
func handshakeFilter(ports []uint16) ([]bpf.RawInstruction, error) {
	a := handshakeAsm(ports)
	raw, err := a.Assemble()
	if err != nil {
		return nil, fmt.Errorf("handshake filter: %w", err)
	}
	return raw, nil
}

// handshakeProgram is handshakeFilter before assembly (tests run it in
// x/net/bpf's VM).
func handshakeProgram(ports []uint16) ([]bpf.Instruction, error) {
	a := handshakeAsm(ports)
	return a.Program()
}

func handshakeAsm(ports []uint16) *cbpf.Asm {
	a := &cbpf.Asm{}
	// Loopback shows each packet leaving and arriving: keep the arrival.
	a.Emit(bpf.LoadExtension{Num: bpf.ExtType})
	a.JumpIf(bpf.JumpNotEqual, packetOutgoing, "link", "")
	a.Emit(bpf.LoadExtension{Num: bpf.ExtLinkLayerType})
	a.JumpIf(bpf.JumpEqual, uint32(packet.ARPHRDLoopback), "drop", "")

	a.Label("link")
	a.Emit(bpf.LoadExtension{Num: bpf.ExtLinkLayerType})
	a.JumpIf(bpf.JumpEqual, uint32(packet.ARPHRDEther), "eth", "")
	a.JumpIf(bpf.JumpEqual, uint32(packet.ARPHRDLoopback), "eth", "")
	a.JumpIf(bpf.JumpEqual, uint32(packet.ARPHRDNone), "raw", "")
	a.JumpIf(bpf.JumpEqual, uint32(packet.ARPHRDRawIP), "raw", "")
	a.JumpIf(bpf.JumpEqual, uint32(packet.ARPHRDTunnel), "raw", "")
	a.JumpIf(bpf.JumpEqual, uint32(packet.ARPHRDTunnel6), "raw", "")
	a.Jump("drop")

	a.Label("eth")
	a.Emit(bpf.LoadAbsolute{Off: 12, Size: 2})
	a.JumpIf(bpf.JumpEqual, etherTypeVLAN, "vlan", "")
	a.JumpIf(bpf.JumpEqual, etherTypeQinQ, "vlan", "")
	a.Emit(bpf.LoadConstant{Dst: bpf.RegX, Val: ethHeaderLen})
	a.Jump("ethertype")
	a.Label("vlan")
	a.Emit(bpf.LoadAbsolute{Off: 16, Size: 2})
	a.Emit(bpf.LoadConstant{Dst: bpf.RegX, Val: ethHeaderLen + vlanTagLen})
	a.Label("ethertype")
	a.JumpIf(bpf.JumpEqual, etherTypeIPv4, "ip4", "")
	a.JumpIf(bpf.JumpEqual, etherTypeIPv6, "ip6", "drop")

	a.Label("raw")
	a.Emit(bpf.LoadConstant{Dst: bpf.RegX, Val: 0})
	a.Emit(bpf.LoadAbsolute{Off: 0, Size: 1})
	a.Emit(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	a.JumpIf(bpf.JumpEqual, 4, "ip4", "")
	a.JumpIf(bpf.JumpEqual, 6, "ip6", "drop")

	a.Label("ip4")
	a.Emit(bpf.LoadIndirect{Off: 9, Size: 1}) // protocol
	a.JumpIf(bpf.JumpNotEqual, protoTCP, "drop", "")
	a.Emit(bpf.LoadIndirect{Off: 6, Size: 2}) // flags + fragment offset
	a.JumpIf(bpf.JumpBitsSet, 0x1fff, "drop", "")
	a.Emit(
		bpf.LoadIndirect{Off: 0, Size: 1}, // version + IHL
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
		bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.TAX{},
	)
	a.Jump("tcp")

	a.Label("ip6")
	a.Emit(bpf.LoadIndirect{Off: 6, Size: 1}) // next header
	a.JumpIf(bpf.JumpNotEqual, protoTCP, "drop", "")
	a.Emit(
		bpf.TXA{},
		bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: ipv6HeaderLen},
		bpf.TAX{},
	)

	a.Label("tcp")
	a.Emit(bpf.LoadIndirect{Off: 13, Size: 1})
	a.JumpIf(bpf.JumpBitsSet, uint32(packet.SYN|packet.RST), "", "drop")
	if len(ports) > 0 && len(ports) <= maxFilterPorts {
		for _, off := range []uint32{0, 2} {
			a.Emit(bpf.LoadIndirect{Off: off, Size: 2})
			for _, p := range ports {
				a.JumpIf(bpf.JumpEqual, uint32(p), "accept", "")
			}
		}
		a.Jump("drop")
	}

	a.Label("accept")
	a.Emit(
		bpf.LoadIndirect{Off: 12, Size: 1}, // data offset << 4
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 2},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x3c},
		bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.RetA{},
	)
	a.Label("drop")
	a.Emit(bpf.RetConstant{Val: 0})
	return a
}

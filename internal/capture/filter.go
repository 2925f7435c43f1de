package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// maxFilterPorts bounds how many ports are compiled into the kernel filter.
// Each port costs two instructions; with more, the kernel accepts every
// handshake and Go does the port filtering.
const maxFilterPorts = 64

// Values the filter compares ancillary loads against (linux/if_packet.h).
const (
	packetOutgoing = 4 // PACKET_OUTGOING
)

// asm is a tiny assembler with labels, because x/net/bpf wants relative
// skip counts and hand-counting them is how filters rot.
type asm struct {
	prog   []bpf.Instruction
	labels map[string]int
	fixups []fixup
}

type fixup struct {
	at            int
	ifTrue, ifFal string // for JumpIf; ifTrue alone for Jump
}

func newAsm() *asm { return &asm{labels: map[string]int{}} }

func (a *asm) emit(ins ...bpf.Instruction) { a.prog = append(a.prog, ins...) }

func (a *asm) label(name string) { a.labels[name] = len(a.prog) }

// jif emits a conditional jump; an empty label means "fall through".
func (a *asm) jif(cond bpf.JumpTest, val uint32, ifTrue, ifFalse string) {
	a.fixups = append(a.fixups, fixup{at: len(a.prog), ifTrue: ifTrue, ifFal: ifFalse})
	a.emit(bpf.JumpIf{Cond: cond, Val: val})
}

func (a *asm) jmp(to string) {
	a.fixups = append(a.fixups, fixup{at: len(a.prog), ifTrue: to})
	a.emit(bpf.Jump{})
}

func (a *asm) resolve() ([]bpf.Instruction, error) {
	skip := func(at int, name string) (int, error) {
		if name == "" {
			return 0, nil
		}
		to, ok := a.labels[name]
		if !ok {
			return 0, fmt.Errorf("bpf: undefined label %q", name)
		}
		d := to - at - 1
		if d < 0 {
			return 0, fmt.Errorf("bpf: backward jump to %q", name)
		}
		return d, nil
	}
	for _, f := range a.fixups {
		t, err := skip(f.at, f.ifTrue)
		if err != nil {
			return nil, err
		}
		switch ins := a.prog[f.at].(type) {
		case bpf.Jump:
			ins.Skip = uint32(t)
			a.prog[f.at] = ins
		case bpf.JumpIf:
			e, err := skip(f.at, f.ifFal)
			if err != nil {
				return nil, err
			}
			if t > 255 || e > 255 {
				return nil, fmt.Errorf("bpf: conditional jump too far (%d/%d)", t, e)
			}
			ins.SkipTrue, ins.SkipFalse = uint8(t), uint8(e)
			a.prog[f.at] = ins
		}
	}
	return a.prog, nil
}

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
	prog, err := handshakeProgram(ports)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("bpf: assembling handshake filter: %w", err)
	}
	return raw, nil
}

// handshakeProgram is handshakeFilter before assembly (tests run it in
// x/net/bpf's VM).
func handshakeProgram(ports []uint16) ([]bpf.Instruction, error) {
	a := newAsm()
	// Loopback shows each packet leaving and arriving: keep the arrival.
	a.emit(bpf.LoadExtension{Num: bpf.ExtType})
	a.jif(bpf.JumpNotEqual, packetOutgoing, "link", "")
	a.emit(bpf.LoadExtension{Num: bpf.ExtLinkLayerType})
	a.jif(bpf.JumpEqual, uint32(LinkLoopback), "drop", "")

	a.label("link")
	a.emit(bpf.LoadExtension{Num: bpf.ExtLinkLayerType})
	a.jif(bpf.JumpEqual, uint32(LinkEthernet), "eth", "")
	a.jif(bpf.JumpEqual, uint32(LinkLoopback), "eth", "")
	a.jif(bpf.JumpEqual, uint32(LinkNone), "raw", "")
	a.jif(bpf.JumpEqual, uint32(LinkRawIP), "raw", "")
	a.jif(bpf.JumpEqual, uint32(LinkTunnel), "raw", "")
	a.jif(bpf.JumpEqual, uint32(LinkTunnel6), "raw", "")
	a.jmp("drop")

	a.label("eth")
	a.emit(bpf.LoadAbsolute{Off: 12, Size: 2})
	a.jif(bpf.JumpEqual, etherTypeVLAN, "vlan", "")
	a.jif(bpf.JumpEqual, etherTypeQinQ, "vlan", "")
	a.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: ethHeaderLen})
	a.jmp("ethertype")
	a.label("vlan")
	a.emit(bpf.LoadAbsolute{Off: 16, Size: 2})
	a.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: ethHeaderLen + vlanTagLen})
	a.label("ethertype")
	a.jif(bpf.JumpEqual, etherTypeIPv4, "ip4", "")
	a.jif(bpf.JumpEqual, etherTypeIPv6, "ip6", "drop")

	a.label("raw")
	a.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: 0})
	a.emit(bpf.LoadAbsolute{Off: 0, Size: 1})
	a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	a.jif(bpf.JumpEqual, 4, "ip4", "")
	a.jif(bpf.JumpEqual, 6, "ip6", "drop")

	a.label("ip4")
	a.emit(bpf.LoadIndirect{Off: 9, Size: 1}) // protocol
	a.jif(bpf.JumpNotEqual, protoTCP, "drop", "")
	a.emit(bpf.LoadIndirect{Off: 6, Size: 2}) // flags + fragment offset
	a.jif(bpf.JumpBitsSet, 0x1fff, "drop", "")
	a.emit(
		bpf.LoadIndirect{Off: 0, Size: 1}, // version + IHL
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
		bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.TAX{},
	)
	a.jmp("tcp")

	a.label("ip6")
	a.emit(bpf.LoadIndirect{Off: 6, Size: 1}) // next header
	a.jif(bpf.JumpNotEqual, protoTCP, "drop", "")
	a.emit(
		bpf.TXA{},
		bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: ipv6HeaderLen},
		bpf.TAX{},
	)

	a.label("tcp")
	a.emit(bpf.LoadIndirect{Off: 13, Size: 1})
	a.jif(bpf.JumpBitsSet, uint32(FlagSYN|FlagRST), "", "drop")
	if len(ports) > 0 && len(ports) <= maxFilterPorts {
		for _, off := range []uint32{0, 2} {
			a.emit(bpf.LoadIndirect{Off: off, Size: 2})
			for _, p := range ports {
				a.jif(bpf.JumpEqual, uint32(p), "accept", "")
			}
		}
		a.jmp("drop")
	}

	a.label("accept")
	a.emit(
		bpf.LoadIndirect{Off: 12, Size: 1}, // data offset << 4
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 2},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x3c},
		bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.RetA{},
	)
	a.label("drop")
	a.emit(bpf.RetConstant{Val: 0})

	return a.resolve()
}

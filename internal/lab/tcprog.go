package lab

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// synackDropProg returns a sched_cls program returning TC_ACT_SHOT for
// Ethernet/IPv4 (no IP options) TCP segments with source port 8080 and
// SYN+ACK set, TC_ACT_OK for everything else. Written in asm so the lab
// needs no clang.
func synackDropProg() (*ebpf.Program, error) {
	const (
		skbData    = 76 // offsetof(struct __sk_buff, data)
		skbDataEnd = 80 // offsetof(struct __sk_buff, data_end)
		actOK      = 0
		actShot    = 2
	)
	// Little-endian loads of network-order fields.
	sport := int32(Port>>8 | (Port&0xff)<<8)
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, skbData, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, skbDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 48), // Ethernet 14 + IPv4 20 + TCP flags at 13
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half), // ethertype
		asm.JNE.Imm(asm.R5, 0x0008, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 14, asm.Byte), // version + IHL
		asm.JNE.Imm(asm.R5, 0x45, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 23, asm.Byte), // protocol
		asm.JNE.Imm(asm.R5, 6, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 34, asm.Half), // TCP source port
		asm.JNE.Imm(asm.R5, sport, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 47, asm.Byte), // TCP flags
		asm.And.Imm(asm.R5, 0x12),
		asm.JNE.Imm(asm.R5, 0x12, "pass"),
		asm.Mov.Imm(asm.R0, actShot),
		asm.Return(),
		asm.Mov.Imm(asm.R0, actOK).WithSymbol("pass"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "lab_synack_drop", Type: ebpf.SchedCLS, License: "GPL", Instructions: insns,
	})
	if err != nil {
		return nil, fmt.Errorf("loading tc program: %w", err)
	}
	return prog, nil
}

// synDropProg returns a program that gives verdict hit to Ethernet/IPv4
// (no IP options) TCP SYNs without ACK to port 8080 and miss to every
// other packet: an XDP program (xdp_md data/data_end at 0/4, XDP_DROP
// and XDP_PASS) or a tc one (__sk_buff data/data_end at 76/80,
// TC_ACT_SHOT and TC_ACT_OK).
func synDropProg(typ ebpf.ProgramType, name string) (*ebpf.Program, error) {
	var dataOff, endOff int16 = 76, 80
	var hit, miss int32 = 2, 0 // TC_ACT_SHOT, TC_ACT_OK
	if typ == ebpf.XDP {
		dataOff, endOff, hit, miss = 0, 4, 1, 2 // XDP_DROP, XDP_PASS
	}
	dport := int32(Port>>8 | (Port&0xff)<<8)
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, dataOff, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, endOff, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 48),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half), // ethertype
		asm.JNE.Imm(asm.R5, 0x0008, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 14, asm.Byte), // version + IHL
		asm.JNE.Imm(asm.R5, 0x45, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 23, asm.Byte), // protocol
		asm.JNE.Imm(asm.R5, 6, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 36, asm.Half), // TCP destination port
		asm.JNE.Imm(asm.R5, dport, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 47, asm.Byte), // TCP flags
		asm.And.Imm(asm.R5, 0x12),
		asm.JNE.Imm(asm.R5, 0x02, "pass"),
		asm.Mov.Imm(asm.R0, hit),
		asm.Return(),
		asm.Mov.Imm(asm.R0, miss).WithSymbol("pass"),
		asm.Return(),
	}
	return loadProg(typ, name, insns)
}

// constProg returns a program that returns ret for every packet.
func constProg(typ ebpf.ProgramType, name string, ret int32) (*ebpf.Program, error) {
	return loadProg(typ, name, asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()})
}

func loadProg(typ ebpf.ProgramType, name string, insns asm.Instructions) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: typ, License: "GPL", Instructions: insns})
	if err != nil {
		return nil, fmt.Errorf("loading %s program %s: %w", typ, name, err)
	}
	return prog, nil
}

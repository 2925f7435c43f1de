package cbpf

import (
	"strings"
	"testing"

	"golang.org/x/net/bpf"

	pt "github.com/synscope/synscope/internal/packet/packettest"
)

// tcpPortFilter is a small but real filter: IPv4 (raw, offset 0) TCP to
// port, accepting 96 bytes; everything else dropped. It uses every kind
// of jump: fall-through, both labels, and an unconditional jump.
func tcpPortFilter(port uint32) *Asm {
	a := &Asm{}
	a.Emit(bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	a.JumpIf(bpf.JumpEqual, 4, "", "drop")
	a.Emit(bpf.LoadAbsolute{Off: 9, Size: 1})
	a.JumpIf(bpf.JumpEqual, 6, "tcp", "drop")
	a.Label("tcp")
	a.Emit(bpf.LoadMemShift{Off: 0}, bpf.LoadIndirect{Off: 2, Size: 2})
	a.JumpIf(bpf.JumpNotEqual, port, "drop", "")
	a.Jump("accept")
	a.Emit(bpf.RetConstant{Val: 1}) // never reached: jumped over
	a.Label("accept")
	a.Emit(bpf.RetConstant{Val: 96})
	a.Label("drop")
	a.Emit(bpf.RetConstant{Val: 0})
	return a
}

// TestProgramRunsInVM assembles the filter and runs it in x/net/bpf's VM
// (an interpreter independent of the assembler) over crafted frames.
func TestProgramRunsInVM(t *testing.T) {
	prog, err := tcpPortFilter(8080).Program()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("VM rejects program: %v", err)
	}
	cases := []struct {
		name  string
		frame pt.Frame
		want  int
	}{
		{"tcp to the port", pt.Frame{Raw: true, Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64}, 96},
		{"tcp with ip options to the port", pt.Frame{Raw: true, IPOpts: true, Src: pt.V4C, Dst: pt.V4S, SYN: true, TTL: 64}, 96},
		{"tcp from the port", pt.Frame{Raw: true, Src: pt.V4S, Dst: pt.V4C, SYN: true, ACK: true, TTL: 64}, 0},
		{"udp to the port", pt.Frame{Raw: true, Src: pt.V4C, Dst: pt.V4S, UDP: true, TTL: 64}, 0},
		{"ipv6", pt.Frame{Raw: true, V6: true, Src: pt.V6C, Dst: pt.V6S, SYN: true, TTL: 64}, 0},
	}
	for _, c := range cases {
		n, err := vm.Run(pt.Craft(t, c.frame))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n != c.want {
			t.Errorf("%s: filter returned %d, want %d", c.name, n, c.want)
		}
	}
}

// TestSkips pins the skip counts of a hand-checked program.
func TestSkips(t *testing.T) {
	prog, err := tcpPortFilter(80).Program()
	if err != nil {
		t.Fatal(err)
	}
	want := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4, SkipTrue: 0, SkipFalse: 8},
		bpf.LoadAbsolute{Off: 9, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipTrue: 0, SkipFalse: 6},
		bpf.LoadMemShift{Off: 0},
		bpf.LoadIndirect{Off: 2, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 80, SkipTrue: 3, SkipFalse: 0},
		bpf.Jump{Skip: 1},
		bpf.RetConstant{Val: 1},
		bpf.RetConstant{Val: 96},
		bpf.RetConstant{Val: 0},
	}
	if len(prog) != len(want) {
		t.Fatalf("%d instructions, want %d: %v", len(prog), len(want), prog)
	}
	for i := range want {
		if prog[i] != want[i] {
			t.Errorf("instruction %d = %#v, want %#v", i, prog[i], want[i])
		}
	}
	raw, err := tcpPortFilter(80).Assemble()
	if err != nil || len(raw) != len(want) {
		t.Fatalf("Assemble: %d instructions, %v", len(raw), err)
	}
}

func TestErrors(t *testing.T) {
	undefined := &Asm{}
	undefined.JumpIf(bpf.JumpEqual, 1, "nowhere", "")
	backward := &Asm{}
	backward.Label("top")
	backward.Emit(bpf.LoadAbsolute{Off: 0, Size: 1})
	backward.Jump("top")
	self := &Asm{}
	self.Label("here")
	self.JumpIf(bpf.JumpEqual, 1, "", "here")
	twice := &Asm{}
	twice.Label("x")
	twice.Emit(bpf.RetConstant{})
	twice.Label("x")
	far := &Asm{}
	far.JumpIf(bpf.JumpEqual, 1, "end", "")
	for range 256 {
		far.Emit(bpf.TAX{})
	}
	far.Label("end")
	far.Emit(bpf.RetConstant{})
	for name, c := range map[string]struct {
		a    *Asm
		want string
	}{
		"undefined": {undefined, "undefined label"},
		"backward":  {backward, "backward"},
		"self":      {self, "backward"},
		"twice":     {twice, "defined twice"},
		"far":       {far, "too far"},
	} {
		if _, err := c.a.Program(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", name, err, c.want)
		}
	}
	// 255 instructions is the longest conditional jump.
	edge := &Asm{}
	edge.JumpIf(bpf.JumpEqual, 1, "end", "end")
	for range 255 {
		edge.Emit(bpf.TAX{})
	}
	edge.Label("end")
	edge.Emit(bpf.RetConstant{})
	if p, err := edge.Program(); err != nil || p[0].(bpf.JumpIf).SkipTrue != 255 {
		t.Errorf("255-instruction jump: %v", err)
	}
	// An unconditional jump may go further.
	long := &Asm{}
	long.Jump("end")
	for range 300 {
		long.Emit(bpf.TAX{})
	}
	long.Label("end")
	long.Emit(bpf.RetConstant{})
	if p, err := long.Program(); err != nil || p[0].(bpf.Jump).Skip != 300 {
		t.Errorf("long unconditional jump: %v", err)
	}
}

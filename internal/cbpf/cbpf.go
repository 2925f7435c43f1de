// Package cbpf is synscope's one classic-BPF assembler: programs for
// SO_ATTACH_FILTER (live capture's handshake filter, probe's answer
// filter) are written with named labels, and Program turns them into the
// relative skip counts golang.org/x/net/bpf wants, because counting them
// by hand is how filters rot. Only forward jumps exist in classic BPF; a
// backward or undefined target is an error, never a wrong program.
package cbpf

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Asm collects instructions and label references. The zero value is ready
// to use.
type Asm struct {
	prog   []bpf.Instruction
	labels map[string]int
	fixups []fixup
	err    error
}

type fixup struct {
	at            int
	ifTrue, ifNot string // "" = the next instruction
}

// Emit appends instructions.
func (a *Asm) Emit(ins ...bpf.Instruction) { a.prog = append(a.prog, ins...) }

// Label names the position of the next instruction.
func (a *Asm) Label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	if _, dup := a.labels[name]; dup && a.err == nil {
		a.err = fmt.Errorf("bpf: label %q defined twice", name)
	}
	a.labels[name] = len(a.prog)
}

// JumpIf compares A with val and goes to ifTrue or ifFalse; an empty label
// falls through to the next instruction.
func (a *Asm) JumpIf(cond bpf.JumpTest, val uint32, ifTrue, ifFalse string) {
	a.fixups = append(a.fixups, fixup{at: len(a.prog), ifTrue: ifTrue, ifNot: ifFalse})
	a.Emit(bpf.JumpIf{Cond: cond, Val: val})
}

// Jump goes to a label unconditionally.
func (a *Asm) Jump(to string) {
	a.fixups = append(a.fixups, fixup{at: len(a.prog), ifTrue: to})
	a.Emit(bpf.Jump{})
}

// Program resolves the labels and returns the instructions.
func (a *Asm) Program() ([]bpf.Instruction, error) {
	if a.err != nil {
		return nil, a.err
	}
	prog := append([]bpf.Instruction(nil), a.prog...)
	for _, f := range a.fixups {
		t, err := a.skip(f.at, f.ifTrue)
		if err != nil {
			return nil, err
		}
		switch ins := prog[f.at].(type) {
		case bpf.Jump:
			ins.Skip = t
			prog[f.at] = ins
		case bpf.JumpIf:
			e, err := a.skip(f.at, f.ifNot)
			if err != nil {
				return nil, err
			}
			if t > 255 || e > 255 {
				return nil, fmt.Errorf("bpf: conditional jump at %d too far (%d/%d)", f.at, t, e)
			}
			ins.SkipTrue, ins.SkipFalse = uint8(t), uint8(e)
			prog[f.at] = ins
		}
	}
	return prog, nil
}

func (a *Asm) skip(at int, name string) (uint32, error) {
	if name == "" {
		return 0, nil
	}
	to, ok := a.labels[name]
	if !ok {
		return 0, fmt.Errorf("bpf: undefined label %q", name)
	}
	if to <= at {
		return 0, fmt.Errorf("bpf: backward jump to %q", name)
	}
	return uint32(to - at - 1), nil
}

// Assemble resolves the labels and encodes the program for the kernel.
func (a *Asm) Assemble() ([]bpf.RawInstruction, error) {
	prog, err := a.Program()
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("bpf: assembling: %w", err)
	}
	return raw, nil
}

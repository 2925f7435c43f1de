package trace

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// FexitStatus is whether fexit programs can attach on this machine. The
// tracer never needs them: tracepoints carry every signal it uses. The
// probe is reported so an operator knows which kind of machine this is.
type FexitStatus struct {
	// State is "available", "not-permitted", "not-supported" or
	// "inconclusive".
	State string `json:"state"`
	// Target is the kernel function the probe attached to or tried last.
	Target string `json:"target,omitempty"`
	// Err is the kernel's refusal, empty when available.
	Err string `json:"error,omitempty"`
}

// fexitTargets are functions whose return value would add evidence about a
// SYN consumed inside tcp_conn_request; any one attaching answers the probe.
var fexitTargets = []string{"tcp_conn_request", "inet_csk_route_req"}

// ProbeFexit loads and attaches a do-nothing fexit program to find out
// whether fexit works here. It follows cilium/ebpf's contract: an error
// wrapping ebpf.ErrNotSupported means the kernel lacks the feature,
// os.ErrPermission (EPERM, as under lockdown or where trampolines are
// refused) means it is not permitted, anything else leaves it inconclusive.
func ProbeFexit() FexitStatus {
	var st FexitStatus
	for _, fn := range fexitTargets {
		st = probeFexit(fn)
		if st.State == "available" || st.State == "not-permitted" || st.State == "not-supported" {
			return st
		}
	}
	return st
}

func probeFexit(fn string) FexitStatus {
	st := FexitStatus{Target: fn}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "synscope_fexit",
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceFExit,
		AttachTo:     fn,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err == nil {
		var l link.Link
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
		if err == nil {
			_ = l.Close()
		}
		_ = prog.Close()
	}
	msg := ""
	if err != nil {
		// cilium/ebpf appends a MEMLOCK hint to any EPERM; since 5.11 BPF
		// memory is charged to the cgroup, so the hint only misleads.
		msg, _, _ = strings.Cut(err.Error(), " (MEMLOCK may be too low")
	}
	switch {
	case err == nil:
		st.State = "available"
	case errors.Is(err, ebpf.ErrNotSupported):
		st.State, st.Err = "not-supported", msg
	case errors.Is(err, os.ErrPermission):
		st.State, st.Err = "not-permitted", msg
	default:
		st.State, st.Err = "inconclusive", msg
	}
	return st
}

// String is the summary line's wording.
func (s FexitStatus) String() string {
	switch s.State {
	case "available":
		return fmt.Sprintf("available (attached to %s; not needed, tracepoints carry every signal)", s.Target)
	case "not-permitted":
		return "not permitted (EPERM) — using tracepoints only"
	case "not-supported":
		return "not supported by this kernel — using tracepoints only"
	case "":
		return "not probed"
	}
	return fmt.Sprintf("inconclusive (%s) — using tracepoints only", s.Err)
}

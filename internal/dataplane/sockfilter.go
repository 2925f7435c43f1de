package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// socketFilters reads the filter of every listener whose owner is known:
// a duplicate of the listener's descriptor (pidfd_getfd), SO_GET_FILTER
// on it, closed at once. A classic filter is run in the x/net/bpf VM over
// the synthesized SYN as tcp_filter gives it: from the TCP header on.
func socketFilters(in Input, probes []probe, inv *Inventory) []SocketFilter {
	out := []SocketFilter{}
	if in.Owners == nil {
		inv.NotChecked = append(inv.NotChecked, "socket filters: the listeners' owners were not read")
		return out
	}
	// One walk of each owner's descriptors, not one per listener: a
	// server can hold thousands of listeners. Bounded like the probes.
	const maxListeners = 256
	fds := map[int]map[uint32]int{}
	checked := 0
	for _, l := range in.Listeners {
		owners := in.Owners[l.Inode]
		if len(owners) == 0 {
			continue
		}
		if checked++; checked > maxListeners {
			inv.NotChecked = append(inv.NotChecked, fmt.Sprintf("socket filters of the listeners after the first %d", maxListeners))
			break
		}
		pr := owners[0]
		byInode, ok := fds[pr.PID]
		if !ok {
			byInode = socketFDs(in.ProcRoot, pr.PID)
			fds[pr.PID] = byInode
		}
		fdNum, ok := byInode[l.Inode]
		if !ok {
			inv.NotChecked = append(inv.NotChecked, fmt.Sprintf("socket filter of %s: pid %d no longer holds socket %d", l.Local, pr.PID, l.Inode))
			continue
		}
		insns, err := getFilter(pr.PID, fdNum)
		if err != nil {
			inv.NotChecked = append(inv.NotChecked, fmt.Sprintf("socket filter of %s (pid %d): %v", l.Local, pr.PID, err))
			continue
		}
		f := SocketFilter{Listener: l.Local, Inode: l.Inode, PID: pr.PID, Comm: pr.Comm, FD: fdNum, Kind: "cbpf"}
		switch {
		case insns == nil:
			continue // no filter
		case len(insns) == 0:
			f.Kind = "ebpf"
			f.NotTested = "an eBPF program (SO_ATTACH_BPF) whose instructions the kernel does not give back"
		default:
			f.Insns = len(insns)
			f.Tests, f.NotTested = runClassic(insns, probes, l.Local.Port())
		}
		out = append(out, f)
	}
	return out
}

// socketFDs maps the socket inodes pid holds to descriptor numbers.
func socketFDs(procRoot string, pid int) map[uint32]int {
	out := map[uint32]int{}
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range ents {
		t, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		num, ok := strings.CutPrefix(t, "socket:[")
		if num, ok = strings.CutSuffix(num, "]"); !ok {
			continue
		}
		inode, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			continue
		}
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out[uint32(inode)] = n
		}
	}
	return out
}

// getFilter returns the listener's classic filter, nil when it has none,
// and an empty non-nil slice for an eBPF filter (EACCES: no original
// program to copy out).
func getFilter(pid, fdNum int) ([]bpf.RawInstruction, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, fdNum, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_getfd: %w", err)
	}
	defer unix.Close(fd)
	// With length 0 the kernel answers the number of instructions.
	n, err := getsockoptFilter(fd, nil)
	switch {
	case errors.Is(err, unix.EACCES):
		return []bpf.RawInstruction{}, nil
	case err != nil:
		return nil, fmt.Errorf("SO_GET_FILTER: %w", err)
	case n == 0:
		return nil, nil
	}
	const maxInsns = 4096 // BPF_MAXINSNS
	if n > maxInsns {
		return nil, fmt.Errorf("SO_GET_FILTER: %d instructions", n)
	}
	buf := make([]byte, 8*n)
	if _, err := getsockoptFilter(fd, buf); err != nil {
		return nil, fmt.Errorf("SO_GET_FILTER: %w", err)
	}
	ne := binary.NativeEndian
	insns := make([]bpf.RawInstruction, n)
	for i := range insns {
		b := buf[8*i:]
		insns[i] = bpf.RawInstruction{Op: ne.Uint16(b), Jt: b[2], Jf: b[3], K: ne.Uint32(b[4:])}
	}
	return insns, nil
}

// getsockoptFilter calls SO_GET_FILTER, whose length is counted in
// instructions, not bytes.
func getsockoptFilter(fd int, buf []byte) (int, error) {
	l := uint32(len(buf) / 8)
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_GET_FILTER,
		uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return int(l), nil
}

// runClassic runs a classic filter over each probe's SYN to port. Loads
// at negative offsets (SKF_NET_OFF, SKF_LL_OFF) and ancillary data the VM
// does not model make the filter "not tested" rather than guessed.
func runClassic(raw []bpf.RawInstruction, probes []probe, port uint16) ([]TestRun, string) {
	for _, r := range raw {
		cls, mode := r.Op&0x07, r.Op&0xe0
		if (cls == 0x00 || cls == 0x01) && (mode == 0x20 || mode == 0x40) && r.K >= 0x80000000 { // LD/LDX ABS/IND, negative offset
			return nil, "reads the IP header or ancillary data (negative offsets), which the VM does not model"
		}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		return nil, "has instructions the VM does not know"
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		return nil, "VM refused it: " + err.Error()
	}
	var out []TestRun
	for _, pr := range probes {
		if pr.server.Port() != port {
			continue
		}
		tcp := tcpHeader(clientPort, port, synFlag)
		n, err := vm.Run(tcp)
		if err != nil {
			return nil, "VM: " + err.Error()
		}
		t := TestRun{Client: pr.client, Server: pr.server, Ret: uint32(n), Verdict: Pass, Action: fmt.Sprintf("accepts %d bytes", n)}
		if n == 0 {
			t.Verdict, t.Action = Drop, "returns 0 (drop)"
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, "no SYN to test it with"
	}
	return out, ""
}

package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/dataplane"
)

// Faults beside nftables: a legacy iptables rule, tc and XDP programs on
// the server's s0, a cgroup_skb program on the listener's own cgroup, and
// (listenerSpec.DropFilter) a socket filter on the listener. Programs are
// written in asm (tcprog.go); nothing needs clang.

// xtablesLegacyDrop returns a setup adding `-A INPUT -p tcp --dport 8080
// --syn -j DROP` with iptables-legacy or ip6tables-legacy (xtables, not
// nf_tables) in the server namespace.
func xtablesLegacyDrop(tool string) func(*lab) error {
	return func(l *lab) error {
		return l.srv.Do(func() error {
			out, err := exec.Command(tool, "-w", "-A", "INPUT", "-p", "tcp", "--dport", fmt.Sprint(Port), "--syn", "-j", "DROP").CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s (Debian package iptables): %v: %s", tool, err, out)
			}
			return nil
		})
	}
}

// tcIngress attaches prog as a direct-action cls_bpf filter, pref 1, on
// s0's clsact ingress.
func (l *lab) tcIngress(prog *ebpf.Program, name string) error {
	link, err := l.hs.LinkByName("s0")
	if err != nil {
		return fmt.Errorf("s0: %w", err)
	}
	idx := link.Attrs().Index
	q := &netlink.GenericQdisc{QdiscType: "clsact", QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	if err := l.hs.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("clsact on s0: %w", err)
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.HANDLE_MIN_INGRESS,
			Handle: 1, Priority: 1, Protocol: unix.ETH_P_ALL},
		Fd: prog.FD(), Name: name, DirectAction: true,
	}
	if err := l.hs.FilterAdd(f); err != nil {
		return fmt.Errorf("tc ingress filter on s0: %w", err)
	}
	return nil
}

// xdp attaches prog to s0 in driver (veth native) mode through netlink:
// the attachment outlives the program's descriptor.
func (l *lab) xdp(prog *ebpf.Program) error {
	return l.srv.Do(func() error {
		link, err := netlink.LinkByName("s0")
		if err != nil {
			return fmt.Errorf("s0: %w", err)
		}
		if err := netlink.LinkSetXdpFdWithFlags(link, prog.FD(), nl.XDP_FLAGS_DRV_MODE); err != nil {
			return fmt.Errorf("xdp on s0: %w", err)
		}
		return nil
	})
}

// cgroupDir is the lab's own cgroup v2 directory for the listener.
func cgroupDir(prefix string) (string, error) {
	mount, err := dataplane.Cgroup2Mount("/proc")
	if err != nil {
		return "", err
	}
	return filepath.Join(mount, "synscope-lab-"+prefix), nil
}

// listenerCgroup makes the lab's cgroup and attaches prog to its inet
// ingress (BPF_PROG_ATTACH with ALLOW_MULTI: held by the cgroup, not by
// a descriptor). The listener is then started inside it (clone3
// CLONE_INTO_CGROUP), so only the listener's sockets see the program.
func (l *lab) listenerCgroup(prog *ebpf.Program) error {
	dir, err := cgroupDir(l.prefix)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("lab cgroup: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lab cgroup: %w", err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: fd, Program: prog,
		Attach: ebpf.AttachCGroupInetIngress, Flags: unix.BPF_F_ALLOW_MULTI}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("cgroup_skb ingress on %s: %w", dir, err)
	}
	l.cgroupFD = fd
	return nil
}

// removeCgroup removes the lab's cgroup once its processes are gone (the
// programs attached to it go with it).
func removeCgroup(prefix string) error {
	dir, err := cgroupDir(prefix)
	if err != nil {
		return nil // no cgroup v2: the lab never made one
	}
	// A killed listener may take a moment to leave it (bounded: 2 s).
	for i := 0; ; i++ {
		err := unix.Rmdir(dir)
		switch {
		case err == nil || errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && i < 40:
			time.Sleep(50 * time.Millisecond)
			continue
		}
		return fmt.Errorf("lab down: removing %s: %w", dir, err)
	}
}

func withProg(p *ebpf.Program, err error, use func(*ebpf.Program) error) error {
	if err != nil {
		return err
	}
	defer p.Close()
	return use(p)
}

func setupTCIngressDrop(l *lab) error {
	p, err := synDropProg(ebpf.SchedCLS, "lab_syn_drop")
	return withProg(p, err, func(p *ebpf.Program) error { return l.tcIngress(p, "synscope_lab_syn_drop") })
}

func setupXDPDrop(l *lab) error {
	p, err := synDropProg(ebpf.XDP, "lab_xdp_drop")
	return withProg(p, err, l.xdp)
}

func setupCgroupDeny(l *lab) error {
	p, err := constProg(ebpf.CGroupSKB, "lab_cg_deny", 0)
	return withProg(p, err, l.listenerCgroup)
}

// setupInnocentPrograms attaches programs that pass every SYN: XDP and tc
// ingress on s0, cgroup_skb ingress around the listener, as an eBPF
// dataplane on a healthy node does.
func setupInnocentPrograms(l *lab) error {
	p, err := constProg(ebpf.XDP, "lab_xdp_pass", 2)
	if err := withProg(p, err, l.xdp); err != nil {
		return err
	}
	p, err = constProg(ebpf.SchedCLS, "lab_tc_pass", 0)
	if err := withProg(p, err, func(p *ebpf.Program) error { return l.tcIngress(p, "synscope_lab_tc_pass") }); err != nil {
		return err
	}
	p, err = constProg(ebpf.CGroupSKB, "lab_cg_allow", 1)
	return withProg(p, err, l.listenerCgroup)
}

package dataplane

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/firewall"
)

// Read inventories the programs and socket filters of the calling
// thread's namespace (call inside netns.Target.Do; cgroups and processes
// are read from in.ProcRoot) and tests each against SYNs for in's
// listeners. Parts that cannot be read land in NotChecked; Read fails
// only when it could read nothing at all.
func Read(in Input) (*Inventory, error) {
	if in.ProcRoot == "" {
		in.ProcRoot = "/proc"
	}
	inv := &Inventory{Programs: []Program{}, SocketFilters: []SocketFilter{}}
	probes := in.probes()
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("dataplane: list links: %w", err)
	}
	macs := map[int]net.HardwareAddr{}
	for _, l := range links {
		a := l.Attrs()
		macs[a.Index] = a.HardwareAddr
		if x := a.Xdp; x != nil && x.Attached {
			// With programs in several modes (XDP_ATTACHED_MULTI) the
			// kernel sends per-mode ids that the netlink library does
			// not decode: say so rather than list nothing.
			if x.AttachMode == 4 || x.ProgId == 0 {
				inv.NotChecked = append(inv.NotChecked, fmt.Sprintf("xdp on %s: programs attached in several modes, their ids not read", a.Name))
				continue
			}
			inv.Programs = append(inv.Programs, Program{Hook: HookXDP, Dev: a.Name, Ifindex: a.Index, Mode: xdpMode(x.AttachMode), ID: x.ProgId})
		}
	}
	fs, err := firewall.TCFilters()
	if err != nil {
		inv.NotChecked = append(inv.NotChecked, "tc filters: "+err.Error())
	}
	for _, f := range fs {
		if f.Kind != "bpf" {
			continue
		}
		hook := HookTCIngress
		if f.Direction == "egress" {
			hook = HookTCEgress
		}
		p := Program{Hook: hook, Dev: f.Dev, Ifindex: f.Ifindex, Pref: f.Priority, Handle: f.Handle,
			ID: uint32(f.ProgID), FilterName: f.ProgName, DirectAction: f.DirectAction}
		if !f.DirectAction {
			p.NotTested = "not direct-action: the verdict is the filter's tc actions, which are not read"
		}
		inv.Programs = append(inv.Programs, p)
	}
	inv.Programs = append(inv.Programs, tcx(links, inv)...)
	inv.Programs = append(inv.Programs, cgroupPrograms(in, inv)...)
	for i := range inv.Programs {
		p := &inv.Programs[i]
		test(p, probes, macs[p.Ifindex])
	}
	inv.SocketFilters = socketFilters(in, probes, inv)
	return inv, nil
}

func xdpMode(m uint32) string {
	switch m {
	case 1:
		return "driver"
	case 2:
		return "generic"
	case 3:
		return "offload"
	case 4:
		return "multi"
	}
	return fmt.Sprintf("mode %d", m)
}

// tcx lists programs attached with tcx links (6.6+); a kernel without tcx
// has none to list.
func tcx(links []netlink.Link, inv *Inventory) []Program {
	var out []Program
	for _, l := range links {
		for _, d := range []struct {
			hook string
			at   ebpf.AttachType
		}{{HookTCXIngress, ebpf.AttachTCXIngress}, {HookTCXEgress, ebpf.AttachTCXEgress}} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: d.at})
			if errors.Is(err, ebpf.ErrNotSupported) {
				return nil
			}
			if err != nil {
				inv.NotChecked = append(inv.NotChecked, fmt.Sprintf("%s on %s: %v", d.hook, l.Attrs().Name, err))
				continue
			}
			for _, ap := range res.Programs {
				p := Program{Hook: d.hook, Dev: l.Attrs().Name, Ifindex: l.Attrs().Index, ID: uint32(ap.ID), DirectAction: true}
				if lid, ok := ap.LinkID(); ok {
					p.LinkID = uint32(lid)
				}
				out = append(out, p)
			}
		}
	}
	return out
}

// cgroupPrograms lists the cgroup_skb programs on the cgroups (and their
// ancestors) of the processes owning the listeners.
func cgroupPrograms(in Input, inv *Inventory) []Program {
	if in.Owners == nil {
		inv.NotChecked = append(inv.NotChecked, "cgroup programs: the listeners' owners were not read")
		return nil
	}
	mount, err := Cgroup2Mount(in.ProcRoot)
	if err != nil {
		inv.NotChecked = append(inv.NotChecked, "cgroup programs: "+err.Error())
		return nil
	}
	paths := map[string]bool{}
	// One read of /proc/PID/cgroup per owner, not per listener: one
	// process can hold thousands of listeners.
	seen := map[int]bool{}
	for _, l := range in.Listeners {
		for _, pr := range in.Owners[l.Inode] {
			if seen[pr.PID] {
				continue
			}
			seen[pr.PID] = true
			cg, err := cgroupOf(in.ProcRoot, pr.PID)
			if err != nil {
				inv.NotChecked = append(inv.NotChecked, fmt.Sprintf("cgroup of pid %d: %v", pr.PID, err))
				continue
			}
			for p := cg; ; p = filepath.Dir(p) {
				paths[p] = true
				if p == "/" || p == "." {
					break
				}
			}
		}
	}
	var sorted []string
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	var out []Program
	for _, cg := range sorted {
		dir := filepath.Join(mount, cg)
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			inv.NotChecked = append(inv.NotChecked, fmt.Sprintf("cgroup %s: %v", cg, err))
			continue
		}
		for _, d := range []struct {
			hook string
			at   ebpf.AttachType
		}{{HookCgroupIn, ebpf.AttachCGroupInetIngress}, {HookCgroupEgress, ebpf.AttachCGroupInetEgress}} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: fd, Attach: d.at})
			if err != nil {
				inv.NotChecked = append(inv.NotChecked, fmt.Sprintf("%s on cgroup %s: %v", d.hook, cg, err))
				continue
			}
			for _, ap := range res.Programs {
				p := Program{Hook: d.hook, Cgroup: cg, Mount: mount, ID: uint32(ap.ID)}
				if lid, ok := ap.LinkID(); ok {
					p.LinkID = uint32(lid)
				}
				out = append(out, p)
			}
		}
		unix.Close(fd)
	}
	return out
}

// Cgroup2Mount finds where the cgroup v2 hierarchy is mounted (the
// unified one of a hybrid layout included) from mountinfo.
func Cgroup2Mount(procRoot string) (string, error) {
	f, err := os.Open(filepath.Join(procRoot, "self", "mountinfo"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		l := sc.Text()
		pre, post, ok := strings.Cut(l, " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(sf) >= 1 && sf[0] == "cgroup2" && pf[3] == "/" {
			return unescapeMount(pf[4]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no cgroup v2 hierarchy mounted")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupOf reads a process's cgroup v2 path ("0::/path").
func cgroupOf(procRoot string, pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, fmt.Sprint(pid), "cgroup"))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return filepath.Clean(p), nil
		}
	}
	return "", fmt.Errorf("pid %d has no cgroup v2 path", pid)
}

// test loads p's metadata and runs each probe through it with
// BPF_PROG_TEST_RUN: inbound SYNs for ingress hooks, SYN-ACKs for egress.
func test(p *Program, probes []probe, mac net.HardwareAddr) {
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(p.ID))
	if err != nil {
		if p.NotTested == "" {
			p.NotTested = fmt.Sprintf("program %d not readable: %v", p.ID, err)
		}
		return
	}
	defer prog.Close()
	if info, err := prog.Info(); err == nil {
		p.Name, p.Tag = info.Name, info.Tag
	}
	if p.NotTested != "" {
		return
	}
	if len(probes) == 0 {
		p.NotTested = "no listener to test it against"
		return
	}
	for _, pr := range probes {
		data := frame(pr.client, pr.server, !p.Ingress(), mac)
		ret, err := prog.Run(&ebpf.RunOptions{Data: data})
		if err != nil {
			p.Tests = nil
			p.NotTested = "test run refused: " + err.Error()
			return
		}
		t := TestRun{Client: pr.client, Server: pr.server, SYNACK: !p.Ingress(), Ret: ret}
		t.Verdict, t.Action = verdict(p.Hook, ret)
		p.Tests = append(p.Tests, t)
	}
}

// verdict reads a program's return value for its hook.
func verdict(hook string, ret uint32) (Verdict, string) {
	switch hook {
	case HookXDP:
		names := []string{"XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"}
		vs := []Verdict{Drop, Drop, Pass, Divert, Divert}
		if int(ret) < len(names) {
			return vs[ret], names[ret]
		}
		return Drop, fmt.Sprintf("XDP action %d (dropped as aborted)", ret)
	case HookCgroupIn, HookCgroupEgress:
		if ret&1 == 0 {
			return Drop, fmt.Sprintf("returns %d (deny)", ret)
		}
		return Pass, fmt.Sprintf("returns %d (allow)", ret)
	}
	switch int32(ret) {
	case -1:
		return Pass, "TC_ACT_UNSPEC"
	case 0:
		return Pass, "TC_ACT_OK"
	case 1:
		return Pass, "TC_ACT_RECLASSIFY"
	case 2:
		return Drop, "TC_ACT_SHOT"
	case 4:
		return Drop, "TC_ACT_STOLEN"
	case 7:
		return Divert, "TC_ACT_REDIRECT"
	}
	return Pass, fmt.Sprintf("tc action %d", int32(ret))
}

package dataplane

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/synscope/synscope/internal/sockets"
)

// Input is what Read tests the programs against.
type Input struct {
	Listeners []sockets.Socket
	// Owners maps listener inodes to the processes holding them (for the
	// cgroup and socket-filter checks); nil = not known.
	Owners map[uint32][]sockets.Proc
	// Peers are clients whose SYNs went unanswered or that the user named;
	// the synthesized SYNs come from them. Without any, from TestPeer.
	Peers []netip.Addr
	// Addrs are the namespace's local addresses, for wildcard listeners.
	Addrs []netip.Addr
	// ProcRoot is where the host's /proc is ("/proc" when empty).
	ProcRoot string
}

// TestPeer is the source of synthesized SYNs when no real peer is known:
// an address from the documentation ranges (RFC 5737, RFC 3849).
func TestPeer(v4 bool) netip.Addr {
	if v4 {
		return netip.AddrFrom4([4]byte{198, 51, 100, 7})
	}
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 7})
}

// Hook names where a program runs.
const (
	HookXDP          = "xdp"
	HookTCIngress    = "tc ingress"
	HookTCEgress     = "tc egress"
	HookTCXIngress   = "tcx ingress"
	HookTCXEgress    = "tcx egress"
	HookCgroupIn     = "cgroup_skb ingress"
	HookCgroupEgress = "cgroup_skb egress"
)

// Inventory is everything found. A nil slice was not read (the reason is
// in NotChecked); an empty one was read and holds nothing.
type Inventory struct {
	Programs      []Program      `json:"programs"`
	SocketFilters []SocketFilter `json:"socket_filters"`
	// NotChecked lists what could not be read or tested, with the reason.
	NotChecked []string `json:"not_checked,omitempty"`
}

// Program is one BPF program attached where a SYN or SYN-ACK passes.
type Program struct {
	Hook    string `json:"hook"`
	Dev     string `json:"dev,omitempty"`
	Ifindex int    `json:"ifindex,omitempty"`
	// Mode is the XDP attach mode (generic, driver, offload).
	Mode string `json:"mode,omitempty"`
	// Cgroup is the cgroup v2 path (relative to the mount) and Mount the
	// mount point, for cgroup programs.
	Cgroup string `json:"cgroup,omitempty"`
	Mount  string `json:"cgroup_mount,omitempty"`
	ID     uint32 `json:"id"`
	Name   string `json:"name"`
	Tag    string `json:"tag,omitempty"`
	// tc: the filter's preference, handle and name; DirectAction says the
	// program's return value is the verdict.
	Pref         uint16 `json:"pref,omitempty"`
	Handle       uint32 `json:"handle,omitempty"`
	FilterName   string `json:"filter_name,omitempty"`
	DirectAction bool   `json:"direct_action,omitempty"`
	// LinkID is the bpf_link holding the attachment, 0 = none (attached
	// by netlink or BPF_PROG_ATTACH).
	LinkID uint32 `json:"link_id,omitempty"`
	// Tests are the synthesized segments run through the program;
	// NotTested says why there are none.
	Tests     []TestRun `json:"tests,omitempty"`
	NotTested string    `json:"not_tested,omitempty"`
}

// Ingress reports whether the program sees inbound SYNs (else outbound
// SYN-ACKs).
func (p Program) Ingress() bool {
	return p.Hook == HookXDP || p.Hook == HookTCIngress || p.Hook == HookTCXIngress || p.Hook == HookCgroupIn
}

// Where names the attachment point for a human.
func (p Program) Where() string {
	switch {
	case p.Cgroup != "":
		return fmt.Sprintf("%s on cgroup %s", p.Hook, p.Cgroup)
	case p.Hook == HookXDP:
		return fmt.Sprintf("xdp (%s) on %s", p.Mode, p.Dev)
	case p.Pref != 0:
		return fmt.Sprintf("%s on %s pref %d", p.Hook, p.Dev, p.Pref)
	}
	return fmt.Sprintf("%s on %s", p.Hook, p.Dev)
}

// String is one inventory line.
func (p Program) String() string {
	s := fmt.Sprintf("%s: program %q id %d", p.Where(), p.Name, p.ID)
	if p.FilterName != "" && p.FilterName != p.Name {
		s += fmt.Sprintf(" (filter %q)", p.FilterName)
	}
	if p.LinkID != 0 {
		s += fmt.Sprintf(" link %d", p.LinkID)
	}
	if p.NotTested != "" {
		return s + "; not tested: " + p.NotTested
	}
	var vs []string
	for _, t := range p.Tests {
		vs = append(vs, t.String())
	}
	return s + "; " + strings.Join(vs, ", ")
}

// Dropped lists the tests whose segment the program dropped.
func (p Program) Dropped() []TestRun {
	var out []TestRun
	for _, t := range p.Tests {
		if t.Verdict == Drop {
			out = append(out, t)
		}
	}
	return out
}

// Verdict is what a program did with a synthesized segment.
type Verdict string

// Verdicts.
const (
	Pass   Verdict = "pass"
	Drop   Verdict = "drop"
	Divert Verdict = "divert" // redirected or sent back: not delivered here
)

// TestRun is one synthesized segment and the program's answer.
type TestRun struct {
	// Client and Server: the SYN goes Client -> Server, the SYN-ACK back.
	Client netip.Addr     `json:"client"`
	Server netip.AddrPort `json:"server"`
	SYNACK bool           `json:"synack,omitempty"`
	Ret    uint32         `json:"ret"`
	// Verdict and Action (the return value by name: XDP_DROP, TC_ACT_SHOT).
	Verdict Verdict `json:"verdict"`
	Action  string  `json:"action"`
}

func (t TestRun) String() string {
	if t.SYNACK {
		return fmt.Sprintf("SYN-ACK %s -> %s: %s", t.Server, t.Client, t.Action)
	}
	return fmt.Sprintf("SYN %s -> %s: %s", t.Client, t.Server, t.Action)
}

// SocketFilter is the filter on one listener.
type SocketFilter struct {
	Listener netip.AddrPort `json:"listener"`
	Inode    uint32         `json:"inode"`
	PID      int            `json:"pid"`
	Comm     string         `json:"comm"`
	FD       int            `json:"fd"`
	// Kind is "cbpf" (SO_ATTACH_FILTER, Insns instructions) or "ebpf"
	// (SO_ATTACH_BPF: present, its program not readable this way).
	Kind  string `json:"kind"`
	Insns int    `json:"insns,omitempty"`
	// Tests and NotTested as for programs: a classic filter runs in the
	// golang.org/x/net/bpf VM over the synthesized SYN's TCP header.
	Tests     []TestRun `json:"tests,omitempty"`
	NotTested string    `json:"not_tested,omitempty"`
}

func (f SocketFilter) String() string {
	s := fmt.Sprintf("socket filter on the listener %s (%s pid %d fd %d): %s", f.Listener, f.Comm, f.PID, f.FD, f.Kind)
	if f.Insns > 0 {
		s += fmt.Sprintf(", %d instructions", f.Insns)
	}
	if f.NotTested != "" {
		return s + "; not tested: " + f.NotTested
	}
	for _, t := range f.Tests {
		s += "; " + t.String()
	}
	return s
}

// Lines is the inventory, one line per item, for the report.
func (inv *Inventory) Lines() []string {
	var out []string
	for _, p := range inv.Programs {
		out = append(out, p.String())
	}
	for _, f := range inv.SocketFilters {
		out = append(out, f.String())
	}
	for _, n := range inv.NotChecked {
		out = append(out, "not checked: "+n)
	}
	return out
}

// probe is one (client, server) pair to test.
type probe struct {
	client netip.Addr
	server netip.AddrPort
}

// probes pairs every listener (each local address for a wildcard one)
// with the peers of its family, bounded.
func (in *Input) probes() []probe {
	const max = 16
	var out []probe
	seen := map[probe]bool{}
	add := func(c netip.Addr, s netip.AddrPort) {
		p := probe{c, s}
		if !seen[p] && len(out) < max {
			seen[p] = true
			out = append(out, p)
		}
	}
	peers := func(v4 bool) []netip.Addr {
		var ps []netip.Addr
		for _, a := range in.Peers {
			if a.Unmap().Is4() == v4 {
				ps = append(ps, a.Unmap())
			}
		}
		if len(ps) == 0 {
			return []netip.Addr{TestPeer(v4)}
		}
		return ps
	}
	for _, l := range in.Listeners {
		la := l.Local.Addr().Unmap()
		if la.IsLoopback() {
			continue
		}
		var locals []netip.Addr
		if la.IsUnspecified() {
			for _, a := range in.Addrs {
				a = a.Unmap()
				if a.IsLoopback() || a.IsLinkLocalUnicast() {
					continue
				}
				if a.Is4() == la.Is4() || (a.Is4() && l.Family == 10 /* AF_INET6 dual stack */) {
					locals = append(locals, a)
				}
			}
		} else {
			locals = []netip.Addr{la}
		}
		for _, a := range locals {
			for _, c := range peers(a.Is4()) {
				add(c, netip.AddrPortFrom(a, l.Local.Port()))
			}
		}
	}
	return out
}

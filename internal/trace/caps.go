package trace

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/synscope/synscope/internal/causes"
)

// State is a probe's answer, after cilium/ebpf's contract (features/doc.go):
// an error wrapping ebpf.ErrNotSupported means the kernel lacks the
// feature, EPERM means it is there but refused, anything else leaves the
// question open and is reported as such, never read as "no".
type State string

// The answers a probe can give.
const (
	Available    State = "available"
	NotSupported State = "not-supported"
	NotPermitted State = "not-permitted"
	Inconclusive State = "inconclusive"
)

// stateOf classifies a load or attach error.
func stateOf(err error) State {
	switch {
	case err == nil:
		return Available
	case errors.Is(err, ebpf.ErrNotSupported):
		return NotSupported
	case errors.Is(err, os.ErrPermission):
		return NotPermitted
	}
	return Inconclusive
}

// Capability is one thing trace can tell, and whether it can on this
// kernel. Only "SYN fate" is required; without any other capability trace
// runs and says which causes it cannot attribute.
type Capability struct {
	Name string `json:"name"`
	// Gives is what the capability lets trace say (causes, evidence).
	Gives string `json:"gives"`
	State State  `json:"state"`
	// Needs is the first Linux version with the kernel hook, when it is
	// newer than trace's own minimum (MinKernel).
	Needs string `json:"needs,omitempty"`
	// Via names the tracepoints (and the variant) in use, or tried.
	Via string `json:"via"`
	// Detail is the kernel's refusal or what is done instead.
	Detail string `json:"detail,omitempty"`
}

// String is the summary line: "TCP-AO/MD5 reject names: not supported
// (needs 6.7)".
func (c Capability) String() string {
	s := c.Name + ": "
	switch c.State {
	case Available:
		s += "available"
	case NotSupported:
		s += "not supported"
		if c.Needs != "" {
			s += " (needs " + c.Needs + ")"
		}
	case NotPermitted:
		s += "not permitted (EPERM)"
	default:
		s += "inconclusive"
	}
	if c.Detail != "" {
		s += " — " + c.Detail
	}
	return s
}

// MinKernel is the oldest kernel trace starts on: BPF ring buffers (5.8),
// tp_btf programs (5.5) and kernel BTF are needed. Below 5.17 kfree_skb has
// no drop reason and drops are named by their kernel site instead
// (capDropReason); tested from 5.10 on.
const MinKernel = "5.8"

// DropReasonKernel is the first kernel whose kfree_skb carries a drop reason.
const DropReasonKernel = "5.17"

// Capability names, as shown in the summary and --json.
const (
	capFate       = "SYN fate"
	capDropReason = "SYN drop reasons"
	capRoute4     = "IPv4 reply route lookup"
	capRoute6     = "IPv6 reply route lookup"
	capRetrans    = "SYN-ACK retransmits"
	capNeigh      = "neighbour resolution wait"
	capRST        = "TCP RST"
	capRSTReason  = "RST reason names"
	capCsum       = "TCP checksum reject name"
	capHash       = "TCP-AO/MD5 reject names"
	capConntrack  = "conntrack state at drop"
	capFreeLoc    = "free location of answered SYNs"
)

// variant is one BPF program for a tracepoint: it reads args arguments,
// so the kernel's tracepoint must have at least that many.
type variant struct {
	prog string
	args int
}

// slot is one kernel hook; variants are in order of preference.
type slot struct {
	tp       string
	variants []variant
	cap      string
}

// slots lists every program of bpf/synscope.c by hook.
var slots = []slot{
	{"netif_receive_skb", []variant{{"on_rx", 1}}, capFate},
	{"net_dev_queue", []variant{{"on_tx", 1}}, capFate},
	{"kfree_skb", []variant{{"on_kfree", 3}, {"on_kfree_noreason", 2}}, capFate},
	{"consume_skb", []variant{{"on_consume", 2}, {"on_consume_noloc", 1}}, capFate},
	{"fib_table_lookup", []variant{{"on_fib4", 4}}, capRoute4},
	{"fib6_table_lookup", []variant{{"on_fib6", 4}}, capRoute6},
	{"tcp_retransmit_synack", []variant{{"on_rtx_synack", 2}}, capRetrans},
	{"neigh_event_send_done", []variant{{"on_neigh_send", 2}}, capNeigh},
	{"tcp_send_reset", []variant{{"on_reset", 3}, {"on_reset_noreason", 2}}, capRST},
}

// rejectHooks are the programs of TCP's reject tracepoints, by the BPF
// side's R_* value (bpf/synscope.c): R_n hooks the catalog's n-th
// tcp-reject tracepoint, whose name and meaning the catalog owns
// (TestRejectEnumIsTheCatalogs checks the C enum against it).
var rejectHooks = [...]struct {
	prog string
	args int
	cap  string
}{
	1: {"on_bad_csum", 1, capCsum},
	2: {"on_md5_required", 2, capHash},
	3: {"on_md5_unexpected", 2, capHash},
	4: {"on_md5_mismatch", 2, capHash},
	5: {"on_ao_required", 2, capHash},
	6: {"on_hash_bad_header", 2, capHash},
	7: {"on_ao_handshake", 2, capHash},
}

// allSlots is slots plus one per catalog tcp-reject tracepoint.
func allSlots() []slot {
	out := append([]slot(nil), slots...)
	for i, tp := range causes.Tracepoints(causes.TCPReject) {
		if i+1 < len(rejectHooks) {
			h := rejectHooks[i+1]
			out = append(out, slot{tp.Name, []variant{{h.prog, h.args}}, h.cap})
		}
	}
	return out
}

// ids joins cause IDs for the capability texts.
func ids(list ...causes.ID) string {
	s := make([]string, len(list))
	for i, id := range list {
		s[i] = string(id)
	}
	return strings.Join(s, ", ")
}

// capInfo is what each capability gives and since when the kernel has it.
var capInfo = map[string]struct{ gives, needs string }{
	capFate:       {"every SYN's fate; drop reasons name " + ids(causes.FirewallDrop, causes.NoListener, causes.RPFilterDrop, causes.IPv6Disabled) + ", …", ""},
	capDropReason: {"the kernel's reason for each dropped SYN (" + ids(causes.FirewallDrop, causes.NoListener, causes.RPFilterDrop, causes.IPv6Disabled, causes.TCPReject, causes.BPFDrop) + ", …); without it the drop's kernel site (kfree_skb location through /proc/kallsyms) names what a site tells apart", DropReasonKernel},
	capRoute4:     {ids(causes.NoRouteToPeer) + " and " + ids(causes.SynQueueOverflow) + " ('last quarter') per IPv4 SYN", ""},
	capRoute6:     {ids(causes.NoRouteToPeer) + " and " + ids(causes.SynQueueOverflow) + " ('last quarter') per IPv6 SYN", ""},
	capRetrans:    {ids(causes.SynackUnanswered), ""},
	capNeigh:      {ids(causes.NeighborUnreachable), ""},
	capRST:        {"RSTs sent by TCP (" + ids(causes.NoListener) + "); without it RSTs are still seen leaving", ""},
	capRSTReason:  {"why TCP sent a RST (sk_rst_reason)", "6.10"},
	capCsum:       {ids(causes.TCPReject) + " evidence: bad checksum", "5.12"},
	capHash:       {ids(causes.TCPReject) + " evidence: which TCP-MD5/TCP-AO check refused the SYN", "6.7"},
	capConntrack:  {ids(causes.ConntrackInvalid) + " vs " + ids(causes.FirewallDrop) + " (skb->_nfct, CONFIG_NF_CONNTRACK)", ""},
	capFreeLoc:    {"the kernel address that consumed a SYN", "6.3"},
}

// capOrder is the order capabilities are reported in.
var capOrder = []string{capFate, capDropReason, capRoute4, capRoute6, capRetrans, capNeigh, capRST, capRSTReason, capCsum, capHash, capConntrack, capFreeLoc}

// KernelHooks answers what the running kernel's BTF says about hooks.
type KernelHooks interface {
	// TracepointArgs is the number of arguments of a raw tracepoint, and
	// false when the kernel has no such tracepoint.
	TracepointArgs(name string) (int, bool)
	// HasType reports whether a named type exists (enum sk_rst_reason).
	HasType(name string) bool
	// HasMember reports whether struct has a member (sk_buff._nfct).
	HasMember(strct, member string) bool
}

// btfHooks reads hooks from kernel BTF: a raw tracepoint NAME has the
// typedef btf_trace_NAME, a pointer to its prototype (void *ctx, args…).
type btfHooks struct{ spec *btf.Spec }

func (h btfHooks) TracepointArgs(name string) (int, bool) {
	var td *btf.Typedef
	if err := h.spec.TypeByName("btf_trace_"+name, &td); err != nil {
		return 0, false
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return 0, false
	}
	fp, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(fp.Params) == 0 {
		return 0, false
	}
	return len(fp.Params) - 1, true
}

func (h btfHooks) HasType(name string) bool {
	_, err := h.spec.AnyTypeByName(name)
	return err == nil
}

func (h btfHooks) HasMember(strct, member string) bool {
	var s *btf.Struct
	if err := h.spec.TypeByName(strct, &s); err != nil {
		return false
	}
	for _, m := range s.Members {
		if m.Name == member {
			return true
		}
	}
	return false
}

// choice is the plan for one slot: the variant to load, or why none.
type choice struct {
	slot
	prog   string // empty: nothing to load
	state  State  // NotSupported when prog is empty
	detail string
}

// plan picks, for every hook, the program variant this kernel's
// tracepoint prototype fits. The result is in slots order.
func plan(h KernelHooks) []choice {
	all := allSlots()
	out := make([]choice, 0, len(all))
	for _, s := range all {
		c := choice{slot: s}
		n, ok := h.TracepointArgs(s.tp)
		if !ok {
			c.state, c.detail = NotSupported, "no tracepoint "+s.tp
			out = append(out, c)
			continue
		}
		for _, v := range s.variants {
			if v.args <= n {
				// Available until loading or attaching says otherwise.
				c.prog, c.state = v.prog, Available
				break
			}
		}
		if c.prog == "" {
			c.state = NotSupported
			c.detail = fmt.Sprintf("tracepoint %s has %d arguments, %d needed", s.tp, n, s.variants[len(s.variants)-1].args)
		}
		out = append(out, c)
	}
	return out
}

// capabilities folds the per-hook results into the reported capabilities.
func capabilities(h KernelHooks, cs []choice) []Capability {
	byName := map[string]*Capability{}
	for _, name := range capOrder {
		byName[name] = &Capability{Name: name, Gives: capInfo[name].gives, Needs: capInfo[name].needs, State: Available}
	}
	// worse keeps the least available state: a capability is available
	// only when all its hooks are.
	rank := map[State]int{Available: 0, Inconclusive: 1, NotPermitted: 2, NotSupported: 3}
	worse := func(c *Capability, st State, detail string) {
		if rank[st] > rank[c.State] {
			c.State, c.Detail = st, detail
		} else if st != Available && rank[st] == rank[c.State] && c.Detail == "" {
			c.Detail = detail
		}
	}
	via := map[string][]string{}
	for _, c := range cs {
		cp := byName[c.cap]
		name := c.tp
		if c.prog != "" && c.prog != c.variants[0].prog {
			name += " (" + c.prog + ")"
		}
		via[c.cap] = append(via[c.cap], name)
		worse(cp, c.state, c.detail)
	}
	for name, v := range via {
		byName[name].Via = strings.Join(v, ", ")
	}
	// Derived capabilities: a variant without the argument, or a type.
	rst := byName[capRSTReason]
	rst.Via = "tcp_send_reset reason argument, enum sk_rst_reason"
	switch reset := findChoice(cs, "tcp_send_reset"); {
	case reset.prog == "on_reset" && reset.state == Available && h.HasType("sk_rst_reason"):
	case reset.prog == "on_reset" && reset.state != Available:
		rst.State, rst.Detail = reset.state, reset.detail
	default:
		rst.State, rst.Detail = NotSupported, "RSTs are reported without a reason"
	}
	dr := byName[capDropReason]
	dr.Via = "kfree_skb reason argument, enum skb_drop_reason"
	switch kf := findChoice(cs, "kfree_skb"); {
	case kf.prog == "on_kfree" && kf.state == Available && h.HasType("skb_drop_reason"):
	case kf.state != Available:
		dr.State, dr.Detail = kf.state, kf.detail
	default:
		dr.State, dr.Detail = NotSupported, "drops are named by their kernel site (kfree_skb location, /proc/kallsyms): "+ids(causes.FirewallDrop)+" at nf_hook_slow, "+ids(causes.NoListener)+" at tcp_v4_rcv/tcp_v6_rcv with a RST; other sites are reported with the causes they cannot tell apart"
	}
	loc := byName[capFreeLoc]
	loc.Via = "consume_skb location argument"
	if cons := findChoice(cs, "consume_skb"); cons.prog != "on_consume" || cons.state != Available {
		loc.State = NotSupported
		if cons.state != Available {
			loc.State, loc.Detail = cons.state, cons.detail
		}
	}
	ct := byName[capConntrack]
	ct.Via = "skb->_nfct at kfree_skb (CO-RE)"
	if !h.HasMember("sk_buff", "_nfct") {
		ct.State, ct.Detail = NotSupported, "kernel built without CONFIG_NF_CONNTRACK: conntrack drops read as "+ids(causes.FirewallDrop)
	}
	if k := findChoice(cs, "kfree_skb"); k.state != Available {
		worse(ct, k.state, k.detail)
	}
	if c := byName[capHash]; c.State == NotSupported {
		c.Detail = "TCP-MD5/AO rejects are still dropped with their drop reason, named " + ids(causes.TCPReject)
		if dr.State != Available {
			c.Detail = "without drop reasons TCP-MD5/AO rejects are reported by their drop site (tcp_v4_rcv), not named"
		}
	}
	if c := byName[capRST]; c.State == Available && findChoice(cs, "tcp_send_reset").prog == "on_reset_noreason" {
		c.Detail = "without reasons (tcp_send_reset before 6.10)"
	}
	out := make([]Capability, 0, len(capOrder))
	for _, name := range capOrder {
		out = append(out, *byName[name])
	}
	return out
}

func findChoice(cs []choice, tp string) choice {
	for _, c := range cs {
		if c.tp == tp {
			return c
		}
	}
	return choice{state: NotSupported}
}

// requiredMissing returns a one-line reason when a hook trace cannot work
// without is missing, "" otherwise.
func requiredMissing(cs []choice) string {
	for _, c := range cs {
		if c.cap != capFate || c.state == Available {
			continue
		}
		what := c.detail
		switch c.state {
		case NotPermitted:
			return fmt.Sprintf("tracepoint %s: not permitted (%s)", c.tp, what)
		case Inconclusive:
			return fmt.Sprintf("tracepoint %s: could not load (%s)", c.tp, what)
		}
		return fmt.Sprintf("needs %s: %s", c.tp, what)
	}
	return ""
}

package trace

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// fakeHooks is a kernel described by its tracepoint argument counts, as
// read from Debian's 6.1.0-57 and 6.12.117 BTF (btf_trace_* prototypes).
type fakeHooks struct {
	tps     map[string]int
	types   map[string]bool
	members map[string]bool
}

func (f fakeHooks) TracepointArgs(n string) (int, bool) { v, ok := f.tps[n]; return v, ok }
func (f fakeHooks) HasType(n string) bool               { return f.types[n] }
func (f fakeHooks) HasMember(s, m string) bool          { return f.members[s+"."+m] }

var kernel61 = fakeHooks{
	tps: map[string]int{"netif_receive_skb": 1, "net_dev_queue": 1, "fib_table_lookup": 4, "fib6_table_lookup": 4,
		"neigh_event_send_done": 2, "tcp_send_reset": 2, "tcp_bad_csum": 1, "consume_skb": 1, "kfree_skb": 3,
		"tcp_retransmit_synack": 2},
	types:   map[string]bool{"skb_drop_reason": true},
	members: map[string]bool{"sk_buff._nfct": true},
}

// kernel510 is Debian 11's 5.10.0-32 (btf_trace_* prototypes read in
// test/vm): kfree_skb without its reason, no enum skb_drop_reason, no
// TCP reject tracepoints.
var kernel510 = fakeHooks{
	tps: map[string]int{"netif_receive_skb": 1, "net_dev_queue": 1, "fib_table_lookup": 4, "fib6_table_lookup": 4,
		"neigh_event_send_done": 2, "tcp_send_reset": 2, "consume_skb": 1, "kfree_skb": 2,
		"tcp_retransmit_synack": 2},
	members: map[string]bool{"sk_buff._nfct": true},
}

var kernel612 = fakeHooks{
	tps: map[string]int{"netif_receive_skb": 1, "net_dev_queue": 1, "fib_table_lookup": 4, "fib6_table_lookup": 4,
		"neigh_event_send_done": 2, "tcp_send_reset": 3, "tcp_bad_csum": 1, "consume_skb": 2, "kfree_skb": 4,
		"tcp_retransmit_synack": 2, "tcp_hash_md5_required": 2, "tcp_hash_md5_unexpected": 2, "tcp_hash_md5_mismatch": 2,
		"tcp_hash_ao_required": 2, "tcp_hash_bad_header": 2, "tcp_ao_handshake_failure": 5},
	types:   map[string]bool{"sk_rst_reason": true, "skb_drop_reason": true},
	members: map[string]bool{"sk_buff._nfct": true},
}

func capMap(cs []Capability) map[string]Capability {
	m := map[string]Capability{}
	for _, c := range cs {
		m[c.Name] = c
	}
	return m
}

func TestPlanOn61(t *testing.T) {
	cs := plan(kernel61)
	if why := requiredMissing(cs); why != "" {
		t.Fatalf("6.1 must be able to run trace: %s", why)
	}
	progs := map[string]string{}
	for _, c := range cs {
		progs[c.tp] = c.prog
	}
	for tp, want := range map[string]string{
		"consume_skb": "on_consume_noloc", "tcp_send_reset": "on_reset_noreason", "kfree_skb": "on_kfree",
		"fib6_table_lookup": "on_fib6", "tcp_retransmit_synack": "on_rtx_synack", "tcp_ao_handshake_failure": "",
	} {
		if progs[tp] != want {
			t.Errorf("%s: program %q, want %q", tp, progs[tp], want)
		}
	}
	caps := capMap(capabilities(kernel61, cs))
	for name, want := range map[string]string{
		capFate: "SYN fate: available", capRoute6: "IPv6 reply route lookup: available",
		capHash:      "TCP-AO/MD5 reject names: not supported (needs 6.7)",
		capRSTReason: "RST reason names: not supported (needs 6.10)",
		capFreeLoc:   "free location of answered SYNs: not supported (needs 6.3)",
		capRST:       "TCP RST: available — without reasons",
		capRetrans:   "SYN-ACK retransmits: available",
		capConntrack: "conntrack state at drop: available",
	} {
		if got := caps[name].String(); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want prefix %q", name, got, want)
		}
	}
	if n := len(Missing(capabilities(kernel61, cs))); n != 3 {
		t.Errorf("6.1: %d capabilities missing, want 3", n)
	}
}

func TestPlanOn612(t *testing.T) {
	cs := plan(kernel612)
	for _, c := range cs {
		if c.prog != c.variants[0].prog {
			t.Errorf("%s: program %q, want the newest %q", c.tp, c.prog, c.variants[0].prog)
		}
	}
	if m := Missing(capabilities(kernel612, cs)); len(m) != 0 {
		t.Errorf("6.12: missing %v", m)
	}
}

// TestPlanOn510: below 5.17 kfree_skb has no reason; trace runs with the
// variant that takes its location, and says drop reasons are missing.
func TestPlanOn510(t *testing.T) {
	cs := plan(kernel510)
	if why := requiredMissing(cs); why != "" {
		t.Fatalf("5.10 must be able to run trace: %s", why)
	}
	if p := findChoice(cs, "kfree_skb").prog; p != "on_kfree_noreason" {
		t.Errorf("kfree_skb: program %q, want on_kfree_noreason", p)
	}
	caps := capMap(capabilities(kernel510, cs))
	for name, want := range map[string]string{
		capFate:       "SYN fate: available",
		capDropReason: "SYN drop reasons: not supported (needs 5.17) — drops are named by their kernel site",
		capCsum:       "TCP checksum reject name: not supported",
		capRoute6:     "IPv6 reply route lookup: available",
		capConntrack:  "conntrack state at drop: available",
	} {
		if got := caps[name].String(); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want prefix %q", name, got, want)
		}
	}
	// A 5.17+ kernel without the enum (impossible, but the plan must not
	// claim reasons it cannot name).
	k := kernel612
	if c := capMap(capabilities(fakeHooks{tps: k.tps}, plan(fakeHooks{tps: k.tps})))[capDropReason]; c.State == Available {
		t.Errorf("drop reasons available without enum skb_drop_reason: %s", c)
	}
}

// TestPlanBelowMinimum: a kernel whose kfree_skb lacks even its location
// cannot run trace, and the reason is one line naming the hook.
func TestPlanBelowMinimum(t *testing.T) {
	k := fakeHooks{tps: map[string]int{}}
	for n, v := range kernel61.tps {
		k.tps[n] = v
	}
	k.tps["kfree_skb"] = 1
	why := requiredMissing(plan(k))
	if !strings.Contains(why, "kfree_skb") || !strings.Contains(why, "2 needed") || strings.Contains(why, "\n") {
		t.Errorf("below the minimum: %q", why)
	}
	delete(k.tps, "netif_receive_skb")
	if why := requiredMissing(plan(k)); !strings.Contains(why, "netif_receive_skb") {
		t.Errorf("no netif_receive_skb: %q", why)
	}
}

// TestCapabilityStates: load and attach errors are read after cilium/ebpf's
// contract, and a refused optional hook is reported, not fatal.
func TestCapabilityStates(t *testing.T) {
	for err, want := range map[error]State{
		nil: Available,
		fmt.Errorf("attach: %w", ebpf.ErrNotSupported):     NotSupported,
		fmt.Errorf("load: %w", os.ErrPermission):           NotPermitted,
		errors.New("verifier: invalid bpf_context access"): Inconclusive,
	} {
		if got := stateOf(err); got != want {
			t.Errorf("stateOf(%v) = %s, want %s", err, got, want)
		}
	}
	cs := plan(kernel612)
	for i := range cs {
		switch cs[i].tp {
		case "tcp_retransmit_synack":
			cs[i].state, cs[i].detail = NotPermitted, "attach on_rtx_synack: operation not permitted"
		case "tcp_hash_bad_header":
			cs[i].state, cs[i].detail = Inconclusive, "load on_hash_bad_header: invalid argument"
		}
	}
	if why := requiredMissing(cs); why != "" {
		t.Fatalf("optional hooks made trace fail: %s", why)
	}
	caps := capMap(capabilities(kernel612, cs))
	if c := caps[capRetrans]; c.State != NotPermitted || !strings.Contains(c.String(), "not permitted") {
		t.Errorf("retransmits: %+v", c)
	}
	if c := caps[capHash]; c.State != Inconclusive || !strings.Contains(c.Detail, "invalid argument") {
		t.Errorf("hash: %+v", c)
	}
	cs[0].state, cs[0].detail = NotPermitted, "attach on_rx: operation not permitted"
	if why := requiredMissing(cs); !strings.Contains(why, "netif_receive_skb") || !strings.Contains(why, "not permitted") {
		t.Errorf("required hook refused: %q", why)
	}
}

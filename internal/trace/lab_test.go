package trace

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/netns"
)

// labCase is what trace must say about the real client's SYNs in a lab
// scenario. The cause is the scenario's (lab.Scenarios' Expect), the same
// for every mode; notPerSYN marks, with the reason, a scenario whose cause
// trace cannot attribute to the client's SYNs: those are then asserted to
// complete with no cause, so a change in what trace sees fails here.
type labCase struct {
	scenario  string
	fate      Fate
	notPerSYN string
	// watch is how long to trace; pending the engine's final-ACK wait.
	watch, pending time.Duration
	// alsoOK are fates (with no cause) the scenario may legitimately give.
	alsoOK []Fate
	// spoofed: the fault hits the lab's spoofed SYN sources, not the real
	// client (which the kernel treats as a proven peer); at least one of
	// their SYNs must show the fate and cause.
	spoofed bool
	// evidence, when set, must appear in the evidence of the matching
	// outcomes (the kernel signal that decided them).
	evidence string
	// noEvidence, when set, must not appear in any of the client's
	// outcomes.
	noEvidence string
	// evidenceCap is the tracer capability evidence comes from; on a
	// kernel without it (Capability not available) evidenceElse must
	// appear instead, and the test says so.
	evidenceCap, evidenceElse string
	// unseen, when set, says why trace sees none of the client's SYNs (a
	// drop before the stack makes an skb): then it must report none.
	unseen string
}

var labCases = []labCase{
	{scenario: "healthy", fate: Established, noEvidence: "syncookie"},
	{scenario: "healthy-v6", fate: Established},
	{scenario: "missing-default-route-v4", fate: Dropped},
	{scenario: "missing-default-route-v6", fate: Dropped},
	{scenario: "policy-rule-no-route", fate: Dropped},
	{scenario: "fwmark-no-route", fate: Dropped},
	{scenario: "unreachable-route-v4", fate: Dropped},
	{scenario: "unreachable-route-v6", fate: Dropped},
	{scenario: "blackhole-route-v4", fate: Dropped},
	{scenario: "blackhole-route-v6", fate: Dropped},
	{scenario: "prohibit-route-v4", fate: Dropped},
	{scenario: "prohibit-route-v6", fate: Dropped},
	{scenario: "accept-queue-overflow", fate: Dropped},
	{scenario: "firewall-drop-syn", fate: Dropped, noEvidence: "ct state invalid"},
	{scenario: "firewall-drop-synack", fate: Dropped},
	{scenario: "firewall-reject", fate: Refused, evidence: "netfilter reject"},
	{scenario: "rp-filter-strict", fate: Dropped},
	{scenario: "synack-egress-drop", fate: Dropped},
	{scenario: "no-listener", fate: Refused},
	{scenario: "listener-wrong-address", fate: Refused},
	{scenario: "listener-bound-device", fate: Refused},
	{scenario: "neighbor-unreachable-v4", fate: Dropped, watch: 6 * time.Second, pending: 5 * time.Second},
	// IPv6 route selection skips a gateway whose neighbour FAILED and falls
	// back to the default route, so some v6 handshakes do complete.
	{scenario: "neighbor-unreachable-v6", fate: Dropped, watch: 6 * time.Second, pending: 5 * time.Second, alsoOK: []Fate{Established}},
	{scenario: "synack-unanswered", fate: SynAckRetransmitted, watch: 5 * time.Second, pending: 1500 * time.Millisecond},
	{scenario: "ipv6-disabled", fate: Dropped},
	{scenario: "tcp-minttl", fate: Dropped},
	{scenario: "tcp-md5-mismatch", fate: Dropped, evidence: "tcp_hash_md5_required", evidenceCap: capHash, evidenceElse: "kfree_skb reason TCP_MD5NOTFOUND"},
	{scenario: "syn-queue-overflow", fate: Dropped, alsoOK: []Fate{Established}},
	{scenario: "syn-backlog-last-quarter", fate: Dropped, spoofed: true},
	{scenario: "syn-flood-cookies", fate: Established, evidence: "syncookie"},
	{scenario: "default-route-at-risk", fate: Established, notPerSYN: "the route still works, so every SYN completes; the risk is configuration doctor and watch read"},
	{scenario: "backlog-capped", fate: Established, notPerSYN: "the backlog is capped at listen() time; every SYN in the scenario completes, so only doctor's sysctl and socket reading names it"},
	// Each PAWS round first completes a connection the server then closes;
	// only the later SYN on the same 4-tuple is rejected.
	{scenario: "paws-reject", fate: Dropped, alsoOK: []Fate{Established}, evidence: "TCP_RFC7323_TW_PAWS"},
	{scenario: "healthy-under-load", fate: Established, noEvidence: "syncookie"},
	{scenario: "conntrack-invalid", fate: Dropped, evidence: "INVALID"},
	{scenario: "iptables-legacy-drop-syn", fate: Dropped, evidence: "NETFILTER_DROP", evidenceCap: capDropReason, evidenceElse: "nf_hook_slow"},
	{scenario: "ip6tables-legacy-drop-syn", fate: Dropped, evidence: "NETFILTER_DROP", evidenceCap: capDropReason, evidenceElse: "nf_hook_slow"},
	{scenario: "tc-ingress-drop-syn", fate: Dropped, evidence: "TC_INGRESS"},
	{scenario: "socket-filter-drop", fate: Dropped, evidence: "SOCKET_FILTER"},
	{scenario: "cgroup-skb-drop", fate: Dropped, evidence: "SOCKET_FILTER"},
	{scenario: "xdp-drop-syn", fate: Dropped, unseen: "XDP drops the SYN in the veth driver before any tracepoint trace uses fires; doctor names the program instead"},
	{scenario: "healthy-bpf-pass", fate: Established},
}

// TestLabCasesCoverScenarios: every lab scenario has a trace case and
// every case a scenario, so a renamed or new scenario fails here instead of
// being skipped.
func TestLabCasesCoverScenarios(t *testing.T) {
	have := map[string]bool{}
	for _, c := range labCases {
		if _, err := lab.Lookup(c.scenario); err != nil {
			t.Errorf("trace case %q: %v", c.scenario, err)
		}
		have[c.scenario] = true
	}
	for _, s := range lab.Scenarios() {
		if !have[s.Name] {
			t.Errorf("lab scenario %q has no trace case", s.Name)
		}
	}
}

// TestIntegrationLab brings up each lab scenario, traces the server
// namespace while the lab's background client connects, and asserts the
// fate and cause of the real client's SYNs.
func TestIntegrationLab(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("lab integration tests are slow; run without -short")
	}
	for i, c := range labCases {
		t.Run(c.scenario, func(t *testing.T) {
			runLabCase(t, fmt.Sprintf("tr%d-%d", os.Getpid()%10000, i), c)
		})
	}
}

func runLabCase(t *testing.T, prefix string, c labCase) {
	sc, err := lab.Lookup(c.scenario)
	if err != nil {
		t.Fatal(err)
	}
	// Kernel limits live in one place (lab.KernelLimits), shared with
	// doctor's tests and docs/kernels.md's kernel table.
	why, err := lab.NotApplicable(c.scenario, "trace")
	if err != nil {
		t.Fatal(err)
	}
	if why != "" {
		t.Skipf("not applicable on %s: %s", kernelRelease(), why)
	}
	cause := sc.Expect
	if c.notPerSYN != "" {
		cause = ""
	}
	if c.evidenceCap != "" {
		if cp := plannedCapability(t, c.evidenceCap); cp.State != Available {
			t.Logf("evidence %q needs %s; checking %q instead", c.evidence, cp, c.evidenceElse)
			c.evidence = c.evidenceElse
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env, err := lab.Up(ctx, c.scenario, lab.Options{Prefix: prefix})
	if err != nil {
		t.Fatalf("lab up %s: %v", c.scenario, err)
	}
	t.Cleanup(func() {
		if err := lab.Down(prefix); err != nil {
			t.Errorf("lab down %s: %v", prefix, err)
		}
	})
	srv, err := netns.Open(env.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	watch, pending := c.watch, c.pending
	if watch == 0 {
		watch = 3 * time.Second
	}
	if pending == 0 {
		pending = time.Second
	}
	s := startSession(t, Options{Netns: uint32(srv.Inode), Ports: []uint16{env.Port}}, pending)
	time.Sleep(watch)
	outs := s.finish()

	client := env.ClientV4
	if env.Family == 6 {
		client = env.ClientV6
	}
	if c.spoofed {
		n := 0
		for _, o := range outs {
			if o.ClientAddr().Addr() != client && o.Fate == c.fate && o.Cause == cause {
				n++
			}
		}
		shown := 0
		for _, o := range outs {
			if o.ClientAddr().Addr() != client && shown < 6 {
				shown++
				t.Logf("%s -> %s %s %q %v", o.Client, o.Server, o.Fate, o.Cause, o.Evidence)
			}
		}
		t.Logf("%s: %d of %d outcomes from spoofed sources are %s %s", c.scenario, n, len(outs), c.fate, cause)
		if n == 0 {
			t.Errorf("%s: no spoofed SYN reported %s %q", c.scenario, c.fate, cause)
		}
		return
	}
	var mine, ok int
	for _, o := range outs {
		if o.ClientAddr().Addr() != client || o.Incomplete {
			continue
		}
		if c.noEvidence != "" && slices.ContainsFunc(o.Evidence, func(e string) bool { return strings.Contains(e, c.noEvidence) }) {
			t.Errorf("%s: outcome %s %s has evidence %q: %v", c.scenario, o.Fate, o.Cause, c.noEvidence, o.Evidence)
		}
		if o.Cause == "" && slices.Contains(c.alsoOK, o.Fate) {
			continue
		}
		mine++
		if o.Fate == c.fate && o.Cause == cause {
			if c.evidence != "" && !slices.ContainsFunc(o.Evidence, func(e string) bool { return strings.Contains(e, c.evidence) }) {
				t.Errorf("%s: outcome %s %s lacks evidence %q: %v", c.scenario, o.Fate, o.Cause, c.evidence, o.Evidence)
			}
			ok++
			continue
		}
		t.Logf("other outcome: %s -> %s %s %q %v", o.Client, o.Server, o.Fate, o.Cause, o.Evidence)
	}
	if c.unseen != "" {
		if mine != 0 {
			t.Errorf("%s: %d outcomes for the lab client, want none (%s)", c.scenario, mine, c.unseen)
		}
		return
	}
	if mine == 0 {
		t.Fatalf("no outcome for the lab client %s in %s (all: %d)", client, watch, len(outs))
	}
	t.Logf("%s: %d/%d of the client's SYNs %s %s", c.scenario, ok, mine, c.fate, cause)
	// Connections already in flight when tracing starts, or still pending
	// when it stops, may legitimately read otherwise; the bulk must match.
	if ok*10 < mine*8 {
		t.Errorf("%s: only %d of %d outcomes are %s %q", c.scenario, ok, mine, c.fate, cause)
	}
}

// plannedCapability is what the loader's plan says about a capability on
// the running kernel (its hooks' prototypes in kernel BTF).
func plannedCapability(t *testing.T, name string) Capability {
	t.Helper()
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	h := btfHooks{spec}
	for _, c := range capabilities(h, plan(h)) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no capability %q", name)
	return Capability{}
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "this kernel"
	}
	return unix.ByteSliceToString(u.Release[:])
}

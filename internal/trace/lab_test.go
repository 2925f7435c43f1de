package trace

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/netns"
)

// labCase is what trace must say about the real client's SYNs in a lab
// scenario.
type labCase struct {
	scenario string
	fate     Fate
	cause    causes.ID
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
}

var labCases = []labCase{
	{scenario: "healthy", fate: Established, noEvidence: "syncookie"},
	{scenario: "healthy-v6", fate: Established},
	{scenario: "missing-default-route-v4", fate: Dropped, cause: causes.NoRouteToPeer},
	{scenario: "missing-default-route-v6", fate: Dropped, cause: causes.NoRouteToPeer},
	{scenario: "policy-rule-no-route", fate: Dropped, cause: causes.NoRouteToPeer},
	{scenario: "fwmark-no-route", fate: Dropped, cause: causes.NoRouteToPeer},
	{scenario: "unreachable-route-v4", fate: Dropped, cause: causes.NoRouteToPeer},
	{scenario: "unreachable-route-v6", fate: Dropped, cause: causes.NoRouteToPeer},
	{scenario: "blackhole-route-v4", fate: Dropped, cause: causes.NoRouteToPeer},
	{scenario: "blackhole-route-v6", fate: Dropped, cause: causes.NoRouteToPeer},
	{scenario: "prohibit-route-v4", fate: Dropped, cause: causes.NoRouteToPeer},
	{scenario: "prohibit-route-v6", fate: Dropped, cause: causes.NoRouteToPeer},
	{scenario: "accept-queue-overflow", fate: Dropped, cause: causes.AcceptQueueOverflow},
	{scenario: "firewall-drop-syn", fate: Dropped, cause: causes.FirewallDrop, noEvidence: "ct state invalid"},
	{scenario: "firewall-drop-synack", fate: Dropped, cause: causes.FirewallDrop},
	{scenario: "firewall-reject", fate: Refused, cause: causes.FirewallDrop, evidence: "netfilter reject"},
	{scenario: "rp-filter-strict", fate: Dropped, cause: causes.RPFilterDrop},
	{scenario: "synack-egress-drop", fate: Dropped, cause: causes.SynackEgressDrop},
	{scenario: "no-listener", fate: Refused, cause: causes.NoListener},
	{scenario: "listener-wrong-address", fate: Refused, cause: causes.NoListener},
	{scenario: "listener-bound-device", fate: Refused, cause: causes.NoListener},
	{scenario: "neighbor-unreachable-v4", fate: Dropped, cause: causes.NeighborUnreachable, watch: 6 * time.Second, pending: 5 * time.Second},
	// IPv6 route selection skips a gateway whose neighbour FAILED and falls
	// back to the default route, so some v6 handshakes do complete.
	{scenario: "neighbor-unreachable-v6", fate: Dropped, cause: causes.NeighborUnreachable, watch: 6 * time.Second, pending: 5 * time.Second, alsoOK: []Fate{Established}},
	{scenario: "synack-unanswered", fate: SynAckRetransmitted, cause: causes.SynackUnanswered, watch: 5 * time.Second, pending: 1500 * time.Millisecond},
	{scenario: "ipv6-disabled", fate: Dropped, cause: causes.IPv6Disabled},
	{scenario: "tcp-minttl", fate: Dropped, cause: causes.TCPReject},
	{scenario: "tcp-md5-mismatch", fate: Dropped, cause: causes.TCPReject, evidence: "tcp_hash_md5_required"},
	{scenario: "syn-queue-overflow", fate: Dropped, cause: causes.SynQueueOverflow, alsoOK: []Fate{Established}},
	{scenario: "syn-backlog-last-quarter", fate: Dropped, cause: causes.UnexplainedDrops, spoofed: true},
	{scenario: "syn-flood-cookies", fate: Established, evidence: "syncookie"},
	{scenario: "healthy-under-load", fate: Established, noEvidence: "syncookie"},
	{scenario: "conntrack-invalid", fate: Dropped, cause: causes.ConntrackInvalid, evidence: "INVALID"},
}

func labScenarioExists(name string) bool {
	for _, s := range lab.Scenarios() {
		if s.Name == name {
			return true
		}
	}
	return false
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
			if !labScenarioExists(c.scenario) {
				t.Skipf("lab has no scenario %q yet", c.scenario)
			}
			runLabCase(t, fmt.Sprintf("tr%d-%d", os.Getpid()%10000, i), c)
		})
	}
}

func runLabCase(t *testing.T, prefix string, c labCase) {
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
			if o.ClientAddr().Addr() != client && o.Fate == c.fate && o.Cause == c.cause {
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
		t.Logf("%s: %d of %d outcomes from spoofed sources are %s %s", c.scenario, n, len(outs), c.fate, c.cause)
		if n == 0 {
			t.Errorf("%s: no spoofed SYN reported %s %q", c.scenario, c.fate, c.cause)
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
		if o.Fate == c.fate && o.Cause == c.cause {
			if c.evidence != "" && !slices.ContainsFunc(o.Evidence, func(e string) bool { return strings.Contains(e, c.evidence) }) {
				t.Errorf("%s: outcome %s %s lacks evidence %q: %v", c.scenario, o.Fate, o.Cause, c.evidence, o.Evidence)
			}
			ok++
			continue
		}
		t.Logf("other outcome: %s -> %s %s %q %v", o.Client, o.Server, o.Fate, o.Cause, o.Evidence)
	}
	if mine == 0 {
		t.Fatalf("no outcome for the lab client %s in %s (all: %d)", client, watch, len(outs))
	}
	t.Logf("%s: %d/%d of the client's SYNs %s %s", c.scenario, ok, mine, c.fate, c.cause)
	// Connections already in flight when tracing starts, or still pending
	// when it stops, may legitimately read otherwise; the bulk must match.
	if ok*10 < mine*8 {
		t.Errorf("%s: only %d of %d outcomes are %s %q", c.scenario, ok, mine, c.fate, c.cause)
	}
}

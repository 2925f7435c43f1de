package doctor

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/counters"
)

// countedCauses are the causes the catalog attributes counter deltas to.
func countedCauses() []causes.ID {
	var out []causes.ID
	for _, c := range causes.All() {
		if len(c.DropCounters) > 0 {
			out = append(out, c.ID)
		}
	}
	return out
}

// perCause sums doctor's findings' drops by cause.
func perCause(e *Evidence) map[causes.ID]int64 {
	out := map[causes.ID]int64{}
	for _, f := range Diagnose(e) {
		out[f.Cause] += f.Drops
	}
	return out
}

// sameAttribution fails when doctor's per-cause drops differ from the
// catalog's attribution (what watch's metrics export) for any cause the
// catalog attributes counters to.
func sameAttribution(t *testing.T, what string, e *Evidence) {
	t.Helper()
	want := causes.AttributeDrops(func(n string) int64 { return e.CounterDeltas[n] })
	got := perCause(e)
	for _, id := range countedCauses() {
		if got[id] != int64(want[id]) {
			t.Errorf("%s: %s: doctor %d drops, catalog attribution %d (deltas %v)", what, id, got[id], want[id], e.CounterDeltas)
		}
	}
}

// TestDoctorDropsAreTheCatalogs: for every catalog case, doctor's drops
// per cause are causes.AttributeDrops of the same deltas.
func TestDoctorDropsAreTheCatalogs(t *testing.T) {
	for _, c := range causeCases {
		e := server()
		c.mutate(e)
		sameAttribution(t, c.name, e)
	}
}

// TestDoctorDropsRandomDeltas: the same for random counter deltas over
// every drop counter the catalog names, ListenDrops and a few context
// counters (a fixed seed: reproducible).
func TestDoctorDropsRandomDeltas(t *testing.T) {
	names := []string{causes.ListenDropsCounter, "TcpExtTCPSynRetrans", "TcpExtTCPTimeouts", "TcpExtSyncookiesSent"}
	for _, c := range causes.All() {
		for _, dc := range c.DropCounters {
			names = append(names, dc.Name)
		}
	}
	sort.Strings(names)
	rng := rand.New(rand.NewSource(16))
	for i := 0; i < 2000; i++ {
		e := server()
		e.CounterDeltas = counters.Delta{}
		for _, n := range names {
			switch rng.Intn(4) {
			case 0: // unchanged
			case 1:
				e.CounterDeltas[n] = int64(rng.Intn(5)) - 1 // -1..3: a reset reads negative
			default:
				e.CounterDeltas[n] = int64(rng.Intn(40))
			}
		}
		sameAttribution(t, fmt.Sprintf("draw %d", i), e)
		if t.Failed() {
			return
		}
	}
}

// TestTheThreeDisagreements: the deltas doctor and watch used to read
// differently (review finding 1) give the kernel's answer: TCPReqQFullDrop
// is a ListenDrops sub-count (tcp_conn_request drops through
// tcp_listendrop); MINTTL and checksum drops happen in tcp_v4_rcv before
// the listener and never move ListenDrops.
func TestTheThreeDisagreements(t *testing.T) {
	for _, c := range []struct {
		deltas counters.Delta
		want   map[causes.ID]int64
	}{
		{counters.Delta{"TcpExtListenDrops": 10, "TcpExtTCPReqQFullDrop": 3},
			map[causes.ID]int64{causes.SynQueueOverflow: 3, causes.UnexplainedDrops: 7}},
		{counters.Delta{"TcpExtListenDrops": 10, "TcpExtTCPMinTTLDrop": 10},
			map[causes.ID]int64{causes.TCPReject: 10, causes.UnexplainedDrops: 10}},
		{counters.Delta{"TcpExtListenDrops": 10, "TcpInCsumErrors": 10},
			map[causes.ID]int64{causes.TCPReject: 10, causes.UnexplainedDrops: 10}},
	} {
		e := server()
		e.CounterDeltas = c.deltas
		got := perCause(e)
		att := causes.AttributeDrops(func(n string) int64 { return c.deltas[n] })
		for _, id := range countedCauses() {
			if got[id] != c.want[id] || int64(att[id]) != c.want[id] {
				t.Errorf("%v: %s: doctor %d, catalog %d, want %d", c.deltas, id, got[id], att[id], c.want[id])
			}
		}
	}
}

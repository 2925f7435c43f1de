package trace

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/counters"
)

// TestParseConntrackStat: the statistics parser trace shares with doctor
// (internal/counters) reads /proc/net/stat/nf_conntrack in the layout 6.18
// prints (header and column widths recorded on a 6.18 host with 2 CPUs;
// counter values set by hand).
func TestParseConntrackStat(t *testing.T) {
	f, err := os.Open("testdata/nf_conntrack_stat_6.18.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ct, err := counters.ParseConntrackStat(f)
	if err != nil {
		t.Fatal(err)
	}
	if !ct.Available || ct.Invalid != 13 {
		t.Errorf("got %+v, want 13 invalid", ct)
	}
	if _, err := counters.ParseConntrackStat(strings.NewReader("")); err == nil {
		t.Error("empty file: no error")
	}
}

// TestEngineConntrackInvalid: an empty skb->_nfct at a netfilter drop is
// INVALID only where conntrack is marking packets INVALID.
func TestEngineConntrackInvalid(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name  string
		nfct  uint32
		st    *ConntrackState
		cause causes.ID
	}{
		{"invalid", NfCTKnown, &ConntrackState{Entries: 1, Invalid: 3}, causes.ConntrackInvalid},
		{"conntrack not hooked", NfCTKnown, &ConntrackState{}, causes.FirewallDrop},
		{"stats unreadable", NfCTKnown, nil, causes.FirewallDrop},
		{"tracked", NfCTKnown | NfCTEntry | 2, &ConntrackState{Entries: 1, Invalid: 3}, causes.FirewallDrop},
		{"untracked", NfCTKnown | ipCTUntracked, &ConntrackState{Entries: 1, Invalid: 3}, causes.FirewallDrop},
		{"no _nfct in kernel", 0, &ConntrackState{Entries: 1, Invalid: 3}, causes.FirewallDrop},
	}
	for _, c := range cases {
		e := NewEngine(time.Second)
		e.Conntrack = func(uint32) (ConntrackState, bool) {
			if c.st == nil {
				return ConntrackState{}, false
			}
			return *c.st, true
		}
		outs := e.Add(synEv(ms, 0, func(ev *Event) { ev.DropReason = "NETFILTER_DROP"; ev.NfCT = c.nfct }))
		if len(outs) != 1 || outs[0].Fate != Dropped || outs[0].Cause != c.cause {
			t.Errorf("%s: got %+v, want dropped %s", c.name, outs, c.cause)
		}
	}
}

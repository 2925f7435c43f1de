package trace

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
)

// TestParseConntrackStat reads /proc/net/stat/nf_conntrack in the layout
// 6.18 prints (header and column widths recorded on a 6.18 host with 2
// CPUs; counter values set by hand).
func TestParseConntrackStat(t *testing.T) {
	f, err := os.Open("testdata/nf_conntrack_stat_6.18.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := parseConntrackStat(f)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 1 || st.Invalid != 13 {
		t.Errorf("got %+v, want 1 entry, 13 invalid", st)
	}
	for _, bad := range []string{"", "entries found\n1 2\n", "entries invalid\nzz 1\n", "entries invalid\n1\n"} {
		if _, err := parseConntrackStat(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
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

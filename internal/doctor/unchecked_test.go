package doctor

import (
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/report"
)

// forget makes source unread in recorded evidence the way a failed
// collector leaves it: its data gone, its name in Unchecked.
func forget(e *Evidence, source string) {
	switch source {
	case sourceCounters:
		e.Counters, e.CounterDeltas = nil, nil
	case sourceListeners:
		e.Listeners, e.ListenersStart = nil, nil
	case sourceSynRecv:
		e.SynRecv = nil
	case sourceRoutes:
		e.Routes, e.Replays = nil, nil
		e.unchecked(sourceReplay, "no routes were read")
	case sourceReplay:
		e.Replays = nil
	case sourceSysctls:
		e.Sysctl = nil
	case sourceFirewall:
		e.Firewall, e.FirewallStart, e.FirewallDeltas = nil, nil, nil
	case sourceConntrack:
		e.Conntrack, e.ConntrackStart = nil, nil
	case sourceTC:
		e.TC = nil
	case sourceManagers:
		e.Managers = nil
	case sourceCapture:
		// Peers the capture found are not known either.
		e.Capture = nil
		var keep []Replay
		for _, r := range e.Replays {
			if r.Peer.Source != FromCapture {
				keep = append(keep, r)
			}
		}
		e.Replays = keep
	}
	e.unchecked(source, "forced unread by the test")
}

// claims lists, per source, the evidence labels and the words only a
// reading of that source can back.
var claims = map[string]struct {
	labels  []string
	phrases []string
}{
	sourceCounters:  {[]string{"counters"}, []string{"did not move", "rose in the window", "no ListenOverflows", "no TCPReqQFullDrop", "no OutNoRoutes", "counts exactly"}},
	sourceListeners: {nil, []string{"no listener's queue was full", "no listening socket accepts"}},
	sourceSynRecv:   {nil, []string{"SYN-RECV request sockets"}},
	sourceRoutes:    {[]string{"routes", "route-replay", "neighbours"}, []string{"succeed", "absent"}},
	sourceReplay:    {[]string{"route-replay"}, []string{"succeed", "lookup fails"}},
	sourceManagers:  {[]string{"network-managers"}, []string{"is managed by", "no network manager runs"}},
	sourceSysctls:   {[]string{"sysctl"}, []string{"syncookies are off (", "= 1 (strict)"}},
	sourceFirewall:  {[]string{"firewall"}, nil},
	sourceConntrack: {[]string{"conntrack"}, nil},
	sourceTC:        {[]string{"tc"}, []string{"egress tc filters are attached"}},
	sourceCapture:   {[]string{"capture"}, []string{"arrived unanswered", "were answered with RST", "SYNs arrived"}},
}

// TestUnreadSourcesClaimNothing: on every recorded case, with each
// evidence source forced unread in turn, no finding shows evidence from
// it or words only it could back, every finding of a rule that needs it
// stays "possible", and the source is listed as not checked.
func TestUnreadSourcesClaimNothing(t *testing.T) {
	for _, c := range causeCases {
		// Which rule makes which cause, from the rules table's needs.
		needs := map[causes.ID][]string{}
		e := server()
		c.mutate(e)
		for _, r := range rules {
			for _, f := range r.rule(e) {
				needs[f.Cause] = append(needs[f.Cause], r.needs...)
			}
		}
		for src, cl := range claims {
			e := server()
			c.mutate(e)
			forget(e, src)
			for _, f := range Diagnose(e) {
				text := f.Summary + " | " + f.Why
				for _, ev := range f.Evidence {
					text += " | " + ev.Text
					for _, l := range cl.labels {
						if ev.Source == l {
							t.Errorf("%s, %s unread: %s shows %s evidence: %s", c.name, src, f.Cause, l, ev.Text)
						}
					}
				}
				for _, p := range cl.phrases {
					if strings.Contains(text, p) && !strings.Contains(text, "not checked: "+src) {
						t.Errorf("%s, %s unread: %s claims %q: %s", c.name, src, f.Cause, p, text)
					}
				}
				for _, n := range needs[f.Cause] {
					if n == src && f.Confidence != report.Possible {
						t.Errorf("%s, %s unread: %s is %s, want possible", c.name, src, f.Cause, f.Confidence)
					}
					if n == src && !hasNote(f, src) {
						t.Errorf("%s, %s unread: %s does not say so: %s", c.name, src, f.Cause, text)
					}
				}
				if f.Confidence != report.Possible && strings.Contains(text, "rests on part of the evidence") {
					t.Errorf("%s, %s unread: %s is %s while saying a source was not checked", c.name, src, f.Cause, f.Confidence)
				}
			}
		}
	}
}

// TestUnreadCountersSayNotRead: the two statements the review reproduced.
// With the counters unread no-route-to-peer does not say the counters did
// not move; with the route replay unread, unexplained-listen-drops does
// not say the replayed lookups succeed, and says they were not replayed.
func TestUnreadCountersSayNotRead(t *testing.T) {
	e := server()
	noRouteV6(e)
	forget(e, sourceCounters)
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.NoRouteToPeer || fs[0].Confidence != report.Possible ||
		strings.Contains(fs[0].Why, "did not move") || !strings.Contains(fs[0].Why, "not read") {
		t.Fatalf("got %+v", fs)
	}

	e = server()
	e.CounterDeltas["TcpExtListenDrops"] = 7
	forget(e, sourceReplay)
	fs = Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.UnexplainedDrops {
		t.Fatalf("got %+v", fs)
	}
	all := evidenceText(fs[0])
	if strings.Contains(all, "succeed") || !strings.Contains(all, "not ruled out: the SYN-ACK route lookup was not replayed (forced unread by the test)") {
		t.Fatalf("unexplained with the replay unread: %s", all)
	}
	// Read, with no client to replay for: says so, does not claim success.
	e = server()
	e.CounterDeltas["TcpExtListenDrops"] = 7
	if all := evidenceText(Diagnose(e)[0]); !strings.Contains(all, "no client was seen to replay the lookup for") {
		t.Fatalf("unexplained with nothing to replay: %s", all)
	}
}

func evidenceText(f report.Finding) string {
	var b strings.Builder
	b.WriteString(f.Summary + " | " + f.Why)
	for _, ev := range f.Evidence {
		b.WriteString(" | [" + ev.Source + "] " + ev.Text)
	}
	return b.String()
}

// TestUncheckedDominates: a source named unchecked is not read even if
// recorded data is present (a run that failed half-way).
func TestUncheckedDominates(t *testing.T) {
	e := server()
	e.CounterDeltas["TcpExtListenDrops"] = 7
	e.unchecked(sourceCounters, "end read failed")
	if v, ok := e.counter("TcpExtListenDrops"); ok || v != 0 {
		t.Fatalf("counter() = %d, %v on unchecked counters", v, ok)
	}
}

// TestInvariantOnCounters: drop counters rising with no finding that
// explains them (ruleUnanswered called with none) give a warning naming
// the counters.
func TestInvariantOnCounters(t *testing.T) {
	e := server()
	e.CounterDeltas["TcpExtListenDrops"] = 5
	fs := ruleUnanswered(e, nil)
	if len(fs) != 1 || fs[0].Severity != report.Warning || !strings.Contains(fs[0].Summary, "drop counters rose: TcpExtListenDrops") {
		t.Fatalf("got %+v", fs)
	}
	if fs := ruleUnanswered(server(), nil); len(fs) != 0 {
		t.Fatalf("nothing seen, yet %+v", fs)
	}
}

// hasNote: the finding says, in its why and as evidence, that src was not
// checked and why.
func hasNote(f report.Finding, src string) bool {
	note := "not checked: " + src + " (forced unread by the test)"
	if !strings.Contains(f.Why, note) {
		return false
	}
	for _, ev := range f.Evidence {
		if ev.Source == "doctor" && strings.Contains(ev.Text, note) {
			return true
		}
	}
	return false
}

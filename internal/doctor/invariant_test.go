package doctor

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/report"
)

// TestUnansweredNeverHealthy is the invariant (issue 17 item 1): SYNs
// seen arriving with neither SYN-ACK nor RST, and no rule explaining
// them, give a critical finding that says what was seen, that no cause
// was confirmed, what was not checked and what to run: exit 1, never "No
// problems found". A fault no rule knows: the firewall was not read.
func TestUnansweredNeverHealthy(t *testing.T) {
	e := server()
	e.unchecked(sourceFirewall, "disabled")
	unanswered(e, "10.77.1.2:40000")
	unanswered(e, "10.77.1.3:40001")
	rep := &report.Report{Findings: Diagnose(e)}
	rep.Sort()
	if rep.ExitCode() != report.ExitProblems || len(rep.Findings) != 1 {
		t.Fatalf("exit %d, findings %+v", rep.ExitCode(), rep.Findings)
	}
	f := rep.Findings[0]
	all := evidenceText(f) + " | " + f.Fix
	if f.Severity != report.Critical || f.Confidence != report.Possible || f.Cause != causes.UnexplainedDrops || f.Drops != 6 {
		t.Fatalf("finding %+v", f)
	}
	for _, want := range []string{
		"6 SYNs in 2 handshakes from 10.77.1.2, 10.77.1.3 got neither a SYN-ACK nor a RST", "no check confirmed a cause",
		"not checked: firewall (disabled)", "synscope trace --netns srv --port 8080 --peer 10.77.1.2 --peer 10.77.1.3 --duration 30s",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("finding lacks %q:\n%s", want, all)
		}
	}
	if strings.Join(f.Peers, ",") != "10.77.1.2,10.77.1.3" {
		t.Errorf("peers %v", f.Peers)
	}
}

// TestInvariantControls: SYNs that were answered, refused, or seen once
// at the window's end (not yet due an answer) raise nothing; an
// explained loss is reported by its own rule only; information-only
// findings do not hide unanswered SYNs.
func TestInvariantControls(t *testing.T) {
	e := server()
	c := netip.MustParseAddrPort("10.77.1.2:40000")
	srv := netip.MustParseAddrPort("10.77.2.2:8080")
	e.Capture.Flows = append(e.Capture.Flows,
		capture.Flow{Dir: capture.Inbound, Client: c, Server: srv, SYNs: 2, SYNACKs: 1},
		capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort("10.77.1.2:40001"), Server: srv, SYNs: 1},
		capture.Flow{Dir: capture.Outbound, Client: srv, Server: c, SYNs: 3})
	if fs := Diagnose(e); len(fs) != 0 {
		t.Fatalf("healthy capture gave %+v", fs)
	}
	// Explained: the seed case's finding, no invariant finding beside it.
	e = server()
	noRouteV6(e)
	e.Capture.Flows[0].SYNs = 3
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Cause != causes.NoRouteToPeer {
		t.Fatalf("explained loss: %+v", fs)
	}
	// An info finding (IPv6 disabled, no v6 SYN) does not make the
	// unanswered v4 SYNs "explained".
	e = server()
	e.Sysctl["net.ipv6.conf.s0.disable_ipv6"] = "1"
	unanswered(e, "10.77.1.2:40000")
	rep := &report.Report{Findings: Diagnose(e)}
	if rep.ExitCode() != report.ExitProblems {
		t.Fatalf("info finding hid unanswered SYNs: %+v", rep.Findings)
	}
}

// TestUnansweredSingleSYNs: clients that give up after one SYN (a dial
// timeout under the first retransmission) count once later packets show
// the capture kept watching for a second; a lone SYN at the window's end
// does not.
func TestUnansweredSingleSYNs(t *testing.T) {
	t0 := time.Unix(1000, 0)
	srv := netip.MustParseAddrPort("10.77.2.2:8080")
	flow := func(port uint16, at time.Duration) capture.Flow {
		return capture.Flow{Dir: capture.Inbound, Client: netip.AddrPortFrom(netip.MustParseAddr("10.77.1.2"), port), Server: srv,
			SYNs: 1, FirstSYN: t0.Add(at), LastSYN: t0.Add(at)}
	}
	e := server()
	e.Capture.Flows = append(e.Capture.Flows, flow(40000, 0), flow(40001, 999*time.Millisecond))
	if fs := Diagnose(e); len(fs) != 0 {
		t.Fatalf("two SYNs 999 ms apart, the last possibly not yet answered: %+v", fs)
	}
	e.Capture.Flows = append(e.Capture.Flows, flow(40002, time.Second))
	e.Capture.KernelDrops = 1
	if fs := Diagnose(e); len(fs) != 0 {
		t.Fatalf("the capture lost packets (maybe the answers), yet: %+v", fs)
	}
	e.Capture.KernelDrops = 0
	fs := Diagnose(e)
	if len(fs) != 1 || fs[0].Severity != report.Critical || fs[0].Drops != 1 || !strings.Contains(fs[0].Summary, "1 SYNs in 1 handshakes") {
		t.Fatalf("a SYN unanswered for a second while the capture went on: %+v", fs)
	}
}

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

// halfOpenScan records what the capture sees of a half-open scan from src:
// one bare SYN to the open port 8080 (SYN-ACK, then the scanner's RST) and
// one to each of six closed ports (RST), none retransmitted.
func halfOpenScan(e *Evidence, src string) {
	t0 := time.Unix(1000, 0)
	srv := netip.MustParseAddr("10.77.2.2")
	e.Capture.Flows = append(e.Capture.Flows, capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort(src + ":51000"),
		Server: netip.AddrPortFrom(srv, 8080), Ifindex: 2, SYNs: 1, SYNACKs: 1, ClientRSTs: 1, FirstSYN: t0, LastSYN: t0, FirstSYNACK: t0})
	for i, p := range []uint16{21, 22, 25, 80, 443, 3306} {
		ts := t0.Add(time.Duration(i+1) * time.Millisecond)
		e.Capture.Flows = append(e.Capture.Flows, capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort(src + ":51000"),
			Server: netip.AddrPortFrom(srv, p), Ifindex: 2, SYNs: 1, RSTs: 1, FirstSYN: ts, LastSYN: ts})
	}
	e.CounterDeltas["TcpOutRsts"] += 6
	e.CounterDeltas["TcpExtEmbryonicRsts"]++
}

// normalClients: two handshakes from a real client to the open port.
func normalClients(e *Evidence) {
	t0 := time.Unix(1000, 0)
	for _, a := range []string{"10.77.1.2:40000", "10.77.1.2:40001"} {
		e.Capture.Flows = append(e.Capture.Flows, capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort(a),
			Server: netip.MustParseAddrPort("10.77.2.2:8080"), Ifindex: 2, SYNs: 1, SYNACKs: 1, MSS: 1460, FirstSYN: t0, LastSYN: t0, FirstSYNACK: t0})
	}
}

func TestPortScanIsInformation(t *testing.T) {
	e := server()
	normalClients(e)
	halfOpenScan(e, "10.77.1.9")
	fs := Diagnose(e)
	if len(fs) != 1 {
		t.Fatalf("want one finding (the scan), got %+v", fs)
	}
	f := fs[0]
	if f.Cause != causes.PortScan || f.Severity != report.Info {
		t.Fatalf("scan reported as %s/%s: %s", f.Cause, f.Severity, f.Summary)
	}
	if !strings.Contains(f.Summary, "10.77.1.9 scanned 7 ports (6 closed)") {
		t.Fatalf("summary does not say who and how many: %q", f.Summary)
	}
	txt := f.Evidence[0].Text
	for _, p := range []string{"21", "22", "25", "80", "443", "3306"} {
		if !strings.Contains(txt, p) {
			t.Fatalf("closed port %s not named: %q", p, txt)
		}
	}
	if len(f.Peers) != 1 || f.Peers[0] != "10.77.1.9" {
		t.Fatalf("peers %v", f.Peers)
	}
}

// A real client retrying one closed port (a new flow each time, MSS set)
// is refused, not scanning: no-listener, critical, even beside a scan.
func TestRetriedClosedPortIsNoListener(t *testing.T) {
	e := server()
	halfOpenScan(e, "10.77.1.9")
	t0 := time.Unix(1000, 0)
	for i, a := range []string{"10.77.1.2:40010", "10.77.1.2:40011", "10.77.1.2:40012"} {
		ts := t0.Add(time.Duration(i) * time.Second)
		e.Capture.Flows = append(e.Capture.Flows, capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort(a),
			Server: netip.MustParseAddrPort("10.77.2.2:9090"), Ifindex: 2, SYNs: 1, RSTs: 1, MSS: 1460, FirstSYN: ts, LastSYN: ts})
	}
	rep := &report.Report{Findings: Diagnose(e)}
	rep.Sort()
	top := rep.Findings[0]
	if top.Cause != causes.NoListener || top.Severity != report.Critical || !strings.Contains(top.Summary, ":9090") {
		t.Fatalf("top finding %s/%s %q, want no-listener on 9090", top.Cause, top.Severity, top.Summary)
	}
	for _, f := range rep.Findings {
		if f.Cause == causes.NoListener && strings.Contains(f.Summary, ":3306") {
			t.Fatalf("scan probe reported as no-listener: %q", f.Summary)
		}
	}
}

// A source that tried a closed port twice is no scanner, however many
// other ports it tried once: every refusal of it is no-listener.
func TestScanWithRetryIsNotAScan(t *testing.T) {
	e := server()
	halfOpenScan(e, "10.77.1.9")
	e.Capture.Flows = append(e.Capture.Flows, capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort("10.77.1.9:51001"),
		Server: netip.MustParseAddrPort("10.77.2.2:22"), Ifindex: 2, SYNs: 1, RSTs: 1})
	n := 0
	for _, f := range Diagnose(e) {
		if f.Cause == causes.PortScan {
			t.Fatalf("retrying source taken for a scanner: %q", f.Summary)
		}
		if f.Cause == causes.NoListener {
			n++
		}
	}
	if n != 6 {
		t.Fatalf("want 6 no-listener findings, got %d", n)
	}
}

// Two closed ports, one SYN each, is below the scan threshold.
func TestTwoClosedPortsAreNoListener(t *testing.T) {
	e := server()
	for _, a := range []string{"10.77.2.2:21", "10.77.2.2:22"} {
		e.Capture.Flows = append(e.Capture.Flows, capture.Flow{Dir: capture.Inbound, Client: netip.MustParseAddrPort("10.77.1.9:51000"),
			Server: netip.MustParseAddrPort(a), Ifindex: 2, SYNs: 1, RSTs: 1})
	}
	for _, f := range Diagnose(e) {
		if f.Cause != causes.NoListener || f.Severity != report.Critical {
			t.Fatalf("unexpected finding %s/%s %q", f.Cause, f.Severity, f.Summary)
		}
	}
}

// A retransmitted SYN to a closed port is a client's kernel waiting for an
// answer, not a scanner's single probe.
func TestScanWithRetransmitIsNotAScan(t *testing.T) {
	e := server()
	halfOpenScan(e, "10.77.1.9")
	for i := range e.Capture.Flows {
		if e.Capture.Flows[i].Server.Port() == 22 {
			e.Capture.Flows[i].SYNs = 2
		}
	}
	for _, f := range Diagnose(e) {
		if f.Cause == causes.PortScan {
			t.Fatalf("retransmitting source taken for a scanner: %q", f.Summary)
		}
	}
}

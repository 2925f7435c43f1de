package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/packet"
	"github.com/synscope/synscope/internal/pcap/capfile"
	"github.com/synscope/synscope/internal/pcap/synth"
)

// The tests in this file each show one class of false alarm (a healthy
// connection reported as a failed handshake) or miss found when synscope
// was run on public captures, first on a capture written with synth,
// then, where one shows the class, on a Zeek regression capture (read in
// place from testdata/zeek) or one derived from it in memory.

// frame is one captured frame with its absolute time.
type frame struct {
	ts   int64
	data []byte
	dec  packet.Packet
}

// readFrames reads a Zeek capture (Ethernet) and decodes each frame.
func readFrames(t *testing.T, name string) []frame {
	t.Helper()
	f, err := os.Open(filepath.Join(zeekDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := capfile.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []frame
	var d packet.Decoder
	for {
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Link != packet.LinkEthernet {
			t.Fatalf("%s: link type %d", name, p.Link)
		}
		fr := frame{ts: p.TS, data: slices.Clone(p.Data)}
		_ = d.Decode(p.Link, fr.data, &fr.dec)
		out = append(out, fr)
	}
	return out
}

// analyzeFrames writes frames as a pcap and analyses it.
func analyzeFrames(t *testing.T, frames []frame, cfg Config) *Report {
	t.Helper()
	var b bytes.Buffer
	w, err := synth.NewPcapWriter(&b, packet.LinkEthernet, binary.LittleEndian, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := w.Write(f.ts, f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	conns, st, err := AnalyzeReader(&b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return NewReport("", conns, st, nil)
}

func (c *capture) report(t *testing.T, cfg Config) *Report {
	t.Helper()
	conns, st, err := AnalyzeReader(bytes.NewReader(c.bytes(t)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return NewReport("", conns, st, nil)
}

func byClientPort(r *Report) map[uint16]*Conn {
	m := map[uint16]*Conn{}
	for _, c := range r.Conns {
		_, p := c.ClientEnd()
		m[p] = c
	}
	return m
}

func noneFailed(t *testing.T, r *Report, what string) {
	t.Helper()
	for _, c := range r.Conns {
		if c.Verdict.Failed() || c.Verdict == VerdictClientAbort {
			cli, cp := c.ClientEnd()
			t.Errorf("%s: %s:%d verdict %s (%s), history %s: a false alarm", what, cli, cp, c.Verdict, c.Detail, c.History)
		}
	}
}

func hasNote(c *Conn, sub string) bool {
	for _, n := range c.Notes {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}

func hasWarning(r *Report, sub string) bool {
	for _, w := range r.Warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

// data returns a data segment of n bytes from s's sender.
func dataSeg(s synth.Seg, seq, ackNo uint32, n int) *synth.Seg {
	return &synth.Seg{Src: s.Src, Dst: s.Dst, Sport: s.Sport, Dport: s.Dport, Seq: seq, Ack: ackNo, Flags: synth.ACK | synth.PSH, WScale: -1, Payload: n}
}

func reverse(s synth.Seg) synth.Seg {
	return synth.Seg{Src: s.Dst, Dst: s.Src, Sport: s.Dport, Dport: s.Sport, WScale: -1}
}

// Class 1: a capture of one direction. The client's ACKs after its SYN
// prove the SYN-ACK reached it.
func TestClassOneDirection(t *testing.T) {
	var c capture
	ms := time.Millisecond
	for i := range 5 {
		port := uint16(42000 + i)
		s := syn(cli4, srv4, port, 1000*uint32(i+1), 10)
		at := time.Duration(i) * 100 * ms
		c.add(at, s.Frame())
		a := ack(s, 50000)
		c.add(at+10*ms, a.Frame())
		c.add(at+11*ms, dataSeg(s, s.Seq+1, 50001, 100).Frame())
		c.add(at+30*ms, dataSeg(s, s.Seq+101, 50001+1400, 0).Frame()) // ACK of server data never captured
		if i%2 == 0 {
			rst := &synth.Seg{Src: cli4, Dst: srv4, Sport: port, Dport: 8080, Seq: s.Seq + 101, Flags: synth.RST, WScale: -1}
			c.add(at+40*ms, rst.Frame())
		}
	}
	r := c.report(t, Config{})
	noneFailed(t, r, "client-only capture")
	for _, cn := range r.Conns {
		if cn.Verdict != VerdictOneDirection || !hasNote(cn, "inferred") {
			t.Errorf("conn %d: verdict %s notes %q, want one-direction with the SYN-ACK inferred", cn.ID, cn.Verdict, cn.Notes)
		}
	}
	if !hasWarning(r, "one-directional") {
		t.Errorf("no one-directional warning: %q", r.Warnings)
	}

	t.Run("zeek server-side half duplex", func(t *testing.T) {
		// Zeek: every row SHR (checked in TestZeekConformance); the
		// server's packets only.
		r := analyzeFrames(t, readFrames(t, "ssh_ssh.server-side-half-duplex.pcap"), Config{})
		noneFailed(t, r, "ssh server-side half duplex")
		if len(r.Conns) != 20 || r.Summary.OneSided != 20 || !hasWarning(r, "one-directional") {
			t.Errorf("%d conns, %d one-sided, warnings %q", len(r.Conns), r.Summary.OneSided, r.Warnings)
		}
	})
	t.Run("zeek ssh client side only", func(t *testing.T) {
		// ssh_ssh.pcap with the server's packets removed: a client-side
		// egress-only capture of 23 real connections.
		all := readFrames(t, "ssh_ssh.pcap")
		type end struct {
			a    packet.Addr
			port uint16
		}
		clients := map[end]bool{}
		for _, f := range all {
			if f.dec.Kind == packet.KindTCP && f.dec.Flags&(packet.SYN|packet.ACK) == packet.SYN {
				clients[end{f.dec.Src, f.dec.SrcPort}] = true
			}
		}
		var cli []frame
		for _, f := range all {
			if f.dec.Kind == packet.KindTCP && clients[end{f.dec.Src, f.dec.SrcPort}] {
				cli = append(cli, f)
			}
		}
		r := analyzeFrames(t, cli, Config{})
		noneFailed(t, r, "ssh client side only")
		if r.Summary.OneSided != len(r.Conns) || len(r.Conns) < 20 {
			t.Errorf("%d of %d one-sided", r.Summary.OneSided, len(r.Conns))
			for _, cn := range r.Conns {
				t.Logf("%d %s %s %s %s", cn.ID, cn.ConnState, cn.History, cn.Verdict, cn.Detail)
			}
		}
	})
}

// Class 2: the capture ended. A single SYN sent shortly before the end
// (judged against the retry schedule and the server's RTT in the same
// capture) is unfinished, not a timeout.
func TestClassCaptureEnded(t *testing.T) {
	var c capture
	ms := time.Millisecond
	// An established connection to srv4 with a 379 ms RTT.
	a := syn(cli4, srv4, 43001, 100, 1)
	c.add(0, a.Frame())
	c.add(379*ms, fr(synack(a, 9000)))
	c.add(380*ms, fr(ack(a, 9000)))
	// A SYN that timed out: no retransmission for 5 s (client gave up).
	b := syn(cli4, srv4, 43002, 200, 2)
	c.add(1000*ms, b.Frame())
	// A SYN retransmitted once, then the end: the first did time out.
	d := syn(cli4, srv4, 43003, 400, 4)
	c.add(4800*ms, d.Frame())
	d.TSval++
	c.add(5800*ms, d.Frame())
	// One SYN 0.1 s before the end (answer due in 379 ms, retry in 1 s).
	e := syn(cli4, srv4, 43004, 300, 3)
	c.add(5900*ms, e.Frame())
	// A SYN-ACK 50 ms before the end on the server side of another host.
	f := syn(cli6, srv6, 43005, 500, 5)
	c.add(5940*ms, f.Frame())
	c.add(5950*ms, fr(synack(f, 77)))
	c.add(6000*ms, dataSeg(a, a.Seq+1, 9001, 10).Frame()) // capture end

	r := c.report(t, Config{})
	m := byClientPort(r)
	want := map[uint16]Verdict{43001: VerdictEstablished, 43002: VerdictSynTimeout, 43003: VerdictSynTimeout, 43004: VerdictUnfinished, 43005: VerdictUnfinished}
	for port, v := range want {
		if m[port] == nil || m[port].Verdict != v {
			t.Errorf("port %d: %+v, want %s", port, m[port], v)
		}
	}
	if cn := m[43004]; cn != nil && !strings.Contains(cn.Detail, "380ms") {
		t.Errorf("unfinished detail does not cite the server's RTT: %s", cn.Detail)
	}
	if cn := m[43003]; cn != nil && !strings.Contains(cn.Detail, "1 timed out") {
		t.Errorf("retransmitted SYN at the end: %s", cn.Detail)
	}
	if r.Summary.Failed != 2 {
		t.Errorf("failed %d, want 2", r.Summary.Failed)
	}

	t.Run("zeek ssh cut after a SYN", func(t *testing.T) {
		// ssh_ssh.pcap cut right after the SYN of its last connection.
		all := readFrames(t, "ssh_ssh.pcap")
		last := -1
		for i, f := range all {
			if f.dec.Kind == packet.KindTCP && f.dec.Flags&(packet.SYN|packet.ACK) == packet.SYN {
				last = i
			}
		}
		r := analyzeFrames(t, all[:last+1], Config{})
		for _, cn := range r.Conns {
			if cn.Verdict == VerdictSynTimeout || cn.Verdict == VerdictSynackNoAck {
				t.Errorf("conn %d: %s (%s)", cn.ID, cn.Verdict, cn.Detail)
			}
		}
		if cn := r.Conns[len(r.Conns)-1]; cn.Verdict != VerdictUnfinished {
			t.Errorf("last connection: %s (%s), want unfinished", cn.Verdict, cn.Detail)
		}
	})
}

// Class 3: TCP Fast Open. The SYN carries data; the SYN-ACK acknowledges
// ISN+1+len (accepted) or ISN+1 (declined); an Apple client retries
// without the data.
func TestClassFastOpen(t *testing.T) {
	var c capture
	ms := time.Millisecond
	// Accepted: the SYN-ACK acknowledges the 120 bytes.
	a := syn(cli4, srv4, 44001, 1000, 1)
	a.Payload = 120
	c.add(0, a.Frame())
	sa := synack(a, 5000)
	sa.Ack = a.Seq + 1 + 120
	c.add(1*ms, sa.Frame())
	c.add(2*ms, dataSeg(reverse(a), 5001, a.Seq+121, 300).Frame())
	c.add(3*ms, dataSeg(a, a.Seq+121, 5301, 0).Frame())
	// Declined: the SYN-ACK acknowledges the SYN only; the client
	// sends the data again.
	b := syn(cli4, srv4, 44002, 2000, 2)
	b.Payload = 80
	c.add(10*ms, b.Frame())
	c.add(11*ms, fr(synack(b, 6000)))
	c.add(12*ms, dataSeg(b, b.Seq+1, 6001, 80).Frame())
	c.add(13*ms, dataSeg(reverse(b), 6001, b.Seq+81, 0).Frame())
	// Apple's TFO retry: the data SYN goes unanswered, the retry has no
	// data, the session runs, and the client ends it with RST.
	d := syn(cli4, srv4, 44003, 3000, 3)
	d.Payload = 200
	c.add(20*ms, d.Frame())
	d2 := syn(cli4, srv4, 44003, 3000, 4)
	c.add(1020*ms, d2.Frame())
	c.add(1021*ms, fr(synack(d2, 7000)))
	c.add(1022*ms, dataSeg(d2, d2.Seq+1, 7001, 200).Frame())
	c.add(1023*ms, dataSeg(reverse(d2), 7001, d2.Seq+201, 500).Frame())
	c.add(1024*ms, (&synth.Seg{Src: cli4, Dst: srv4, Sport: 44003, Dport: 8080, Seq: d2.Seq + 201, Ack: 7501, Flags: synth.RST | synth.ACK, WScale: -1}).Frame())
	// Control: a real ACK-instead-of-SYN-ACK still is one.
	e := syn(cli4, srv4, 44004, 4000, 5)
	c.add(30*ms, e.Frame())
	c.add(31*ms, (&synth.Seg{Src: srv4, Dst: cli4, Sport: 8080, Dport: 44004, Seq: 1, Ack: 3999000, Flags: synth.ACK, WScale: -1}).Frame())

	m := byClientPort(c.report(t, Config{}))
	for port, want := range map[uint16]struct {
		v   Verdict
		tfo string
	}{44001: {VerdictEstablished, "accepted"}, 44002: {VerdictEstablished, "declined"}, 44003: {VerdictEstablished, "declined"}, 44004: {VerdictAckInsteadOfSA, ""}} {
		cn := m[port]
		if cn == nil || cn.Verdict != want.v || cn.TFO != want.tfo {
			t.Errorf("port %d: %+v, want %s tfo %q", port, cn, want.v, want.tfo)
			continue
		}
		if want.v == VerdictEstablished && cn.Cause != "" {
			t.Errorf("port %d: cause %s on an established TFO connection", port, cn.Cause)
		}
	}
	if cn := m[44004]; cn != nil && cn.Cause != causes.PAWSReject {
		t.Errorf("ACK instead of SYN-ACK: cause %q", cn.Cause)
	}
}

// Class 4: the SYN-ACK is missing from the capture while data flows both
// ways.
func TestClassSynackMissing(t *testing.T) {
	var c capture
	ms := time.Millisecond
	s := syn(cli4, srv4, 45001, 1000, 1)
	c.add(0, s.Frame())
	c.add(2*ms, fr(ack(s, 8000)))
	c.add(3*ms, dataSeg(s, s.Seq+1, 8001, 50).Frame())
	c.add(5*ms, dataSeg(reverse(s), 8001, s.Seq+51, 700).Frame())
	c.add(6*ms, dataSeg(s, s.Seq+51, 8701, 0).Frame())
	m := byClientPort(c.report(t, Config{}))
	if cn := m[45001]; cn == nil || cn.Verdict != VerdictEstablished || !hasNote(cn, "SYN-ACK is not in the capture") {
		t.Errorf("%+v", cn)
	}

	t.Run("zeek ssh without SYN-ACKs", func(t *testing.T) {
		// ssh_ssh.pcap with every SYN-ACK removed.
		all := readFrames(t, "ssh_ssh.pcap")
		var kept []frame
		for _, f := range all {
			if f.dec.Kind == packet.KindTCP && f.dec.Flags&(packet.SYN|packet.ACK) == packet.SYN|packet.ACK {
				continue
			}
			kept = append(kept, f)
		}
		r := analyzeFrames(t, kept, Config{})
		noneFailed(t, r, "ssh without SYN-ACKs")
		n := 0
		for _, cn := range r.Conns {
			if cn.Verdict == VerdictEstablished && hasNote(cn, "SYN-ACK is not in the capture") {
				n++
			}
		}
		if n < 20 {
			t.Errorf("%d of %d connections established with the SYN-ACK noted missing", n, len(r.Conns))
		}
	})
}

// Class 5: the final ACK is captured a few microseconds before the
// SYN-ACK (two CPUs), or covers server data sent right after the SYN-ACK.
func TestClassFinalAck(t *testing.T) {
	var c capture
	us := time.Microsecond
	a := syn(cli4, srv4, 46001, 1000, 1)
	c.add(0, a.Frame())
	c.add(1000*us, fr(ack(a, 5000)))
	c.add(1007*us, fr(synack(a, 5000)))
	b := syn(cli4, srv4, 46002, 2000, 2)
	c.add(2000*us, b.Frame())
	c.add(2100*us, fr(synack(b, 6000)))
	c.add(2200*us, dataSeg(reverse(b), 6001, b.Seq+1, 40).Frame()) // banner
	c.add(2300*us, dataSeg(b, b.Seq+1, 6041, 0).Frame())           // covers it
	m := byClientPort(c.report(t, Config{}))
	for _, port := range []uint16{46001, 46002} {
		// Accepted as the final ACK itself, not only as a sign of an
		// answer: no note that it fails to acknowledge the SYN-ACK.
		if cn := m[port]; cn == nil || cn.Verdict != VerdictEstablished || cn.HandshakeRTT == nil || len(cn.Notes) > 0 {
			t.Errorf("port %d: %+v", port, cn)
		}
	}

	t.Run("zeek ssh reordered", func(t *testing.T) {
		// ssh_ssh.pcap with each final ACK moved 7 µs before its
		// SYN-ACK; and with the pure final ACK dropped where the server
		// spoke first (its banner), so the client's next ACK covers it.
		all := readFrames(t, "ssh_ssh.pcap")
		type tuple struct{ sp, dp uint16 }
		synackAt := map[tuple]int{}
		var moved []frame
		dropped := []frame{}
		seenAck := map[tuple]bool{}
		for _, f := range all {
			p := &f.dec
			if p.Kind != packet.KindTCP {
				continue
			}
			if p.Flags&(packet.SYN|packet.ACK) == packet.SYN|packet.ACK {
				synackAt[tuple{p.DstPort, p.SrcPort}] = len(moved)
			}
			k := tuple{p.SrcPort, p.DstPort}
			if i, ok := synackAt[k]; ok && !seenAck[k] && p.Flags == packet.ACK && p.PayloadLen == 0 {
				seenAck[k] = true
				g := f
				g.ts = moved[i].ts - 7000
				moved = slices.Insert(moved, i, g)
				for t2, j := range synackAt {
					if j >= i && t2 != k {
						synackAt[t2] = j + 1
					}
				}
				continue
			}
			moved = append(moved, f)
		}
		if len(seenAck) < 20 {
			t.Fatalf("moved %d final ACKs, want the capture's 23", len(seenAck))
		}
		r := analyzeFrames(t, moved, Config{})
		noneFailed(t, r, "ssh with final ACKs before SYN-ACKs")
		for _, cn := range r.Conns {
			if cn.SynAttempts > 0 && (cn.Verdict != VerdictEstablished || len(cn.Notes) > 0) {
				t.Errorf("moved ACK: conn %d %s %q", cn.ID, cn.Verdict, cn.Notes)
			}
		}
		// Drop the pure final ACK of connections whose server spoke first.
		seenAck = map[tuple]bool{}
		for _, f := range all {
			p := &f.dec
			k := tuple{p.SrcPort, p.DstPort}
			if p.Kind == packet.KindTCP && p.DstPort == 22 && p.Flags == packet.ACK && p.PayloadLen == 0 && !seenAck[k] {
				seenAck[k] = true
				continue
			}
			dropped = append(dropped, f)
		}
		r = analyzeFrames(t, dropped, Config{})
		noneFailed(t, r, "ssh without the pure final ACK")
	})
}

// Class 6: an ICMP port unreachable generated on the client host for a
// SYN that never reached the wire (a local REJECT) still makes a failed
// connection.
func TestClassLocalICMP(t *testing.T) {
	var c capture
	for i, port := range []uint16{47001, 47002, 47003} {
		s := syn(cli4, srv4, port, uint32(1000*(i+1)), 1)
		// The local stack answers itself: from the client's address.
		c.add(time.Duration(i)*time.Second, synth.Ethernet(synth.ICMPUnreachable(cli4, s.IP(), 3), nil))
	}
	// An ICMP error quoting a data segment of no known connection is
	// counted, not turned into a connection.
	d := dataSeg(syn(cli4, srv4, 47009, 1, 1), 5, 6, 10)
	c.add(4*time.Second, synth.Ethernet(synth.ICMPUnreachable(rtr4, d.IP(), 1), nil))
	r := c.report(t, Config{})
	if len(r.Conns) != 3 || r.Summary.Failed != 3 || r.Stats.ICMPUnmatched != 1 {
		t.Fatalf("%d conns, %d failed, %d unmatched ICMP: %+v", len(r.Conns), r.Summary.Failed, r.Stats.ICMPUnmatched, r.Conns)
	}
	wantCause, _, _ := causes.ForICMP(false, 3, 3)
	for _, cn := range r.Conns {
		if cn.Verdict != VerdictICMPUnreachable || cn.Cause != wantCause || cn.ConnState != "-" || !strings.Contains(cn.Detail, "not in the capture") {
			t.Errorf("%+v", cn)
		}
	}
}

// Class 7: two captures that do not overlap in time or hosts.
func TestClassCapturesDoNotOverlap(t *testing.T) {
	var w twoSides
	sec := time.Second
	// Before the server capture starts: an established connection to
	// another host, and an unanswered one to the server.
	other := netip.MustParseAddr("10.77.9.9")
	x := syn(cli4, other, 48001, 100, 1)
	w.cli.add(0, x.Frame())
	w.cli.add(2*time.Millisecond, fr(synack(x, 500)))
	w.cli.add(3*time.Millisecond, fr(ack(x, 500)))
	y := syn(cli4, srv4, 48002, 200, 2)
	w.cli.add(100*time.Millisecond, y.Frame())
	// While both capture: a delivered connection, and one lost.
	a := syn(cli4, srv4, 48003, 300, 3)
	w.up(10*sec, a, true)
	w.down(10*sec+time.Millisecond, synack(a, 600), true)
	w.up(10*sec+2*time.Millisecond, ack(a, 600), true)
	z := syn(cli4, srv4, 48004, 400, 4)
	w.up(11*sec, z, false)
	w.srv.add(12*sec+skew, dataSeg(natted(a), a.Seq+1, 601, 0).Frame()) // server capture end
	cconns, _, err := AnalyzeReader(bytes.NewReader(w.cli.bytes(t)), Config{KeepPackets: true})
	if err != nil {
		t.Fatal(err)
	}
	sconns, sst, err := AnalyzeReader(bytes.NewReader(w.srv.bytes(t)), Config{KeepPackets: true})
	if err != nil {
		t.Fatal(err)
	}
	cmp := CompareSpan(cconns, sconns, int64(sst.FirstTS*1e9), int64(sst.LastTS*1e9))
	got := map[uint16]Death{}
	for _, p := range cmp.Connections {
		got[p.ClientTuple.OrigP] = p.Death
	}
	want := map[uint16]Death{48001: DeathNotCaptured, 48002: DeathNotCaptured, 48003: DeathDelivered, 48004: DeathLostToServer}
	for port, d := range want {
		if got[port] != d {
			t.Errorf("port %d: %s, want %s", port, got[port], d)
		}
	}
	if cmp.Failed() != 1 {
		t.Errorf("failed %d, want 1", cmp.Failed())
	}
}

func fr(s synth.Seg) []byte { return s.Frame() }

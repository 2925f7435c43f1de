package pcap

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/packet"
	"github.com/synscope/synscope/internal/pcap/synth"
)

// Windows pktmon records one packet at several layers, so its copies
// interleave with other packets: they are still duplicates, and a SYN
// seen three times is still one attempt.
func TestDuplicatesInterleaved(t *testing.T) {
	var c capture
	us := time.Microsecond
	a := syn(cli4, srv4, 49001, 100, 1)
	b := syn(cli4, srv4, 49002, 200, 2)
	// a, b, a, b, a, b within 30 µs: three layers each.
	for i := range 3 {
		c.add(time.Duration(2*i)*10*us, fr(a))
		c.add(time.Duration(2*i+1)*10*us, fr(b))
	}
	sa := synack(a, 900)
	c.add(1000*us, sa.Frame())
	c.add(1001*us, fr(ack(b, 1))) // unrelated packet in between
	c.add(1002*us, sa.Frame())    // copy
	c.add(1100*us, fr(ack(a, 900)))
	// A real retransmission (1 s later, new TSval) is not a duplicate.
	b.TSval++
	c.add(time.Second, fr(b))
	r := c.report(t, Config{})
	m := byClientPort(r)
	if m[49001].SynAttempts != 1 || m[49001].SynackCount != 1 || m[49001].Duplicates != 3 {
		t.Errorf("a: attempts %d synacks %d dups %d", m[49001].SynAttempts, m[49001].SynackCount, m[49001].Duplicates)
	}
	if m[49002].SynAttempts != 2 || m[49002].Duplicates != 2 {
		t.Errorf("b: attempts %d dups %d", m[49002].SynAttempts, m[49002].Duplicates)
	}
	if r.Stats.Duplicates != 5 {
		t.Errorf("stats duplicates %d, want 5", r.Stats.Duplicates)
	}
}

// Unsorted input is counted and warned about, never silent.
func TestOutOfOrderWarned(t *testing.T) {
	var c capture
	ms := time.Millisecond
	a := syn(cli4, srv4, 49101, 100, 1)
	c.add(10*ms, fr(a))
	c.add(12*ms, fr(synack(a, 5)))
	c.add(11*ms, fr(ack(a, 5))) // stamped before the packet before it
	r := c.report(t, Config{})
	if r.Stats.OutOfOrder != 1 || r.Stats.MaxBackstep != 0.001 || !hasWarning(r, "not in time order") {
		t.Errorf("out of order %d, backstep %v, warnings %q", r.Stats.OutOfOrder, r.Stats.MaxBackstep, r.Warnings)
	}
	var sb strings.Builder
	r.WriteText(&sb, false)
	if !strings.Contains(sb.String(), "warning: 1 packets are timestamped before") {
		t.Errorf("text report does not warn:\n%s", sb.String())
	}
	if r.Stats.FirstTS != 1_700_000_000.01 {
		t.Errorf("first_ts %v", r.Stats.FirstTS)
	}
}

// The retry schedule is labelled by what it and the SYN show: a Windows
// SYN (TTL 128, MSS,NOP,WS,NOP,NOP,SACK) at 0/1/3/7 s is Windows, a Linux
// SYN the same schedule is Linux, macOS backs off 1 s five times.
func TestRetrySchedules(t *testing.T) {
	var c capture
	sec := time.Second
	win := syn(cli4, srv4, 49201, 100, 0)
	win.TTL, win.TS = 127, false
	win.Opts = []byte{2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2}
	lin := syn(cli4, srv4, 49202, 200, 0)
	mac := syn(cli4, srv4, 49203, 300, 0)
	mac.Opts = []byte{2, 4, 5, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 4, 2, 0, 0}
	old := syn(cli4, srv4, 49204, 400, 0)
	old.TTL, old.TS = 128, false
	old.Opts = win.Opts
	for i, at := range []float64{0, 1, 3, 7} {
		w, l := win, lin
		w.IPID, l.TSval = uint16(i+1), uint32(i+1)
		c.add(time.Duration(at*float64(sec)), w.Frame())
		c.add(time.Duration(at*float64(sec))+time.Millisecond, l.Frame())
	}
	for i, at := range []float64{0, 1, 2, 3, 4, 5, 7, 11} {
		m := mac
		m.Opts = append([]byte(nil), mac.Opts...)
		m.Opts[13] = byte(i + 1) // TSval
		c.add(time.Duration(at*float64(sec))+2*time.Millisecond, m.Frame())
	}
	for i, at := range []float64{0, 3, 9} {
		o := old
		o.IPID = uint16(100 + i)
		c.add(time.Duration(at*float64(sec))+3*time.Millisecond, o.Frame())
	}
	c.add(40*sec, fr(ack(lin, 1))) // keep the capture going past the retries
	m := byClientPort(c.report(t, Config{}))
	for port, want := range map[uint16]string{49201: "1s doubling (Windows", 49202: "1s doubling (Linux", 49203: "macOS/BSD", 49204: "3s doubling (3 s initial RTO"} {
		if cn := m[port]; cn == nil || !strings.Contains(cn.RTOPattern, want) {
			t.Errorf("port %d: pattern %q (schedule %v), want %q", port, cn.RTOPattern, cn.SynSchedule, want)
		}
	}
}

// Encapsulated segments are analysed and counted; what cannot be decoded
// is counted by reason and reported.
func TestEncapsulationCounts(t *testing.T) {
	var c capture
	o1, o2 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	a := syn(cli4, srv4, 49301, 100, 1)
	sa := synack(a, 5)
	fa := ack(a, 5)
	c.add(0, synth.Ethernet(synth.UDPPacket(o1, o2, 5, 4789, synth.VXLAN(a.Frame())), nil))
	c.add(time.Millisecond, synth.Ethernet(synth.IPPacket(o2, o1, 47, synth.GRE(0x1000, 0x88be, synth.ERSPAN2(sa.Frame()))), nil))
	c.add(2*time.Millisecond, synth.MPLS([]uint32{16}, fa.IP()))
	c.add(3*time.Millisecond, synth.Ethernet(synth.IPPacket(o2, o1, 47, synth.GRE(1, 0x880b, fa.IP())), nil)) // PPTP
	r := c.report(t, Config{})
	if len(r.Conns) != 1 || r.Conns[0].Verdict != VerdictEstablished {
		t.Fatalf("%+v", r.Conns)
	}
	want := map[string]int{"vxlan": 1, "gre": 1, "erspan": 1, "mpls": 1} // PPTP's GRE is not decoded
	for k, v := range want {
		if r.Stats.Encapsulations[k] != v {
			t.Errorf("encapsulations %v, want %v", r.Stats.Encapsulations, want)
			break
		}
	}
	if r.Stats.Undecoded != 1 || r.Stats.UndecodedBy["unsupported-encapsulation"] != 1 || !hasWarning(r, "unsupported-encapsulation 1") {
		t.Errorf("undecoded %d %v, warnings %q", r.Stats.Undecoded, r.Stats.UndecodedBy, r.Warnings)
	}
}

// writeFlood writes n spoofed SYNs to one server from distinct sources,
// each answered by a SYN-ACK, 2 µs apart.
func writeFlood(t testing.TB, n int) []byte {
	var b bytes.Buffer
	w, err := synth.NewPcapWriter(&b, packet.LinkEthernet, binary.LittleEndian, true)
	if err != nil {
		t.Fatal(err)
	}
	base := int64(1_700_000_000 * time.Second)
	for i := range n {
		src := netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
		s := syn(src, srv4, uint16(1024+i%60000), uint32(i)*7919, 0)
		s.TS = false
		if err := w.Write(base+int64(i)*2000, s.Frame()); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(base+int64(i)*2000+1000, fr(synack(s, uint32(i)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A SYN flood beyond the attempt cap is summed per server:port in
// constant memory and reported as a flood.
func TestFloodCapped(t *testing.T) {
	const n, capN = 60_000, 5_000
	data := writeFlood(t, n)
	for _, summary := range []bool{true, false} {
		var r *Report
		var err error
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		if summary {
			r, err = SummarizeReader(bytes.NewReader(data), Config{MaxAttempts: capN})
		} else {
			var conns []*Conn
			var st Stats
			conns, st, err = AnalyzeReader(bytes.NewReader(data), Config{MaxAttempts: capN})
			r = NewReport("", conns, st, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&m1)
		if r.Summary.Connections != capN || r.Stats.UntrackedSYNs != n-capN {
			t.Errorf("summary=%v: %d connections, %d untracked SYNs; want %d and %d", summary, r.Summary.Connections, r.Stats.UntrackedSYNs, capN, n-capN)
		}
		if len(r.Stats.Untracked) != 1 {
			t.Fatalf("aggregates %+v", r.Stats.Untracked)
		}
		g := r.Stats.Untracked[0]
		if g.Server != srv4.String() || g.Port != 8080 || g.SYNs != n-capN || g.SynAcks != n-capN || g.Sources < (n-capN)*9/10 || g.Sources > (n-capN)*11/10 {
			t.Errorf("aggregate %+v", g)
		}
		if !strings.Contains(g.String(), "a SYN flood") || !hasWarning(r, "beyond the cap of 5000") {
			t.Errorf("%s; warnings %q", g, r.Warnings)
		}
		// Heap allocated: about 1 KB per tracked attempt, nothing per
		// untracked one (allocations are counted, so this holds for any
		// GC timing).
		if per := float64(m1.TotalAlloc-m0.TotalAlloc) / n; per > 400 {
			t.Errorf("summary=%v: %.0f bytes allocated per SYN, want the cap to bound it", summary, per)
		}
	}
}

// IPsec: TCP behind an Authentication Header is readable and analysed;
// what stays unreadable (ESP, IPComp, also behind AH) is counted as
// undecoded with its reason and warned about, never a silent "0 TCP".
func TestIPsecAH(t *testing.T) {
	var c capture
	ms := time.Millisecond
	ah := func(s synth.Seg) []byte {
		ip := s.IP()
		hl := 20
		if s.Src.Is6() {
			hl = 40
		}
		return synth.Ethernet(synth.IPPacket(s.Src, s.Dst, 51, synth.AH(6, 0x1000, ip[hl:])), nil)
	}
	for i, pair := range [][2]netip.Addr{{cli4, srv4}, {cli6, srv6}} {
		a := syn(pair[0], pair[1], uint16(49401+i), 100, 1)
		c.add(time.Duration(10*i)*ms, ah(a))
		c.add(time.Duration(10*i+1)*ms, ah(synack(a, 5)))
		c.add(time.Duration(10*i+2)*ms, ah(ack(a, 5)))
	}
	comp := []byte{4, 0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef} // IPComp header, then deflated data
	c.add(30*ms, synth.Ethernet(synth.IPPacket(cli4, srv4, 51, synth.AH(108, 0x1000, comp)), nil))
	c.add(31*ms, synth.Ethernet(synth.IPPacket(cli4, srv4, 108, comp), nil))
	c.add(32*ms, synth.Ethernet(synth.IPPacket(cli4, srv4, 50, []byte{0, 0, 0x10, 0, 0, 0, 0, 1, 9, 9, 9, 9}), nil))
	r := c.report(t, Config{})
	m := byClientPort(r)
	for _, p := range []uint16{49401, 49402} {
		if m[p] == nil || m[p].Verdict != VerdictEstablished || m[p].History != "ShA" {
			t.Errorf("port %d behind AH: %+v", p, m[p])
		}
	}
	if r.Stats.TCP != 6 || r.Stats.Encapsulations["ipsec-ah"] != 6 {
		t.Errorf("tcp %d, encapsulations %v: want 6 TCP segments, all through ipsec-ah", r.Stats.TCP, r.Stats.Encapsulations)
	}
	want := map[string]int{"ipcomp-compressed": 2, "ipsec-esp-encrypted": 1}
	if r.Stats.Undecoded != 3 || len(r.Stats.UndecodedBy) != 2 || r.Stats.UndecodedBy["ipcomp-compressed"] != 2 || r.Stats.UndecodedBy["ipsec-esp-encrypted"] != 1 {
		t.Errorf("undecoded %d %v, want %v", r.Stats.Undecoded, r.Stats.UndecodedBy, want)
	}
	if !hasWarning(r, "ipcomp-compressed 2") || !hasWarning(r, "ipsec-esp-encrypted 1") {
		t.Errorf("warnings %q", r.Warnings)
	}
}

// A complete session whose SYN-ACK carries a corrupt timestamp (year
// 2061, as in a public MySQL capture) stays one established connection,
// paired by sequence numbers; the timestamp is reported as implausible.
func TestImplausibleTimestamp(t *testing.T) {
	var c capture
	ms := time.Millisecond
	a := syn(cli4, srv4, 49501, 100, 1)
	sa := synack(a, 5)
	c.add(0, fr(a))
	c.frames = append(c.frames, fr(sa))
	c.ts = append(c.ts, time.Date(2061, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	c.add(1*ms, fr(ack(a, 5)))
	c.add(2*ms, fr(*dataSeg(a, 101, 6, 100)))
	for i := range 70 { // enough packets for the sweep to run
		b := syn(cli4, srv4, uint16(50000+i), 1000, 1)
		c.add(time.Duration(3+i)*ms, fr(b))
		c.add(time.Duration(3+i)*ms+100*time.Microsecond, fr(synack(b, 7)))
		c.add(time.Duration(3+i)*ms+200*time.Microsecond, fr(ack(b, 7)))
	}
	r := c.report(t, Config{})
	var rows []*Conn
	for _, cn := range r.Conns {
		if _, p := cn.ClientEnd(); p == 49501 {
			rows = append(rows, cn)
		}
	}
	if len(rows) != 1 || rows[0].Verdict != VerdictEstablished || rows[0].History != "ShAD" || rows[0].SynackCount != 1 {
		for _, cn := range rows {
			t.Errorf("row %s %s %s: %s", cn.ConnState, cn.History, cn.Verdict, cn.Detail)
		}
		t.Fatalf("%d rows for the session, want one established ShAD", len(rows))
	}
	if rtt := rows[0].HandshakeRTT; rtt == nil || *rtt > 0.002 {
		t.Errorf("handshake RTT %v, want at most 2 ms", rtt)
	}
	if !hasNote(rows[0], "implausible") {
		t.Errorf("notes %q: want the implausible timestamp named", rows[0].Notes)
	}
	if r.Stats.ImplausibleTS != 1 || !hasWarning(r, "implausible timestamp") || r.Stats.LastTS > 1_800_000_000 || r.Stats.OutOfOrder != 0 {
		t.Errorf("implausible %d, last ts %v, out of order %d, warnings %q", r.Stats.ImplausibleTS, r.Stats.LastTS, r.Stats.OutOfOrder, r.Warnings)
	}
	noneFailed(t, r, "implausible timestamp")
}

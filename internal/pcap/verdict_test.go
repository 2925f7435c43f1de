package pcap

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/packet"
	"github.com/synscope/synscope/internal/pcap/synth"
)

// capture collects synthesized frames.
type capture struct {
	frames [][]byte
	ts     []int64
}

func (c *capture) add(ts time.Duration, frame []byte) {
	c.frames = append(c.frames, frame)
	c.ts = append(c.ts, int64(1_700_000_000*time.Second+ts))
}

func (c *capture) bytes(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := synth.NewPcapWriter(&b, packet.LinkEthernet, binary.LittleEndian, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range c.frames {
		if err := w.Write(c.ts[i], f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (c *capture) analyze(t *testing.T, cfg Config) []*Conn {
	t.Helper()
	conns, _, err := AnalyzeReader(bytes.NewReader(c.bytes(t)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

var (
	cli4 = netip.MustParseAddr("10.77.1.2")
	srv4 = netip.MustParseAddr("10.77.2.2")
	rtr4 = netip.MustParseAddr("10.77.1.1")
	cli6 = netip.MustParseAddr("fd77:1::2")
	srv6 = netip.MustParseAddr("fd77:2::2")
)

func syn(src, dst netip.Addr, sport uint16, isn, tsval uint32) synth.Seg {
	return synth.Seg{Src: src, Dst: dst, Sport: sport, Dport: 8080, Seq: isn, Flags: synth.SYN, MSS: 1460, WScale: 7, SACKOK: true, TS: true, TSval: tsval}
}

func synack(s synth.Seg, isn uint32) synth.Seg {
	return synth.Seg{Src: s.Dst, Dst: s.Src, Sport: s.Dport, Dport: s.Sport, Seq: isn, Ack: s.Seq + 1, Flags: synth.SYN | synth.ACK, MSS: 1460, WScale: 7, SACKOK: true, TS: true, TSval: 999, TSecr: s.TSval}
}

func ack(s synth.Seg, srvISN uint32) synth.Seg {
	return synth.Seg{Src: s.Src, Dst: s.Dst, Sport: s.Sport, Dport: s.Dport, Seq: s.Seq + 1, Ack: srvISN + 1, Flags: synth.ACK, WScale: -1, TS: true, TSval: s.TSval + 1, TSecr: 999}
}

func TestVerdicts(t *testing.T) {
	var c capture
	sec := time.Second
	// 1: SYN timeout, Linux schedule 0,1,3,7 with a capture duplicate.
	s1 := syn(cli4, srv4, 40001, 1000, 10)
	for i, at := range []time.Duration{0, 1 * sec, 3 * sec, 7 * sec} {
		s := s1
		s.TSval += uint32(i * 1000)
		c.add(at, s.Frame())
		if i == 1 {
			c.add(at+20*time.Microsecond, s.Frame()) // seen twice by the capture
		}
	}
	// 2: refused.
	s2 := syn(cli4, srv4, 40002, 2000, 20)
	c.add(100*time.Millisecond, s2.Frame())
	r2 := synth.Seg{Src: srv4, Dst: cli4, Sport: 8080, Dport: 40002, Ack: 2001, Flags: synth.RST | synth.ACK, WScale: -1}
	c.add(101*time.Millisecond, r2.Frame())
	// 3: ICMP admin prohibited from the router (IPv4).
	s3 := syn(cli4, srv4, 40003, 3000, 30)
	c.add(200*time.Millisecond, s3.Frame())
	c.add(201*time.Millisecond, synth.Ethernet(synth.ICMPUnreachable(rtr4, s3.IP(), 13), nil))
	// 4: SYN-ACK retransmitted, no final ACK (server-side view).
	s4 := syn(cli4, srv4, 40004, 4000, 40)
	c.add(300*time.Millisecond, s4.Frame())
	sa4 := synack(s4, 90000)
	c.add(301*time.Millisecond, sa4.Frame())
	c.add(1301*time.Millisecond, sa4.Frame())
	c.add(3301*time.Millisecond, sa4.Frame())
	// 5: ACK instead of SYN-ACK (TIME_WAIT / PAWS).
	s5 := syn(cli4, srv4, 40005, 5000, 50)
	c.add(400*time.Millisecond, s5.Frame())
	a5 := synth.Seg{Src: srv4, Dst: cli4, Sport: 8080, Dport: 40005, Seq: 777, Ack: 123456, Flags: synth.ACK, WScale: -1}
	c.add(401*time.Millisecond, a5.Frame())
	// 6: established over IPv6 in a QinQ frame, RTT 2 ms.
	s6 := syn(cli6, srv6, 40006, 6000, 60)
	s6.VLAN = []uint16{100, 200}
	c.add(500*time.Millisecond, s6.Frame())
	sa6 := synack(s6, 7000)
	sa6.VLAN = s6.VLAN
	c.add(501*time.Millisecond, sa6.Frame())
	a6 := ack(s6, 7000)
	a6.VLAN = s6.VLAN
	c.add(502*time.Millisecond, a6.Frame())

	conns := c.analyze(t, Config{KeepPackets: true})
	byPort := map[uint16]*Conn{}
	for _, cn := range conns {
		_, p := cn.ClientEnd()
		byPort[p] = cn
	}
	check := func(port uint16, v Verdict, cause causes.ID, state string) *Conn {
		t.Helper()
		cn := byPort[port]
		if cn == nil {
			t.Fatalf("port %d: no connection", port)
		}
		if cn.Verdict != v || cn.Cause != cause || cn.ConnState != state {
			t.Errorf("port %d: verdict %s cause %q state %s (history %s); want %s %q %s", port, cn.Verdict, cn.Cause, cn.ConnState, cn.History, v, cause, state)
		}
		return cn
	}
	c1 := check(40001, VerdictSynTimeout, "", "S0")
	if c1.SynAttempts != 4 || c1.Duplicates != 1 || !strings.Contains(c1.RTOPattern, "1s doubling") {
		t.Errorf("SYN timeout: attempts %d dups %d schedule %v pattern %q", c1.SynAttempts, c1.Duplicates, c1.SynSchedule, c1.RTOPattern)
	}
	check(40002, VerdictRefused, causes.NoListener, "REJ")
	check(40003, VerdictICMPUnreachable, causes.FirewallDrop, "S0")
	c4 := check(40004, VerdictSynackNoAck, causes.SynackUnanswered, "S1")
	if c4.SynackCount != 3 {
		t.Errorf("SYN-ACK count %d, want 3", c4.SynackCount)
	}
	check(40005, VerdictAckInsteadOfSA, causes.PAWSReject, "S0") // Zeek: an ACK before any SYN-ACK is not "partial"
	c6 := check(40006, VerdictEstablished, "", "S1")
	if c6.HandshakeRTT == nil || *c6.HandshakeRTT != 0.002 {
		t.Errorf("RTT %v, want 0.002", c6.HandshakeRTT)
	}

	// The annotated copy carries one comment per packet, readable by tshark.
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.pcap"), filepath.Join(dir, "out.pcapng")
	if err := writeFile(in, c.bytes(t)); err != nil {
		t.Fatal(err)
	}
	if err := Annotate(in, out, conns); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed: annotate output not cross-checked")
	}
	got, err := exec.Command("tshark", "-r", out, "-T", "fields", "-e", "frame.comment").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, got)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) != len(c.frames) || !strings.Contains(lines[0], "syn-timeout") || !strings.Contains(string(got), "cause no-listener") {
		t.Errorf("tshark comments:\n%s", got)
	}
}

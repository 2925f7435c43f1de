package pcap

import (
	"strconv"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/pcap/synth"
)

// rowsFor returns the rows of one client port, in order.
func rowsFor(r *Report, port uint16) []*Conn {
	var out []*Conn
	for _, c := range r.Conns {
		if c.OrigP == port || c.RespP == port {
			out = append(out, c)
		}
	}
	return out
}

func rowText(cs []*Conn) []string {
	var s []string
	for _, c := range cs {
		s = append(s, c.OrigH+":"+strconv.Itoa(int(c.OrigP))+">"+c.RespH+":"+strconv.Itoa(int(c.RespP))+" "+c.ConnState+" "+c.History+" "+string(c.Verdict))
	}
	return s
}

// Zeek's attempt timer: an unanswered attempt ends 5 s after its first
// SYN, so Linux's retransmissions at 7 s and 15 s are rows of their own
// under ZeekRows; by default the schedule stays one row.
func TestZeekRowsAttemptTimer(t *testing.T) {
	var c capture
	s := syn(cli4, srv4, 49601, 100, 1)
	for _, at := range []time.Duration{0, 1, 3, 7, 15} {
		s.TSval += 1000
		c.add(at*time.Second, fr(s))
	}
	def := rowsFor(c.report(t, Config{}), 49601)
	if len(def) != 1 || def[0].SynAttempts != 5 || def[0].Verdict != VerdictSynTimeout {
		t.Errorf("default: %q, want one syn-timeout row with 5 SYNs", rowText(def))
	}
	zr := rowsFor(c.report(t, Config{ZeekRows: true}), 49601)
	if len(zr) != 3 || zr[0].SynAttempts != 3 || zr[1].SynAttempts != 1 || zr[2].SynAttempts != 1 {
		t.Fatalf("zeek rows: %q, want 3 rows (SYNs at 0,1,3 s; 7 s; 15 s)", rowText(zr))
	}
	for _, x := range zr {
		if x.ConnState != "S0" || x.History != "S" {
			t.Errorf("zeek rows: %q, want S0 S each", rowText(zr))
			break
		}
	}
	// An answered handshake is not an attempt: no split, however slow.
	var d capture
	a := syn(cli4, srv4, 49602, 100, 1)
	d.add(0, fr(a))
	d.add(time.Second, fr(synack(a, 5)))
	d.add(6*time.Second, fr(ack(a, 5)))
	// Nor is one the responder spoke in (data, no SYN-ACK): Zeek's
	// timer ends only attempts whose responder is silent.
	e := syn(cli4, srv4, 49603, 100, 1)
	d.add(0, fr(e))
	d.add(time.Second, fr(*dataSeg(reverse(e), 5000, 101, 10)))
	e.TSval++
	d.add(7*time.Second, fr(e))
	r := d.report(t, Config{ZeekRows: true})
	if zr := rowsFor(r, 49602); len(zr) != 1 || zr[0].History != "ShA" {
		t.Errorf("answered: %q, want one ShA row", rowText(zr))
	}
	if zr := rowsFor(r, 49603); len(zr) != 1 {
		t.Errorf("responder spoke: %q, want one row", rowText(zr))
	}
}

// Zeek's inactivity timeout ends a connection once idle for 5 min (at,
// not after, the timeout); the next packet starts a new row whose
// direction follows Zeek's rules: a packet from a likely server port
// (3306) is flipped (^), otherwise its sender is the originator.
func TestZeekRowsInactivity(t *testing.T) {
	var c capture
	ms := time.Millisecond
	a := syn(cli4, srv4, 49701, 100, 1)
	a.Dport = 3306
	sa := synack(a, 5000)
	c.add(0, fr(a))
	c.add(1*ms, fr(sa))
	c.add(2*ms, fr(ack(a, 5000)))
	back := reverse(a)
	c.add(3*ms, fr(*dataSeg(back, 5001, 101, 50)))
	// Exactly 5 min later the server speaks again.
	c.add(3*ms+5*time.Minute, fr(*dataSeg(back, 5051, 101, 50)))
	// A connection between two unlikely ports, idle 5 min, resumed by
	// the responder: its new row's originator is the responder.
	b := syn(cli4, srv4, 49702, 300, 1)
	b.Dport = 40000
	c.add(10*ms, fr(b))
	c.add(11*ms, fr(synack(b, 7000)))
	c.add(12*ms, fr(ack(b, 7000)))
	c.add(12*ms+6*time.Minute, fr(*dataSeg(reverse(b), 7001, 301, 10)))
	// A mid-stream connection idle for 2 min: one row in Zeek (5 min).
	m := synth.Seg{Src: cli4, Dst: srv4, Sport: 49703, Dport: 40001, Seq: 1, Ack: 1, Flags: synth.ACK | synth.PSH, WScale: -1, Payload: 10}
	c.add(20*ms, fr(m))
	m.Seq += 10
	c.add(20*ms+2*time.Minute, fr(m))

	r := c.report(t, Config{ZeekRows: true})
	ra := rowsFor(r, 49701)
	if len(ra) != 2 || ra[0].History != "ShAd" || ra[1].History != "^d" || ra[1].OrigP != 49701 || ra[1].RespP != 3306 {
		t.Errorf("3306: %q, want ShAd then ^d (client as originator)", rowText(ra))
	}
	rb := rowsFor(r, 49702)
	if len(rb) != 2 || rb[1].OrigP != 40000 || rb[1].History != "D" {
		t.Errorf("40000: %q, want a second row from the responder's side, history D", rowText(rb))
	}
	if rm := rowsFor(r, 49703); len(rm) != 1 || rm[0].OrigPkts != 2 {
		t.Errorf("mid-stream idle 2 min: %q, want one row", rowText(rm))
	}
}

// A SYN after a FIN exchange or a RST on the same 4-tuple starts a new
// connection (Zeek's IsReuse) in both modes, even within the 5 s close
// delay, and even with the same ISN after a RST.
func TestZeekRowsReuseAfterClose(t *testing.T) {
	for _, zr := range []bool{false, true} {
		var c capture
		ms := time.Millisecond
		a := syn(cli4, srv4, 49801, 100, 1)
		c.add(0, fr(a))
		c.add(1*ms, fr(synack(a, 5000)))
		c.add(2*ms, fr(ack(a, 5000)))
		fin := ack(a, 5000)
		fin.Flags |= synth.FIN
		c.add(3*ms, fr(fin))
		sfin := synack(a, 5000)
		sfin.Seq, sfin.Ack, sfin.Flags, sfin.MSS, sfin.WScale, sfin.SACKOK = 5001, 102, synth.FIN|synth.ACK, 0, -1, false
		c.add(4*ms, fr(sfin))
		last := ack(a, 5000)
		last.Seq, last.Ack = 102, 5002
		c.add(5*ms, fr(last))
		a2 := syn(cli4, srv4, 49801, 900, 2)
		c.add(1*time.Second, fr(a2))
		c.add(1*time.Second+ms, fr(synack(a2, 6000)))
		c.add(1*time.Second+2*ms, fr(ack(a2, 6000)))

		b := syn(cli4, srv4, 49802, 300, 1)
		c.add(10*ms, fr(b))
		rst := synth.Seg{Src: srv4, Dst: cli4, Sport: 8080, Dport: 49802, Seq: 0, Ack: 301, Flags: synth.RST | synth.ACK, WScale: -1}
		c.add(11*ms, fr(rst))
		c.add(2*time.Second, fr(b)) // the same SYN again, same ISN
		c.add(2*time.Second+ms, fr(synack(b, 8000)))
		c.add(2*time.Second+2*ms, fr(ack(b, 8000)))

		r := c.report(t, Config{ZeekRows: zr})
		ra := rowsFor(r, 49801)
		if len(ra) != 2 || ra[0].ConnState != "SF" || ra[1].History != "ShA" {
			t.Errorf("zeek rows %v: after FIN: %q, want SF then ShA", zr, rowText(ra))
		}
		rb := rowsFor(r, 49802)
		if len(rb) != 2 || rb[0].ConnState != "REJ" || rb[0].Verdict != VerdictRefused || rb[1].History != "ShA" || rb[1].Verdict != VerdictEstablished {
			t.Errorf("zeek rows %v: after RST: %q, want REJ refused then ShA established", zr, rowText(rb))
		}
	}
}

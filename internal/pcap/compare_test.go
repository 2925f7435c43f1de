package pcap

import (
	"bytes"
	"encoding/json"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/pcap/synth"
)

// twoSides synthesizes a client-side and a server-side capture of the
// same traffic, with masquerading NAT between them (the server sees the
// router's address and another port) and the server clock 3.2 s ahead.
type twoSides struct {
	cli, srv capture
}

const (
	skew  = 3200 * time.Millisecond
	delay = time.Millisecond
)

var natAddr = netip.MustParseAddr("10.77.2.1")

func natted(s synth.Seg) synth.Seg {
	if s.Src == cli4 {
		s.Src, s.Sport = natAddr, s.Sport+10000
	}
	if s.Dst == cli4 {
		s.Dst, s.Dport = natAddr, s.Dport+10000
	}
	return s
}

// up sends a client packet at client time at; reach says whether it gets
// to the server.
func (w *twoSides) up(at time.Duration, s synth.Seg, reach bool) {
	w.cli.add(at, s.Frame())
	if reach {
		n := natted(s)
		w.srv.add(at+delay+skew, n.Frame())
	}
}

// down sends a server packet (given in client addressing) at client time
// at.
func (w *twoSides) down(at time.Duration, s synth.Seg, reach bool) {
	n := natted(s)
	w.srv.add(at+skew, n.Frame())
	if reach {
		w.cli.add(at+delay, s.Frame())
	}
}

func TestCompareDeaths(t *testing.T) {
	var w twoSides
	sec := time.Second
	// delivered
	a := syn(cli4, srv4, 41001, 100, 1000000)
	w.up(0, a, true)
	w.down(1*time.Millisecond+delay, synack(a, 5000), true)
	w.up(3*time.Millisecond, ack(a, 5000), true)
	// lost-to-server: three SYNs dropped on the way.
	b := syn(cli4, srv4, 41002, 200, 2000000)
	for i, at := range []time.Duration{10 * time.Millisecond, 1 * sec, 3 * sec} {
		s := b
		s.TSval += uint32(i)
		w.up(at, s, false)
	}
	// server-silent: SYNs arrive, nothing answers.
	c := syn(cli4, srv4, 41003, 300, 3000000)
	for i, at := range []time.Duration{20 * time.Millisecond, 1 * sec, 3 * sec} {
		s := c
		s.TSval += uint32(i)
		w.up(at, s, true)
	}
	// lost-to-client: SYN-ACKs leave the server and vanish.
	d := syn(cli4, srv4, 41004, 400, 4000000)
	for i, at := range []time.Duration{30 * time.Millisecond, 1030 * time.Millisecond} {
		s := d
		s.TSval += uint32(i)
		w.up(at, s, true)
		w.down(at+2*time.Millisecond, synack(s, 6000), false)
	}
	// refused by the server.
	e := syn(cli4, srv4, 41005, 500, 5000000)
	w.up(40*time.Millisecond, e, true)
	w.down(41*time.Millisecond+delay, synth.Seg{Src: srv4, Dst: cli4, Sport: 8080, Dport: 41005, Ack: 501, Flags: synth.RST | synth.ACK, WScale: -1}, true)

	cfg := Config{KeepPackets: true}
	cmp := Compare(w.cli.analyze(t, cfg), w.srv.analyze(t, cfg))
	if math.Abs(cmp.ClockOffset-skew.Seconds()) > 0.0005 {
		t.Errorf("clock offset %.6f, want %.6f", cmp.ClockOffset, skew.Seconds())
	}
	want := map[uint16]Death{41001: DeathDelivered, 41002: DeathLostToServer, 41003: DeathServerSilent, 41004: DeathLostToClient, 41005: DeathRefused}
	if len(cmp.Connections) != len(want) {
		t.Fatalf("%d connections, want %d", len(cmp.Connections), len(want))
	}
	for _, p := range cmp.Connections {
		port := p.ClientTuple.OrigP
		if p.Death != want[port] {
			t.Errorf("port %d: death %s (%s), want %s", port, p.Death, p.Detail, want[port])
		}
		if p.ServerTuple != nil && (p.ServerTuple.OrigH != natAddr.String() || p.ServerTuple.OrigP != port+10000) {
			t.Errorf("port %d paired with server-side %+v", port, p.ServerTuple)
		}
	}
	var buf bytes.Buffer
	if err := cmp.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var j struct {
		ClockOffset *float64 `json:"clock_offset"`
		Connections []struct {
			Death       string         `json:"death"`
			ClientTuple map[string]any `json:"client_tuple"`
		} `json:"connections"`
	}
	if err := json.Unmarshal(buf.Bytes(), &j); err != nil || j.ClockOffset == nil || j.Connections[0].Death == "" || j.Connections[0].ClientTuple["orig_h"] == nil {
		t.Errorf("JSON shape: %v\n%s", err, buf.String())
	}
}

package capture

import (
	"net/netip"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/packet"
	pt "github.com/synscope/synscope/internal/packet/packettest"
)

func pkt(src, dst netip.AddrPort, flags uint8) *Packet {
	return &Packet{Src: src, Dst: dst, Flags: flags, TTL: 64, HasMAC: true, SrcMAC: [6]byte{2, 0, 0, 0, 0, 9}}
}

var t0 = time.Unix(1_700_000_000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// A forwarding namespace sees the SYN arrive on one interface and leave on
// another, and the SYN-ACK the other way round: each must count once.
func TestTableForwarding(t *testing.T) {
	tb := newTable(Options{})
	in := seen{ifindex: 2}
	out := seen{ifindex: 3, outgoing: true}
	syn := pkt(v4c, v4s, FlagSYN)
	synack := pkt(v4s, v4c, FlagSYN|FlagACK)
	in.at, out.at = at(0), at(0)
	tb.add(syn, in)
	tb.add(syn, out)
	in.at, out.at = at(1000), at(1000)
	tb.add(syn, in) // retransmission
	tb.add(syn, out)
	back := seen{ifindex: 3, at: at(1001)}
	fwd := seen{ifindex: 2, outgoing: true, at: at(1001)}
	tb.add(synack, back)
	tb.add(synack, fwd)
	fl := tb.result()
	if len(fl) != 1 {
		t.Fatalf("want 1 flow, got %d", len(fl))
	}
	f := fl[0]
	if f.Dir != Inbound || f.Ifindex != 2 || f.SYNs != 2 || f.SYNACKs != 1 || !f.Answered() {
		t.Errorf("unexpected %+v", f)
	}
	if !f.FirstSYN.Equal(at(0)) || !f.LastSYN.Equal(at(1000)) || !f.FirstSYNACK.Equal(at(1001)) {
		t.Errorf("times %v %v %v", f.FirstSYN, f.LastSYN, f.FirstSYNACK)
	}
	if f.ClientMAC.String() != "02:00:00:00:00:09" {
		t.Errorf("mac %v", f.ClientMAC)
	}
	if tb.packets != 6 {
		t.Errorf("packets %d", tb.packets)
	}
}

func TestTableOutboundRefusedAndClientRST(t *testing.T) {
	tb := newTable(Options{})
	out := seen{ifindex: 2, outgoing: true, at: at(0)}
	in := seen{ifindex: 2, at: at(1)}
	tb.add(pkt(v4c, v4s, FlagSYN), out)
	tb.add(pkt(v4s, v4c, FlagRST|FlagACK), in)
	other := netip.MustParseAddrPort("10.77.0.2:40001")
	tb.add(pkt(other, v4s, FlagSYN), out)
	tb.add(pkt(v4s, other, FlagSYN|FlagACK), in)
	tb.add(pkt(other, v4s, FlagRST), out) // client aborts
	tb.add(pkt(v6s, v6c, FlagRST), in)    // RST for no tracked flow
	tb.add(pkt(v6s, v6c, FlagSYN|FlagACK), in)
	r := &Result{Flows: tb.result()}
	if len(r.Flows) != 2 {
		t.Fatalf("flows %d", len(r.Flows))
	}
	a, b := r.Flows[0], r.Flows[1]
	if a.Dir != Outbound || !a.Refused() || a.RSTs != 1 {
		t.Errorf("refused flow: %+v", a)
	}
	if !b.Answered() || b.ClientRSTs != 1 || b.RSTs != 0 {
		t.Errorf("client-reset flow: %+v", b)
	}
	if len(r.Unanswered(Outbound)) != 0 || len(r.Unanswered(Inbound)) != 0 {
		t.Errorf("unexpected unanswered flows")
	}
}

func TestTableLimitsAndPorts(t *testing.T) {
	tb := newTable(Options{MaxFlows: 2, Ports: []uint16{8080}})
	s := seen{ifindex: 2}
	for i := 0; i < 4; i++ {
		c := netip.AddrPortFrom(v4c.Addr(), uint16(40000+i))
		tb.add(pkt(c, v4s, FlagSYN), s)
		tb.add(pkt(c, v4s, FlagSYN), s)
	}
	// Kernel filter lets through either port; Go keeps only the server port.
	tb.add(pkt(v4s, netip.MustParseAddrPort("10.77.0.9:9000"), FlagSYN), s)
	if len(tb.flows) != 2 || tb.overflow != 4 {
		t.Errorf("flows %d overflow %d, want 2 and 4", len(tb.flows), tb.overflow)
	}
	r := &Result{Flows: tb.result()}
	un := r.Unanswered(Inbound)
	if len(un) != 2 || un[0].SYNs != 2 {
		t.Errorf("unanswered %+v", un)
	}
}

// BenchmarkReadPath measures what the read loop does per packet after the
// syscall: decode plus flow accounting (a SYN-ACK for a tracked flow).
func BenchmarkReadPath(b *testing.B) {
	tb := newTable(Options{})
	syn := pt.Craft(b, pt.Frame{Src: v4c, Dst: v4s, SYN: true, TTL: 64, MSS: 1460})
	synack := pt.Craft(b, pt.Frame{Src: v4s, Dst: v4c, SYN: true, ACK: true, TTL: 64, MSS: 1460})
	p, _ := Decode(syn, packet.ARPHRDEther)
	tb.add(&p, seen{ifindex: 2, at: t0})
	out := seen{ifindex: 2, outgoing: true, at: t0}
	b.ReportAllocs()
	for b.Loop() {
		p, ok := Decode(synack, packet.ARPHRDEther)
		if !ok {
			b.Fatal("rejected")
		}
		tb.add(&p, out)
	}
}

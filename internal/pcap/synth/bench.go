package synth

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"
)

// BenchOptions shape a benchmark capture; zero Flows and Open take the
// defaults, zero FailPct means no failures.
type BenchOptions struct {
	// Flows is the number of distinct connections (default 100000),
	// reused round-robin until the size is reached.
	Flows int
	// Open is the number of connections in flight at once (default 2000).
	Open int
	// FailPct is the percentage of connections that fail (half SYN
	// timeouts, half refused).
	FailPct float64
	// Spacing is the time between packets (default 10 µs: a busy
	// server's 100k packets/s).
	Spacing time.Duration
}

// WriteBench writes a classic pcap of about size bytes: interleaved TCP
// connections over IPv4, IPv6 and 802.1Q-tagged Ethernet, packets 10 µs apart,
// most completing normally, FailPct percent timing out (SYN
// retransmissions) or refused (RST). The output is deterministic.
func WriteBench(out io.Writer, size int64, o BenchOptions) error {
	nflows, open, failPct := o.Flows, o.Open, o.FailPct
	if nflows <= 0 {
		nflows = 100000
	}
	if open <= 0 {
		open = 2000
	}
	spacing := int64(o.Spacing)
	if spacing <= 0 {
		spacing = int64(10 * time.Microsecond)
	}
	w, err := NewPcapWriter(out, 1, binary.LittleEndian, false)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	id := 0
	newFlow := func() *benchFlow {
		id++
		n := id % nflows
		fl := &benchFlow{sport: uint16(1024 + n%60000), isn: rng.Uint32(), srvISN: rng.Uint32(), data: 2 + rng.IntN(8), ts: rng.Uint32()}
		switch n % 3 {
		case 0:
			fl.cli = netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
			fl.srv = netip.AddrFrom4([4]byte{192, 168, 0, byte(n % 50)})
		case 1:
			fl.cli = netip.AddrFrom16([16]byte{0xfd, 0, 0, 1, 14: byte(n >> 8), 15: byte(n)})
			fl.srv = netip.AddrFrom16([16]byte{0xfd, 0, 0, 2, 15: byte(n % 50)})
		default:
			fl.cli = netip.AddrFrom4([4]byte{172, 16, byte(n >> 8), byte(n)})
			fl.srv = netip.AddrFrom4([4]byte{192, 168, 1, byte(n % 50)})
			fl.vlan = []uint16{uint16(100 + n%10)}
		}
		if r := rng.Float64() * 100; r < failPct/2 {
			fl.kind = 1
		} else if r < failPct {
			fl.kind = 2
		}
		return fl
	}
	live := make([]*benchFlow, open)
	for i := range live {
		live[i] = newFlow()
	}
	var written int64
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for written < size {
		i := rng.IntN(len(live))
		fl := live[i]
		seg, done := fl.next()
		if done {
			live[i] = newFlow()
			continue
		}
		ts += spacing
		frame := seg.Frame()
		if err := w.Write(ts, frame); err != nil {
			return err
		}
		written += int64(16 + len(frame))
	}
	return w.Flush()
}

// flow is one scripted connection; step walks its packets.
type benchFlow struct {
	cli, srv    netip.Addr
	sport       uint16
	vlan        []uint16
	kind        int // 0 ok, 1 syn timeout, 2 refused
	step        int
	isn, srvISN uint32
	data        int
	ts          uint32
}

// next returns the flow's next segment.
func (f *benchFlow) next() (Seg, bool) {
	s := Seg{Src: f.cli, Dst: f.srv, Sport: f.sport, Dport: 443, VLAN: f.vlan, WScale: -1, TS: true, TSval: f.ts + uint32(f.step), IPID: uint16(f.step)}
	rev := func() {
		s.Src, s.Dst, s.Sport, s.Dport = f.srv, f.cli, 443, f.sport
	}
	st := f.step
	f.step++
	if st == 0 || (f.kind == 1 && st < 3) {
		s.Seq, s.Flags, s.MSS, s.WScale, s.SACKOK = f.isn, SYN, 1460, 7, true
		return s, false
	}
	switch f.kind {
	case 1:
		return s, true
	case 2:
		if st == 1 {
			rev()
			s.Ack, s.Flags = f.isn+1, RST|ACK
			return s, false
		}
		return s, true
	}
	switch {
	case st == 1:
		rev()
		s.Seq, s.Ack, s.Flags, s.MSS, s.WScale, s.SACKOK = f.srvISN, f.isn+1, SYN|ACK, 1460, 7, true
	case st == 2:
		s.Seq, s.Ack, s.Flags = f.isn+1, f.srvISN+1, ACK
	case st < 3+2*f.data:
		k := (st - 3) / 2
		if (st-3)%2 == 0 {
			s.Seq, s.Ack, s.Flags, s.Payload = f.isn+1+uint32(k*100), f.srvISN+1+uint32(k*200), ACK|PSH, 100
		} else {
			rev()
			s.Seq, s.Ack, s.Flags, s.Payload = f.srvISN+1+uint32(k*200), f.isn+1+uint32((k+1)*100), ACK|PSH, 200
		}
	case st == 3+2*f.data:
		s.Seq, s.Ack, s.Flags = f.isn+1+uint32(f.data*100), f.srvISN+1+uint32(f.data*200), FIN|ACK
	case st == 4+2*f.data:
		rev()
		s.Seq, s.Ack, s.Flags = f.srvISN+1+uint32(f.data*200), f.isn+2+uint32(f.data*100), FIN|ACK
	case st == 5+2*f.data:
		s.Seq, s.Ack, s.Flags = f.isn+2+uint32(f.data*100), f.srvISN+2+uint32(f.data*200), ACK
	default:
		return s, true
	}
	return s, false
}

// WriteFlood writes a SYN flood as a server-side capture sees it: n SYNs
// to 10.77.2.2:8080 from n distinct (spoofed) IPv4 sources, 2 µs apart,
// each answered by a SYN-ACK that nobody acknowledges.
func WriteFlood(w io.Writer, n int) error {
	pw, err := NewPcapWriter(w, 1, binary.LittleEndian, true)
	if err != nil {
		return err
	}
	srv := netip.AddrFrom4([4]byte{10, 77, 2, 2})
	base := int64(1_700_000_000 * time.Second)
	for i := range n {
		src := netip.AddrFrom4([4]byte{100 + byte(i>>24&63), byte(i >> 16), byte(i >> 8), byte(i)})
		s := Seg{Src: src, Dst: srv, Sport: uint16(1024 + i%60000), Dport: 8080, Seq: uint32(i) * 7919, Flags: SYN, MSS: 1460, WScale: 7, SACKOK: true}
		sa := Seg{Src: srv, Dst: src, Sport: 8080, Dport: s.Sport, Seq: uint32(i), Ack: s.Seq + 1, Flags: SYN | ACK, MSS: 1460, WScale: 7, SACKOK: true}
		if err := pw.Write(base+int64(i)*2000, s.Frame()); err != nil {
			return err
		}
		if err := pw.Write(base+int64(i)*2000+1000, sa.Frame()); err != nil {
			return err
		}
	}
	return pw.Flush()
}

package probe

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/synscope/synscope/internal/packet/checksum"
)

// ipPacket builds an IPv4 or IPv6 header (no options) around payload.
func ipPacket(src, dst netip.Addr, proto byte, payload []byte) []byte {
	if src.Is4() {
		h := make([]byte, 20)
		h[0], h[8], h[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
		s, d := src.As4(), dst.As4()
		copy(h[12:], s[:])
		copy(h[16:], d[:])
		return append(h, payload...)
	}
	h := make([]byte, 40)
	h[0], h[6], h[7] = 0x60, proto, 64
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, payload...)
}

func icmpErr(typ, code byte, quoted []byte) []byte {
	return append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, quoted...)
}

func runFilter(t *testing.T, prog []bpf.Instruction, pkt []byte) int {
	t.Helper()
	// x/net/bpf's VM has no packet-type extension: run the program after
	// its PACKET_OUTGOING check (two instructions; all jumps are forward).
	if _, ok := prog[0].(bpf.LoadExtension); !ok {
		t.Fatalf("program does not start with the packet-type check: %v", prog[0])
	}
	vm, err := bpf.NewVM(prog[2:])
	if err != nil {
		t.Fatal(err)
	}
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAnswerFilterAndParse(t *testing.T) {
	for _, fam := range []struct {
		name          string
		local, remote netip.AddrPort
		other         netip.Addr
		unreach, ttl  byte
		icmpProto     byte
	}{
		{"ipv4", netip.MustParseAddrPort("10.77.1.2:40000"), netip.MustParseAddrPort("10.77.2.2:8080"), netip.MustParseAddr("10.77.1.1"), 3, 11, 1},
		{"ipv6", netip.MustParseAddrPort("[fd77:1::2]:40000"), netip.MustParseAddrPort("[fd77:2::2]:8080"), netip.MustParseAddr("fd77:1::1"), 1, 3, 58},
	} {
		t.Run(fam.name, func(t *testing.T) {
			prog, err := answerFilter(fam.local, fam.remote)
			if err != nil {
				t.Fatal(err)
			}
			const isn = 0x01020304
			syn := tcpSegment(fam.local, fam.remote, isn, 0, tcpFlagSYN, true)
			synack := tcpSegment(fam.remote, fam.local, 777, isn+1, tcpFlagSYN|tcpFlagACK, true)
			rst := tcpSegment(fam.remote, fam.local, 0, isn+1, tcpFlagRST|tcpFlagACK, false)
			otherPort := tcpSegment(netip.AddrPortFrom(fam.remote.Addr(), 8081), fam.local, 777, isn+1, tcpFlagSYN|tcpFlagACK, true)
			quoted := ipPacket(fam.local.Addr(), fam.remote.Addr(), 6, syn)
			wrongQuote := ipPacket(fam.local.Addr(), fam.remote.Addr(), 6, tcpSegment(netip.AddrPortFrom(fam.local.Addr(), 40001), fam.remote, isn, 0, tcpFlagSYN, true))

			cases := []struct {
				name string
				pkt  []byte
				pass bool
				want Outcome
			}{
				{"syn-ack", ipPacket(fam.remote.Addr(), fam.local.Addr(), 6, synack), true, OutConnected},
				{"rst", ipPacket(fam.remote.Addr(), fam.local.Addr(), 6, rst), true, OutRefused},
				{"unreachable", ipPacket(fam.other, fam.local.Addr(), fam.icmpProto, icmpErr(fam.unreach, 4, quoted)), true, OutUnreachable},
				{"time-exceeded", ipPacket(fam.other, fam.local.Addr(), fam.icmpProto, icmpErr(fam.ttl, 0, quoted)), true, OutTTLExceeded},
				{"our own SYN", ipPacket(fam.local.Addr(), fam.remote.Addr(), 6, syn), false, ""},
				{"another port", ipPacket(fam.remote.Addr(), fam.local.Addr(), 6, otherPort), false, ""},
				{"another source", ipPacket(fam.other, fam.local.Addr(), 6, synack), false, ""},
				{"ICMP quoting another port", ipPacket(fam.other, fam.local.Addr(), fam.icmpProto, icmpErr(fam.unreach, 4, wrongQuote)), false, ""},
				{"ICMP echo reply", ipPacket(fam.other, fam.local.Addr(), fam.icmpProto, icmpErr(0, 0, quoted)), false, ""},
			}
			for _, c := range cases {
				n := runFilter(t, prog, c.pkt)
				if (n > 0) != c.pass {
					t.Errorf("%s: filter returned %d, want pass=%v", c.name, n, c.pass)
				}
				if !c.pass {
					continue
				}
				a := parseAnswer(c.pkt, isn)
				if a.outcome != c.want {
					t.Errorf("%s: parsed %q, want %q", c.name, a.outcome, c.want)
				}
			}
			// A SYN-ACK acknowledging another ISN passes the 4-tuple
			// filter but is not this SYN's answer.
			if a := parseAnswer(ipPacket(fam.remote.Addr(), fam.local.Addr(), 6, tcpSegment(fam.remote, fam.local, 1, 5, tcpFlagSYN|tcpFlagACK, false)), isn); a.outcome != "" {
				t.Errorf("SYN-ACK for another ISN parsed as %q", a.outcome)
			}
			a := parseAnswer(ipPacket(fam.other, fam.local.Addr(), fam.icmpProto, icmpErr(fam.unreach, 4, quoted)), isn)
			if a.from != fam.other || a.icmpType != int(fam.unreach) || a.icmpCode != 4 || a.quote != "sport 40000 dport 8080 seq 16909060" {
				t.Errorf("ICMP answer: %+v", a)
			}
		})
	}
}

func TestTCPSegmentChecksum(t *testing.T) {
	for _, pair := range [][2]string{{"10.0.0.1:1234", "10.0.0.2:80"}, {"[fd00::1]:1234", "[fd00::2]:80"}} {
		src, dst := netip.MustParseAddrPort(pair[0]), netip.MustParseAddrPort(pair[1])
		seg := tcpSegment(src, dst, 42, 0, tcpFlagSYN, true)
		if len(seg) != 24 || seg[12]>>4 != 6 || seg[13] != tcpFlagSYN {
			t.Fatalf("%v: header %x", pair, seg)
		}
		var ph []byte
		if src.Addr().Is4() {
			s, d := src.Addr().As4(), dst.Addr().As4()
			ph = append(append(append(ph, s[:]...), d[:]...), 0, 6, 0, byte(len(seg)))
		} else {
			s, d := src.Addr().As16(), dst.Addr().As16()
			ph = append(append(append(ph, s[:]...), d[:]...), 0, 0, 0, byte(len(seg)), 0, 0, 0, 6)
		}
		if got := checksum.Of(seg, checksum.Sum(ph, 0)); got != 0xffff {
			t.Errorf("%v: checksum does not verify (%#x)", pair, got)
		}
	}
}

func TestProgressLine(t *testing.T) {
	at := []Attempt{{Seq: 1, Outcome: OutConnected, RTTms: 0.2}, {Seq: 2, Outcome: OutUnreachable, ICMPFrom: "10.77.1.1", ICMPType: 3, ICMPCode: 13}}
	got := ProgressLine("10.77.2.2", at[1], Summarize(at))
	want := "10.77.2.2 #2 icmp-unreachable from 10.77.1.1 | sent 2: connected 1, refused 0, timeout 0, unreachable 1, error 0; loss 0.0%; median 0.200 ms"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if got := ProgressLine("fd77:2::2\x1b[2J", Attempt{Seq: 1, Outcome: OutTimeout}, Summarize([]Attempt{{Outcome: OutTimeout}})); got != `fd77:2::2\x1b[2J #1 timeout | sent 1: connected 0, refused 0, timeout 1, unreachable 0, error 0; loss 100.0%` {
		t.Fatalf("got %q", got)
	}
}

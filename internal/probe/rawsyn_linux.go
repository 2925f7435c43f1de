package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/cbpf"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/packet/checksum"
)

// Raw-SYN mode (--raw). One attempt is exactly one SYN on the wire:
//
//  1. A TCP socket is bound (never listening, never connected) to the local
//     address and an ephemeral port: the port is reserved for the attempt,
//     so no connect() on this host picks the same 4-tuple meanwhile. A
//     bound socket is in no lookup table for incoming segments, so the
//     kernel still answers a SYN-ACK to that port with a RST of its own.
//  2. An AF_PACKET socket (SOCK_DGRAM: data starts at the IP header) with a
//     classic BPF filter in the kernel passes only what answers this
//     4-tuple: TCP from the destination's address and port to ours, or an
//     ICMP/ICMPv6 destination unreachable or time exceeded addressed to
//     us whose quoted IP and TCP headers are our SYN's.
//  3. The SYN (MSS option only, random ISN) goes out once through a raw
//     socket (SOCK_RAW, IPPROTO_TCP: the kernel writes the IP header, the
//     probe the TCP header and checksum), whose own receive path is closed
//     by a drop-all filter.
//  4. The first answer decides the outcome: SYN-ACK acknowledging ISN+1
//     (connected, RTT = send to receive), RST (refused), an ICMP error
//     (reporter, type, code), or nothing within the timeout. After a
//     SYN-ACK the probe sends a RST with sequence ISN+1 from the raw
//     socket: with the kernel's own RST that makes two on the wire, and the
//     server's request socket is gone either way. No SYN is retransmitted.
//
// It needs CAP_NET_RAW in the namespace; without it Run falls back to
// connect() and says so in its checks.

const (
	rawSnap    = 256   // bytes of an answer the filter passes
	rawMSS4    = 1460  // MSS option of the probe's SYN
	rawMSS6    = 1440  //
	rawWindow  = 64240 // window of the probe's SYN
	tcpFlagSYN = 0x02
	tcpFlagRST = 0x04
	tcpFlagACK = 0x10
)

// rawSpec is one raw-SYN attempt.
type rawSpec struct {
	t       *netns.Target
	dst     netip.AddrPort
	src     netip.Addr // the local address (from --source or the route)
	mark    uint32
	timeout time.Duration
	// resv, when set, is the port's reservation, already bound (its port
	// was named to the server's watch); synOnce takes it over.
	resv *reservedPort
}

// rawAvailable opens (and closes) the sockets raw mode needs, in the
// namespace; an error says why raw mode cannot run.
func rawAvailable(t *netns.Target, v6 bool) error {
	af := unix.AF_INET
	if v6 {
		af = unix.AF_INET6
	}
	return t.Do(func() error {
		fd, err := unix.Socket(af, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		unix.Close(fd)
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		unix.Close(fd)
		return nil
	})
}

// synOnce sends one SYN and reads the answer (see the comment above).
func synOnce(ctx context.Context, s rawSpec) dialResult {
	dst := netip.AddrPortFrom(s.dst.Addr().Unmap(), s.dst.Port())
	src := s.src.Unmap()
	v6 := dst.Addr().Is6()
	if !src.IsValid() || src.Is6() != v6 {
		if s.resv != nil {
			unix.Close(s.resv.fd)
		}
		return dialResult{outcome: OutLocalError, err: "no local address for the flow (the route lookup failed)"}
	}
	af := unix.AF_INET
	if v6 {
		af = unix.AF_INET6
	}
	var resv, raw, pkt int = -1, -1, -1
	defer func() {
		for _, fd := range []int{pkt, raw, resv} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	var lport uint16
	err := s.t.Do(func() error {
		var e error
		if s.resv != nil {
			resv, lport = s.resv.fd, s.resv.port
		} else {
			if resv, e = unix.Socket(af, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); e != nil {
				return fmt.Errorf("socket: %w", e)
			}
			if e = unix.Bind(resv, sockaddr(netip.AddrPortFrom(src, 0))); e != nil {
				return fmt.Errorf("reserving a port on %s: %w", src, e)
			}
			if lport = localPort(resv); lport == 0 {
				return errors.New("reserving a port: no port bound")
			}
		}
		if raw, e = unix.Socket(af, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); e != nil {
			return fmt.Errorf("raw socket: %w", e)
		}
		if e = attachFilter(raw, []bpf.Instruction{bpf.RetConstant{Val: 0}}); e != nil {
			return e
		}
		if s.mark != 0 {
			if e = unix.SetsockoptInt(raw, unix.SOL_SOCKET, unix.SO_MARK, int(s.mark)); e != nil {
				return fmt.Errorf("SO_MARK: %w", e)
			}
		}
		if e = unix.Bind(raw, sockaddr(netip.AddrPortFrom(src, 0))); e != nil {
			return fmt.Errorf("bind raw socket to %s: %w", src, e)
		}
		if pkt, e = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); e != nil {
			return fmt.Errorf("packet socket: %w", e)
		}
		prog, e := answerFilter(netip.AddrPortFrom(src, lport), dst)
		if e != nil {
			return e
		}
		if e = attachFilter(pkt, prog); e != nil {
			return e
		}
		return unix.Bind(pkt, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL)})
	})
	res := dialResult{lport: lport}
	if err != nil {
		res.outcome, res.err = OutLocalError, errText(err)
		return res
	}
	var isnb [4]byte
	_, _ = rand.Read(isnb[:])
	isn := binary.BigEndian.Uint32(isnb[:])
	syn := tcpSegment(netip.AddrPortFrom(src, lport), dst, isn, 0, tcpFlagSYN, true)
	start := time.Now()
	if err := unix.Sendto(raw, syn, 0, sockaddr(netip.AddrPortFrom(dst.Addr(), 0))); err != nil {
		res.outcome, res.err = OutLocalError, "sendto: "+errText(err)
		return res
	}
	deadline := start.Add(s.timeout)
	buf := make([]byte, rawSnap)
	for {
		wait := time.Until(deadline)
		if wait <= 0 || ctx.Err() != nil {
			res.outcome, res.rtt = OutTimeout, time.Since(start)
			return res
		}
		pfd := []unix.PollFd{{Fd: int32(pkt), Events: unix.POLLIN}}
		n, perr := unix.Poll(pfd, int(min(wait, 100*time.Millisecond)/time.Millisecond)+1)
		if perr != nil && !errors.Is(perr, unix.EINTR) {
			res.outcome, res.err = OutLocalError, "poll: "+perr.Error()
			return res
		}
		if n <= 0 {
			continue
		}
		for range 16 { // bounded drain of what is queued
			m, _, rerr := unix.Recvfrom(pkt, buf, unix.MSG_DONTWAIT)
			if rerr != nil {
				break
			}
			now := time.Now()
			ans := parseAnswer(buf[:m], isn)
			if ans.outcome == "" {
				continue // not an answer to this SYN (e.g. an old ACK)
			}
			res.outcome, res.rtt, res.ttl = ans.outcome, now.Sub(start), ans.ttl
			if ans.outcome == OutUnreachable || ans.outcome == OutTTLExceeded {
				res.icmpFrom, res.icmpType, res.icmpCode, res.quote = ans.from, ans.icmpType, ans.icmpCode, ans.quote
				res.err = "ICMP error quoting the SYN"
			}
			switch ans.outcome {
			case OutConnected:
				rst := tcpSegment(netip.AddrPortFrom(src, lport), dst, isn+1, 0, tcpFlagRST, false)
				if err := unix.Sendto(raw, rst, 0, sockaddr(netip.AddrPortFrom(dst.Addr(), 0))); err != nil {
					res.err = "sending the RST after the SYN-ACK: " + errText(err)
				}
			case OutRefused:
				res.err = "connection refused (RST)"
			}
			return res
		}
	}
}

// rawAnswer is what one filtered packet says about the SYN.
type rawAnswer struct {
	outcome  Outcome // "" when the packet does not answer the SYN
	from     netip.Addr
	icmpType int
	icmpCode int
	quote    string
	ttl      int // IP TTL / hop limit of the answer as received
}

// parseAnswer reads a packet the answer filter passed (IP header first).
func parseAnswer(p []byte, isn uint32) rawAnswer {
	if len(p) < 1 {
		return rawAnswer{}
	}
	var l4 []byte
	var proto byte
	var from netip.Addr
	var ttl int
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			return rawAnswer{}
		}
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || len(p) < ihl {
			return rawAnswer{}
		}
		proto, from, l4, ttl = p[9], netip.AddrFrom4([4]byte(p[12:16])), p[ihl:], int(p[8])
	case 6:
		if len(p) < 40 {
			return rawAnswer{}
		}
		proto, from, l4, ttl = p[6], netip.AddrFrom16([16]byte(p[8:24])), p[40:], int(p[7])
	default:
		return rawAnswer{}
	}
	switch proto {
	case unix.IPPROTO_TCP:
		if len(l4) < 14 {
			return rawAnswer{}
		}
		flags := l4[13]
		ack := binary.BigEndian.Uint32(l4[8:])
		switch {
		case flags&(tcpFlagSYN|tcpFlagACK|tcpFlagRST) == tcpFlagSYN|tcpFlagACK && ack == isn+1:
			return rawAnswer{outcome: OutConnected, from: from, ttl: ttl}
		case flags&tcpFlagRST != 0 && (flags&tcpFlagACK == 0 || ack == isn+1):
			return rawAnswer{outcome: OutRefused, from: from, ttl: ttl}
		}
		return rawAnswer{}
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		if len(l4) < 8 {
			return rawAnswer{}
		}
		a := rawAnswer{from: from, icmpType: int(l4[0]), icmpCode: int(l4[1]), ttl: ttl}
		v6 := proto == unix.IPPROTO_ICMPV6
		if (!v6 && a.icmpType == 11) || (v6 && a.icmpType == 3) {
			a.outcome = OutTTLExceeded
		} else {
			a.outcome = OutUnreachable
		}
		inner := l4[8:]
		off := 40
		if !v6 && len(inner) > 0 {
			off = int(inner[0]&0x0f) * 4
		}
		if len(inner) >= off+8 {
			a.quote = quoteText(inner[off:])
			if binary.BigEndian.Uint32(inner[off+4:]) != isn {
				return rawAnswer{} // quotes another SYN of this 4-tuple
			}
		}
		return a
	}
	return rawAnswer{}
}

// tcpSegment builds a TCP header (with an MSS option when mss is set) and
// its checksum over the IPv4 or IPv6 pseudo-header.
func tcpSegment(src, dst netip.AddrPort, seq, ack uint32, flags byte, mss bool) []byte {
	n := 20
	if mss {
		n = 24
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = byte(n/4) << 4
	b[13] = flags
	if flags&tcpFlagSYN != 0 {
		binary.BigEndian.PutUint16(b[14:], rawWindow)
	}
	if mss {
		v := uint16(rawMSS4)
		if dst.Addr().Is6() {
			v = rawMSS6
		}
		b[20], b[21] = 2, 4
		binary.BigEndian.PutUint16(b[22:], v)
	}
	var ph []byte
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if d.Is4() {
		s4, d4 := s.As4(), d.As4()
		ph = append(append(append(ph, s4[:]...), d4[:]...), 0, unix.IPPROTO_TCP, byte(n>>8), byte(n))
	} else {
		s16, d16 := s.As16(), d.As16()
		ph = append(append(append(ph, s16[:]...), d16[:]...), 0, 0, byte(n>>8), byte(n), 0, 0, 0, unix.IPPROTO_TCP)
	}
	binary.BigEndian.PutUint16(b[16:], ^checksum.Of(b, checksum.Sum(ph, 0)))
	return b
}

func attachFilter(fd int, prog []bpf.Instruction) error {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("bpf: %w", err)
	}
	f := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		f[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fp := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp); err != nil {
		return fmt.Errorf("attaching BPF filter: %w", err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// answerFilter is the classic BPF program for a packet socket of type
// SOCK_DGRAM (offset 0 = the IP header) that passes only the answers to
// the SYN from local to remote: TCP from remote to local, or an ICMP
// (v4: 3 unreachable, 11 time exceeded; v6: 1 unreachable, 3 time
// exceeded) addressed to local quoting a TCP segment from local to remote.
// Packets the host sends are dropped (PACKET_OUTGOING). IPv6 extension
// headers are not walked: an answer carrying one is not seen.
func answerFilter(local, remote netip.AddrPort) ([]bpf.Instruction, error) {
	a := &cbpf.Asm{}
	a.Emit(bpf.LoadExtension{Num: bpf.ExtType})
	a.JumpIf(bpf.JumpEqual, 4, "drop", "") // PACKET_OUTGOING
	a.Emit(bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	lp, rp := uint32(local.Port()), uint32(remote.Port())
	if l := local.Addr().Unmap(); l.Is4() {
		r := remote.Addr().Unmap()
		l4, r4 := l.As4(), r.As4()
		lw, rw := binary.BigEndian.Uint32(l4[:]), binary.BigEndian.Uint32(r4[:])
		a.JumpIf(bpf.JumpEqual, 4, "", "drop")
		a.Emit(bpf.LoadAbsolute{Off: 16, Size: 4})
		a.JumpIf(bpf.JumpEqual, lw, "", "drop")
		a.Emit(bpf.LoadAbsolute{Off: 6, Size: 2})
		a.JumpIf(bpf.JumpBitsSet, 0x1fff, "drop", "") // a fragment
		a.Emit(bpf.LoadMemShift{Off: 0})              // X = IP header length
		a.Emit(bpf.LoadAbsolute{Off: 9, Size: 1})
		a.JumpIf(bpf.JumpEqual, unix.IPPROTO_TCP, "tcp4", "")
		a.JumpIf(bpf.JumpEqual, unix.IPPROTO_ICMP, "", "drop")
		a.Emit(bpf.LoadIndirect{Off: 0, Size: 1})
		a.JumpIf(bpf.JumpEqual, 3, "q4", "")
		a.JumpIf(bpf.JumpEqual, 11, "q4", "drop")
		a.Label("q4")
		a.Emit(bpf.LoadIndirect{Off: 8 + 9, Size: 1})
		a.JumpIf(bpf.JumpEqual, unix.IPPROTO_TCP, "", "drop")
		a.Emit(bpf.LoadIndirect{Off: 8 + 12, Size: 4})
		a.JumpIf(bpf.JumpEqual, lw, "", "drop")
		a.Emit(bpf.LoadIndirect{Off: 8 + 16, Size: 4})
		a.JumpIf(bpf.JumpEqual, rw, "", "drop")
		a.Emit( // X += the quoted header's length
			bpf.LoadIndirect{Off: 8, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
			bpf.ALUOpX{Op: bpf.ALUOpAdd},
			bpf.TAX{},
		)
		a.Emit(bpf.LoadIndirect{Off: 8, Size: 2})
		a.JumpIf(bpf.JumpEqual, lp, "", "drop")
		a.Emit(bpf.LoadIndirect{Off: 10, Size: 2})
		a.JumpIf(bpf.JumpEqual, rp, "accept", "drop")
		a.Label("tcp4")
		a.Emit(bpf.LoadAbsolute{Off: 12, Size: 4})
		a.JumpIf(bpf.JumpEqual, rw, "", "drop")
		a.Emit(bpf.LoadIndirect{Off: 0, Size: 2})
		a.JumpIf(bpf.JumpEqual, rp, "", "drop")
		a.Emit(bpf.LoadIndirect{Off: 2, Size: 2})
		a.JumpIf(bpf.JumpEqual, lp, "accept", "drop")
	} else {
		l16, r16 := l.As16(), remote.Addr().As16()
		words := func(off uint32, addr [16]byte) {
			for i := range uint32(4) {
				a.Emit(bpf.LoadAbsolute{Off: off + 4*i, Size: 4})
				a.JumpIf(bpf.JumpEqual, binary.BigEndian.Uint32(addr[4*i:]), "", "drop")
			}
		}
		a.JumpIf(bpf.JumpEqual, 6, "", "drop")
		words(24, l16) // destination = us
		a.Emit(bpf.LoadAbsolute{Off: 6, Size: 1})
		a.JumpIf(bpf.JumpEqual, unix.IPPROTO_TCP, "tcp6", "")
		a.JumpIf(bpf.JumpEqual, unix.IPPROTO_ICMPV6, "", "drop")
		a.Emit(bpf.LoadAbsolute{Off: 40, Size: 1})
		a.JumpIf(bpf.JumpEqual, 1, "q6", "")
		a.JumpIf(bpf.JumpEqual, 3, "q6", "drop")
		a.Label("q6")
		a.Emit(bpf.LoadAbsolute{Off: 48 + 6, Size: 1})
		a.JumpIf(bpf.JumpEqual, unix.IPPROTO_TCP, "", "drop")
		words(48+8, l16)
		words(48+24, r16)
		a.Emit(bpf.LoadAbsolute{Off: 88, Size: 2})
		a.JumpIf(bpf.JumpEqual, lp, "", "drop")
		a.Emit(bpf.LoadAbsolute{Off: 90, Size: 2})
		a.JumpIf(bpf.JumpEqual, rp, "accept", "drop")
		a.Label("tcp6")
		words(8, r16)
		a.Emit(bpf.LoadAbsolute{Off: 40, Size: 2})
		a.JumpIf(bpf.JumpEqual, rp, "", "drop")
		a.Emit(bpf.LoadAbsolute{Off: 42, Size: 2})
		a.JumpIf(bpf.JumpEqual, lp, "accept", "drop")
	}
	a.Label("accept")
	a.Emit(bpf.RetConstant{Val: rawSnap})
	a.Label("drop")
	a.Emit(bpf.RetConstant{Val: 0})
	return a.Program()
}

package probe

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/synscope/synscope/internal/netns"
)

// tracePath sends SYNs to dst with TTL 1, 2, ... (PathPorts source ports
// per TTL, in parallel) through connect() with IP_TTL and IP_RECVERR, so it
// needs no privilege: a router's time exceeded aborts the connect and
// lands in the socket's error queue with the router's address. It stops
// when the destination answers (SYN-ACK, reset by the probe at once, or
// RST), when a hop answers unreachable, or after PathSilentEnd silent TTLs.
func tracePath(ctx context.Context, t *netns.Target, dst netip.AddrPort, src netip.Addr, mark uint32, timeout time.Duration, ap *AddrProbe) {
	silent := 0
	for ttl := 1; ttl <= PathMaxTTL && ctx.Err() == nil; ttl++ {
		hop := Hop{TTL: ttl, Probes: make([]HopProbe, PathPorts)}
		var wg sync.WaitGroup
		for i := range PathPorts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := dialOnce(ctx, dialSpec{t: t, dst: dst, src: src, mark: mark, ttl: ttl, timeout: timeout})
				hp := HopProbe{LocalPort: r.lport, RTTms: ms(r.rtt)}
				switch r.outcome {
				case OutConnected:
					hp.Answer, hp.From = ansSynAck, dst.Addr().String()
				case OutRefused:
					hp.Answer, hp.From = ansRST, dst.Addr().String()
				case OutTTLExceeded:
					hp.Answer = ansTimeExceeded
				case OutUnreachable:
					hp.Answer = ansUnreachable
				case OutTimeout:
					hp.Answer, hp.RTTms = ansNone, 0
				default:
					hp.Answer, hp.Quote = ansLocal, r.err
				}
				if r.icmpFrom.IsValid() {
					hp.From = r.icmpFrom.String()
					hp.ICMPType, hp.ICMPCode = r.icmpType, r.icmpCode
					hp.Quote = r.quote
				}
				hop.Probes[i] = hp
			}()
		}
		wg.Wait()
		summarizeHop(&hop)
		ap.Path = append(ap.Path, hop)
		switch hop.Answer {
		case ansSynAck, ansRST:
			ap.Reached, ap.ReachTTL = true, ttl
			return
		case ansUnreachable, ansLocal:
			return
		case ansNone:
			silent++
			if silent >= PathSilentEnd {
				return
			}
			continue
		}
		silent = 0
		for _, p := range hop.Probes {
			if p.Answer == ansTimeExceeded {
				ap.LastHop, ap.LastAddr = ttl, p.From
				break
			}
		}
		if hop.Answer == "mixed" {
			for _, p := range hop.Probes {
				if p.Answer == ansSynAck || p.Answer == ansRST {
					ap.Reached, ap.ReachTTL = true, ttl
					return
				}
			}
		}
	}
}

// summarizeHop sets the hop's answer (the common one, or "mixed"), its
// first responder and best time.
func summarizeHop(h *Hop) {
	seen := map[string]bool{}
	for _, p := range h.Probes {
		seen[p.Answer] = true
		if p.From != "" && h.Addr == "" {
			h.Addr = p.From
		}
		if p.RTTms > 0 && (h.RTTms == 0 || p.RTTms < h.RTTms) {
			h.RTTms = p.RTTms
		}
	}
	delete(seen, ansNone)
	switch len(seen) {
	case 0:
		h.Answer = ansNone
	case 1:
		for a := range seen {
			h.Answer = a
		}
	default:
		h.Answer = "mixed"
	}
}

// pingReach sends one ICMP echo per TTL 1..maxTTL at once and returns the
// lowest TTL whose echo the destination answered (0: none, or ICMP could not
// be used, with the reason). It uses a raw socket when permitted, else an
// unprivileged ping socket.
func pingReach(ctx context.Context, t *netns.Target, dst netip.Addr, maxTTL int, wait time.Duration) (int, string) {
	v6 := dst.Is6()
	var c *icmp.PacketConn
	var privileged bool
	err := t.Do(func() error {
		var e error
		raw, udp := "ip4:icmp", "udp4"
		laddr := "0.0.0.0"
		if v6 {
			raw, udp, laddr = "ip6:ipv6-icmp", "udp6", "::"
		}
		if c, e = icmp.ListenPacket(raw, laddr); e == nil {
			privileged = true
			return nil
		}
		c, e = icmp.ListenPacket(udp, laddr)
		return e
	})
	if err != nil {
		return 0, "ICMP echo not possible: " + err.Error()
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	proto := 1
	typ := icmp.Type(ipv4.ICMPTypeEcho)
	if v6 {
		proto, typ = 58, ipv6.ICMPTypeEchoRequest
	}
	var to net.Addr = &net.IPAddr{IP: dst.AsSlice()}
	if !privileged {
		to = &net.UDPAddr{IP: dst.AsSlice()}
	}
	for ttl := 1; ttl <= maxTTL; ttl++ {
		if v6 {
			_ = c.IPv6PacketConn().SetHopLimit(ttl)
		} else {
			_ = c.IPv4PacketConn().SetTTL(ttl)
		}
		m := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: 0x5300 + ttl, Data: []byte("synscope probe")}}
		b, err := m.Marshal(nil)
		if err != nil {
			return 0, err.Error()
		}
		if _, err := c.WriteTo(b, to); err != nil {
			return 0, "ICMP echo: " + err.Error()
		}
	}
	best := 0
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for range 4 * maxTTL {
		if ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		_ = c.SetReadDeadline(deadline)
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			break
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || (m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply) {
			continue
		}
		if (privileged && e.ID != id) || e.Seq < 0x5301 || e.Seq > 0x5300+maxTTL {
			continue
		}
		if fa := addrOf(from); fa.IsValid() && fa != dst {
			continue
		}
		if ttl := e.Seq - 0x5300; best == 0 || ttl < best {
			best = ttl
			if best == 1 {
				break
			}
		}
	}
	return best, ""
}

func addrOf(a net.Addr) netip.Addr {
	switch x := a.(type) {
	case *net.IPAddr:
		ip, _ := netip.AddrFromSlice(x.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(x.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

package routes

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// addRoutesBatched installs n /32 routes 100.64.0.0+i via gw dev ifindex in
// the calling thread's namespace, packing many RTM_NEWROUTE messages per
// sendmsg and asking for an ACK only on the last of each batch (errors are
// reported regardless).
func addRoutesBatched(n int, gw netip.Addr, ifindex int) error {
	c, err := dialRoute()
	if err != nil {
		return err
	}
	defer c.close()
	const batch = 500
	base := binary.BigEndian.Uint32(netip.MustParseAddr("100.64.0.0").AsSlice())
	for start := 0; start < n; start += batch {
		var buf []byte
		end := min(start+batch, n)
		for i := start; i < end; i++ {
			hdr := make([]byte, unix.SizeofRtMsg)
			hdr[0], hdr[1], hdr[4], hdr[5], hdr[6], hdr[7] = unix.AF_INET, 32, unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST
			dst := make([]byte, 4)
			binary.BigEndian.PutUint32(dst, base+uint32(i))
			flags := uint16(unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_EXCL)
			if i == end-1 {
				flags |= unix.NLM_F_ACK
			}
			c.seq++
			buf = append(buf, buildMsg(unix.RTM_NEWROUTE, flags, c.seq, hdr, []nlAttr{
				{unix.RTA_DST, dst}, {unix.RTA_GATEWAY, gw.AsSlice()}, {unix.RTA_OIF, u32attr(uint32(ifindex))},
			})...)
		}
		if err := unix.Sendto(c.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("send batch: %w", err)
		}
		// Read until the ACK of the batch's last message.
		last := c.seq
		for done := false; !done; {
			m, _, err := unix.Recvfrom(c.fd, c.buf, 0)
			if err != nil {
				return err
			}
			b := c.buf[:m]
			for len(b) >= unix.NLMSG_HDRLEN {
				l := int(binary.NativeEndian.Uint32(b))
				if l < unix.NLMSG_HDRLEN || l > len(b) {
					return fmt.Errorf("bad message")
				}
				if binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_ERROR {
					if code := int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:])); code != 0 {
						return fmt.Errorf("route add: %w", unix.Errno(-code))
					}
					if binary.NativeEndian.Uint32(b[8:]) == last {
						done = true
					}
				}
				b = b[min(nlAlign(l), len(b)):]
			}
		}
	}
	return nil
}

// BenchmarkCollect measures Collect, CollectDefaults and Replay in a
// namespace holding 100,000 extra IPv4 routes (the doctor's budget is
// 300 ms beyond its sampling window).
func BenchmarkCollect(b *testing.B) {
	const nRoutes = 100_000
	n := newTestNet(b)
	t0 := time.Now()
	if err := n.srv.Do(func() error { return addRoutesBatched(nRoutes, peer4, n.s0) }); err != nil {
		b.Fatalf("adding routes: %v", err)
	}
	b.Logf("added %d routes in %v", nRoutes, time.Since(t0))
	b.Run("Collect", func(b *testing.B) {
		var routes int
		for b.Loop() {
			s := n.collect(b)
			routes = len(s.Routes)
		}
		if routes < nRoutes {
			b.Fatalf("Collect saw %d routes, want >= %d", routes, nRoutes)
		}
		b.ReportMetric(float64(routes), "routes")
	})
	b.Run("CollectDefaults", func(b *testing.B) {
		var s *State
		for b.Loop() {
			if err := n.srv.Do(func() error {
				var err error
				s, err = CollectDefaults()
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
		if len(s.DefaultRoutes(unix.AF_INET, 0)) != 1 || len(s.DefaultRoutes(unix.AF_INET6, 0)) != 1 {
			b.Fatalf("defaults missing: %+v", s.Routes)
		}
		b.ReportMetric(float64(len(s.Routes)), "routes")
	})
	b.Run("Replay", func(b *testing.B) {
		q := Query{Src: srv4, Dst: netip.MustParseAddr("100.64.100.1"), Sport: 8080, Dport: 40000}
		for b.Loop() {
			if r := n.replay(b, q); !r.OK {
				b.Fatal(r)
			}
		}
	})
}

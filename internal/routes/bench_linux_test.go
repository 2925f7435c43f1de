package routes

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// addRoutesBatched adds n /32 routes 100.64.x.y via gw with `ip -batch`
// (test setup only; the product never runs ip).
func addRoutesBatched(b testing.TB, ns *netns.Target, n int, gw netip.Addr, dev string) {
	base := binary.BigEndian.Uint32(netip.MustParseAddr("100.64.0.0").AsSlice())
	var sb strings.Builder
	for i := 0; i < n; i++ {
		dst := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, base+uint32(i))))
		fmt.Fprintf(&sb, "route add %s/32 via %s dev %s proto static\n", dst, gw, dev)
	}
	if out, err := testnet.Exec(ns, sb.String(), "ip", "-batch", "-"); err != nil {
		b.Fatalf("adding routes: %v: %s", err, out)
	}
}

// BenchmarkCollect measures Collect, CollectDefaults and Replay in a
// namespace holding 100,000 extra IPv4 routes (the doctor's budget is
// 300 ms beyond its sampling window).
func BenchmarkCollect(b *testing.B) {
	const nRoutes = 100_000
	n := newTestNet(b)
	t0 := time.Now()
	addRoutesBatched(b, n.srv, nRoutes, peer4, "s0")
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

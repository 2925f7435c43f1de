package doctor

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
)

// BenchmarkDoctorLargeHost measures what doctor costs beyond its sampling
// window on a host with 10,000 listening sockets and 100,000 routes: the
// ms-beyond-window metric is the wall time after the 500 ms window closes
// (final samples, route-lookup replays, diagnosis); ns/op includes the window.
//
//	go test -run '^$' -bench DoctorLargeHost -benchtime 5x ./internal/doctor
func BenchmarkDoctorLargeHost(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: builds a namespace with 10,000 listeners and 100,000 routes")
	}
	const listeners, nroutes = 10000, 100000
	name := fmt.Sprintf("doctor-bench-%d", os.Getpid())
	t, err := netns.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	defer t.Delete()

	var rl unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	if rl.Cur < listeners+1000 {
		rl.Cur = min(rl.Max, listeners+1000)
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	setupStart := time.Now()
	err = t.Do(func() error {
		// This kernel has no dummy driver; a veth pair inside the
		// namespace serves as a link to hang addresses and routes on.
		d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "d0"}, PeerName: "d1"}
		if err := netlink.LinkAdd(d); err != nil {
			return err
		}
		link, err := netlink.LinkByName("d0")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr("10.99.0.1/16")
		if err := netlink.AddrAdd(link, addr); err != nil {
			return err
		}
		gw := net.ParseIP("10.99.0.254")
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil {
			return err
		}
		for i := 0; i < nroutes; i++ {
			dst := &net.IPNet{IP: net.IPv4(172, byte(16+i>>16), byte(i>>8), byte(i)), Mask: net.CIDRMask(32, 32)}
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw}); err != nil {
				return fmt.Errorf("route %d: %w", i, err)
			}
		}
		for i := 0; i < listeners; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 20000 + i, Addr: [4]byte{10, 99, 0, 1}}); err != nil {
				return err
			}
			if err := unix.Listen(fd, 128); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("setup: %d listeners, %d routes in %v", listeners, nroutes, time.Since(setupStart).Round(time.Millisecond))
	b.ResetTimer()
	var overhead float64
	for i := 0; i < b.N; i++ {
		rep, err := Run(context.Background(), Options{Netns: name, Window: 500 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Listeners) != listeners {
			b.Fatalf("%d listeners reported, want %d", len(rep.Listeners), listeners)
		}
		overhead += rep.OverheadMS
		if i == b.N-1 {
			for _, c := range rep.Checks {
				b.Logf("  %-16s %8.1f ms  %s", c.Name, c.DurationMS, c.Detail)
			}
		}
	}
	b.ReportMetric(overhead/float64(b.N), "ms-beyond-window")
}

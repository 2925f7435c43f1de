package trace

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// pairEnv is a two-namespace veth setup used until (and besides) the lab:
// server s0 10.77.0.1/24 fd77::1/64, client c0 10.77.0.2/24 fd77::2/64, and
// an off-subnet client address (10.99.0.2, fd99::2 on the client's lo) that
// the server reaches only through an explicit route — delete it to make the
// SYN-ACK's route lookup fail.
type pairEnv struct {
	srv, cli *netns.Target
}

var (
	srvAddr4  = netip.MustParseAddr("10.77.0.1")
	srvAddr6  = netip.MustParseAddr("fd77::1")
	cliAddr4  = netip.MustParseAddr("10.77.0.2")
	cliAddr6  = netip.MustParseAddr("fd77::2")
	farAddr4  = netip.MustParseAddr("10.99.0.2")
	farAddr6  = netip.MustParseAddr("fd99::2")
	farPrefx4 = netip.MustParsePrefix("10.99.0.2/32")
	farPrefx6 = netip.MustParsePrefix("fd99::2/128")
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and loads BPF")
	}
}

func newPairEnv(t *testing.T, tag string) *pairEnv {
	t.Helper()
	base := fmt.Sprintf("trace%d%s", os.Getpid()%100000, tag)
	srv, err := netns.Create(base + "s")
	if err != nil {
		t.Fatalf("create server netns: %v", err)
	}
	t.Cleanup(func() { _ = srv.Delete() })
	cli, err := netns.Create(base + "c")
	if err != nil {
		t.Fatalf("create client netns: %v", err)
	}
	t.Cleanup(func() { _ = cli.Delete() })
	e := &pairEnv{srv: srv, cli: cli}

	// Create the pair inside the server namespace, then move c0.
	err = srv.Do(func() error {
		la := netlink.NewLinkAttrs()
		la.Name = "s0"
		veth := &netlink.Veth{LinkAttrs: la, PeerName: "c0", PeerNamespace: netlink.NsFd(cli.FD())}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	setup := func(tg *netns.Target, dev string, a4, a6 netip.Addr, extra func(link netlink.Link) error) {
		err := tg.Do(func() error {
			writeSysctl("net/ipv4/conf/all/rp_filter", "0")
			writeSysctl("net/ipv4/conf/default/rp_filter", "0")
			writeSysctl("net/ipv6/conf/"+dev+"/accept_dad", "0")
			l, err := netlink.LinkByName(dev)
			if err != nil {
				return err
			}
			for _, p := range []string{a4.String() + "/24", a6.String() + "/64"} {
				ad, _ := netlink.ParseAddr(p)
				ad.Flags = unix.IFA_F_NODAD
				if err := netlink.AddrAdd(l, ad); err != nil {
					return fmt.Errorf("addr %s: %w", p, err)
				}
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
			return extra(l)
		})
		if err != nil {
			t.Fatalf("setup %s: %v", dev, err)
		}
	}
	setup(srv, "s0", srvAddr4, srvAddr6, func(l netlink.Link) error {
		for _, r := range []struct {
			dst netip.Prefix
			gw  netip.Addr
		}{{farPrefx4, cliAddr4}, {farPrefx6, cliAddr6}} {
			if err := netlink.RouteAdd(&netlink.Route{Dst: ipnet(r.dst), Gw: r.gw.AsSlice(), LinkIndex: l.Attrs().Index}); err != nil {
				return fmt.Errorf("route %s: %w", r.dst, err)
			}
		}
		return nil
	})
	setup(cli, "c0", cliAddr4, cliAddr6, func(l netlink.Link) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		for _, p := range []netip.Prefix{farPrefx4, farPrefx6} {
			if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: ipnet(p)}); err != nil {
				return fmt.Errorf("addr %s: %w", p, err)
			}
		}
		return nil
	})
	// The first SYN is lost while the veth carrier is still down, and the
	// client's retransmit comes only after a second: wait for both ends.
	// The bound only turns a link that never comes up into a failure.
	for _, c := range []struct {
		tg  *netns.Target
		dev string
	}{{srv, "s0"}, {cli, "c0"}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var up bool
			_ = c.tg.Do(func() error {
				l, err := netlink.LinkByName(c.dev)
				up = err == nil && l.Attrs().OperState == netlink.OperUp
				return nil
			})
			if up {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s in %s not operationally up after 10 s", c.dev, c.tg.Label())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// IPv6 addresses become local only when addrconf's work runs, after
	// the netlink request returned; a SYN before that is silently dropped
	// (see testnet.WaitLocal).
	testnet.WaitLocal(t, srv, srvAddr6.AsSlice())
	testnet.WaitLocal(t, cli, cliAddr6.AsSlice())
	testnet.WaitLocal(t, cli, farAddr6.AsSlice())
	return e
}

func writeSysctl(path, val string) {
	_ = os.WriteFile(filepath.Join("/proc/sys", path), []byte(val), 0o644)
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// delFarRoutes removes the server's routes to the off-subnet client address,
// the "no route back for the SYN-ACK" fault.
func (e *pairEnv) delFarRoutes(t *testing.T) {
	t.Helper()
	err := e.srv.Do(func() error {
		for _, p := range []netip.Prefix{farPrefx4, farPrefx6} {
			if err := netlink.RouteDel(&netlink.Route{Dst: ipnet(p)}); err != nil {
				return fmt.Errorf("del route %s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// listen opens a TCP listener in the server namespace; accept controls
// whether connections are accepted (false lets the accept queue fill).
func (e *pairEnv) listen(t *testing.T, network, addr string, backlog int, accept bool) {
	t.Helper()
	var fd int
	err := e.srv.Do(func() error {
		a := netip.MustParseAddrPort(addr)
		fam := unix.AF_INET6
		if a.Addr().Is4() {
			fam = unix.AF_INET
		}
		var err error
		fd, err = unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		var sa unix.Sockaddr
		if fam == unix.AF_INET {
			sa = &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
		} else {
			sa = &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
		}
		if err := unix.Bind(fd, sa); err != nil {
			return err
		}
		return unix.Listen(fd, backlog)
	})
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	t.Cleanup(func() { f.Close() })
	if !accept {
		return
	}
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatalf("file listener: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// dial connects from the client namespace, from src (may be invalid for
// any) to dst, and returns the error (nil when established).
func (e *pairEnv) dial(src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	var derr error
	err := e.cli.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", dst.String())
		if err == nil {
			c.Close()
		}
		derr = err
		return nil
	})
	if err != nil {
		return err
	}
	return derr
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

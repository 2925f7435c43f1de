package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
)

// This file builds and deletes the benchmark's namespaces: each has a
// veth uplink with an IPv4 and an IPv6 address, a default route in each
// family through a gateway on it, and a TCP listener the harness holds.

// prefix names every namespace the harness makes (stale ones from a
// killed run are deleted on start).
const prefix = "synscope-wscale-"

// Addresses inside each namespace (benchmark and documentation ranges;
// every namespace has its own copy).
var (
	addr4 = netip.MustParsePrefix("198.18.0.2/24")
	gw4   = netip.MustParseAddr("198.18.0.1")
	addr6 = netip.MustParsePrefix("2001:db8:5ca1::2/64")
	gw6   = netip.MustParseAddr("2001:db8:5ca1::1")
)

const uplink = "wan0"

// ns is one benchmark namespace.
type ns struct {
	name string
	t    *netns.Target
	ln   net.Listener
}

// makeNS creates a namespace with its uplink, addresses, default routes
// and listener; on error nothing of it is left.
func makeNS(name string) (*ns, error) {
	t, err := netns.Create(name)
	if err != nil {
		return nil, err
	}
	n := &ns{name: name, t: t}
	err = t.Do(func() error {
		// A veth pair with both ends here: this kernel has no dummy
		// driver, and a pair has a carrier once both ends are up.
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: uplink}, PeerName: uplink + "p"}); err != nil {
			return fmt.Errorf("veth: %w", err)
		}
		lk, err := netlink.LinkByName(uplink)
		if err != nil {
			return err
		}
		peer, err := netlink.LinkByName(uplink + "p")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(peer); err != nil {
			return err
		}
		for _, p := range []netip.Prefix{addr4, addr6} {
			a := &netlink.Addr{IPNet: ipnet(p), Flags: unix.IFA_F_NODAD}
			if err := netlink.AddrAdd(lk, a); err != nil {
				return fmt.Errorf("address %s: %w", p, err)
			}
		}
		if err := netlink.LinkSetUp(lk); err != nil {
			return err
		}
		for _, r := range []*netlink.Route{route(lk, gw4), route(lk, gw6)} {
			if err := netlink.RouteAdd(r); err != nil {
				return fmt.Errorf("default route via %s: %w", r.Gw, err)
			}
		}
		n.ln, err = net.Listen("tcp", "[::]:8080")
		return err
	})
	if err != nil {
		n.remove()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func route(lk netlink.Link, gw netip.Addr) *netlink.Route {
	fam := unix.AF_INET
	if gw.Is6() {
		fam = unix.AF_INET6
	}
	return &netlink.Route{LinkIndex: lk.Attrs().Index, Gw: gw.AsSlice(), Family: fam, Table: unix.RT_TABLE_MAIN}
}

// setDefault6 deletes (on false) or re-adds (on true) the IPv6 default route.
func (n *ns) setDefault6(on bool) error {
	return n.t.Do(func() error {
		lk, err := netlink.LinkByName(uplink)
		if err != nil {
			return err
		}
		if on {
			return netlink.RouteAdd(route(lk, gw6))
		}
		return netlink.RouteDel(route(lk, gw6))
	})
}

// remove closes the listener and deletes the namespace (it goes away with
// its last reference: watch's, until watch notices).
func (n *ns) remove() error {
	if n.ln != nil {
		n.ln.Close()
	}
	return n.t.Delete()
}

// removeStale deletes every namespace with the harness's prefix.
func removeStale() error {
	ents, err := os.ReadDir(netns.RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			if t, err := netns.Open(e.Name()); err == nil {
				errs = append(errs, t.Delete())
			} else {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

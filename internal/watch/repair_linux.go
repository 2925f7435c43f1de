package watch

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netmgr"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/nl/rtnl"
	"github.com/synscope/synscope/internal/routeloss"
)

// nlKernel is repairKernel on one namespace: a netlink socket of its own
// (opened inside the namespace), sysctl reads and ARP / neighbour
// discovery from threads in the namespace.
type nlKernel struct {
	t *netns.Target
	s *nlSock
}

// openKernel opens the attempt's netlink socket inside t.
func openKernel(t *netns.Target) (*nlKernel, error) {
	k := &nlKernel{t: t}
	if err := t.Do(func() error {
		var err error
		k.s, err = openSock(nil, 0, time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *nlKernel) close() { k.s.close() }

func (k *nlKernel) Links() (map[int]Link, error)          { return k.s.dumpLinks() }
func (k *nlKernel) Routes(now time.Time) ([]Route, error) { return k.s.dumpRoutes(now) }
func (k *nlKernel) AddRoute(r Route) error                { return addRoute(k.s, r) }
func (k *nlKernel) VerifyLookup(r Route) error            { return verifyLookup(k.s, r) }

func (k *nlKernel) Owner(link Link) (Owner, error) {
	ino, err := netmgr.NetnsInode(k.t.FD())
	if err != nil {
		return Owner{}, err
	}
	return netmgr.Find("/proc", ino, link.Index)
}

// DevConf reads net.ipv6.conf.<dev>.{forwarding,accept_ra} inside the
// namespace. Device names come from the kernel's link table, which forbids
// "/" and "." / "..", checked again here.
func (k *nlKernel) DevConf(_ int, name string) (routeloss.Conf, error) {
	c := routeloss.Conf{Forwarding: -1, AcceptRA: -1}
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return c, fmt.Errorf("device name %q cannot name a sysctl", name)
	}
	err := k.t.Do(func() error {
		var err error
		dir := filepath.Join("/proc/sys/net/ipv6/conf", name)
		if c.Forwarding, err = readSysctlInt(filepath.Join(dir, "forwarding")); err != nil {
			return err
		}
		c.AcceptRA, err = readSysctlInt(filepath.Join(dir, "accept_ra"))
		return err
	})
	return c, err
}

// readSysctlInt reads one integer sysctl file: (value, nil) or an error,
// never a stand-in value.
func readSysctlInt(p string) (int, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return -1, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1, fmt.Errorf("%s: %w", p, err)
	}
	return v, nil
}

// Solicit sends one Router Solicitation on the route's device.
func (k *nlKernel) Solicit(link Link) error {
	var c *ndp.Conn
	var ifi *net.Interface
	err := k.t.Do(func() error {
		var err error
		if ifi, err = net.InterfaceByIndex(link.Index); err != nil {
			return err
		}
		c, _, err = ndp.Listen(ifi, ndp.LinkLocal)
		return err
	})
	if err != nil {
		return fmt.Errorf("ndp: %w", err)
	}
	defer c.Close()
	m := &ndp.RouterSolicitation{}
	if len(ifi.HardwareAddr) == 6 {
		m.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}
	}
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	return c.WriteTo(m, nil, netip.MustParseAddr("ff02::2"))
}

// WaitRoute polls for a usable default route of the family/table.
func (k *nlKernel) WaitRoute(ctx context.Context, r Route, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		now := time.Now()
		rs, err := k.s.dumpRoutes(now)
		if err != nil {
			return false, err
		}
		for _, x := range rs {
			if x.Family == r.Family && x.Table == r.Table && x.Usable(now, false) {
				return true, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false, nil
}

// nudName names a neighbour state as `ip neigh` does.
func nudName(st uint16) string { return rtnl.NeighStateText(st) }

// Resolve checks that the gateway answers: a REACHABLE (or permanent,
// noarp) neighbour entry counts; otherwise watch asks the gateway itself
// (ARP request / neighbour solicitation) and needs its answer.
func (k *nlKernel) Resolve(ctx context.Context, r Route) (string, error) {
	ns, err := k.s.dumpNeighbors(r.Family)
	if err != nil {
		return "", err
	}
	for _, n := range ns {
		if n.Ifindex == r.Ifindex && n.Addr == r.Gateway && n.State&(unix.NUD_REACHABLE|unix.NUD_PERMANENT|unix.NUD_NOARP) != 0 {
			return "neighbour entry " + nudName(n.State), nil
		}
	}
	src := r.PrefSrc
	if !src.IsValid() && r.Family == 4 {
		src = sourceFor(k.s, r)
	}
	mac, err := probeGateway(ctx, k.t, r, src, 2*time.Second)
	if err != nil {
		return "", err
	}
	return "answered " + routeloss.Resolution(r.Family) + " from " + mac.String(), nil
}

// sourceFor asks the kernel which source it would use towards the gateway.
func sourceFor(s *nlSock, r Route) netip.Addr {
	m, err := rtnl.GetRoute(s.c, rtnl.Lookup{Dst: r.Gateway, Oif: r.Ifindex})
	if err != nil {
		return netip.Addr{}
	}
	return m.PrefSrc.Unmap()
}

// addRoute adds r with protocol ProtoSynscope, never replacing anything.
func addRoute(s *nlSock, r Route) error {
	m := rtnl.Route{
		Family:   afOf(r.Family),
		Tos:      r.Tos,
		Table:    r.Table,
		Protocol: ProtoSynscope,
		Scope:    unix.RT_SCOPE_UNIVERSE,
		Type:     unix.RTN_UNICAST,
		Flags:    r.Flags & unix.RTNH_F_ONLINK,
		Gateway:  r.Gateway,
		Oif:      r.Ifindex,
		Priority: r.Metric,
		PrefSrc:  r.PrefSrc,
	}
	if r.Family == 6 {
		m.Pref = r.Pref
	}
	return rtnl.AddRoute(s.c, m)
}

// lookupProbe is where verifyLookup asks the kernel to route (a
// documentation address: the lookup sends nothing).
var lookupProbe = map[int]netip.Addr{4: netip.MustParseAddr("192.0.2.1"), 6: netip.MustParseAddr("2001:db8::1")}

// verifyLookup checks that a lookup to an off-link address now leaves
// through the route's device and gateway (RTM_GETROUTE, like `ip route get`).
func verifyLookup(s *nlSock, r Route) error {
	dst := lookupProbe[r.Family]
	m, err := rtnl.GetRoute(s.c, rtnl.Lookup{Dst: dst})
	if err != nil {
		return fmt.Errorf("route lookup to %s after the repair: %w", dst, err)
	}
	if gw := m.Gateway.Unmap(); m.Oif != r.Ifindex || (r.Gateway.IsValid() && gw != r.Gateway) {
		return fmt.Errorf("route lookup to %s leaves via %s dev #%d, not through the re-added route", dst, gw, m.Oif)
	}
	return nil
}

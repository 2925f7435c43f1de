package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
)

// lab is the builder state while Up runs: open namespace targets and
// netlink handles bound to them.
type lab struct {
	prefix        string
	cli, rtr, srv *netns.Target
	hc, hr, hs    *netlink.Handle
	env           *Env
	// cgroupFD, when set, is the cgroup the listener starts in.
	cgroupFD int
}

func (l *lab) close() {
	if l.cgroupFD > 0 {
		unix.Close(l.cgroupFD)
	}
	for _, h := range []*netlink.Handle{l.hc, l.hr, l.hs} {
		if h != nil {
			h.Close()
		}
	}
	for _, t := range []*netns.Target{l.cli, l.rtr, l.srv} {
		if t != nil {
			_ = t.Close()
		}
	}
}

// Up builds the lab for scenario name, after removing any lab with the same
// prefix. On failure it removes what it made.
func Up(ctx context.Context, name string, opts Options) (*Env, error) {
	sc, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	prefix, err := normPrefix(opts.Prefix)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab up: needs root (it creates network namespaces)")
	}
	unlock, err := lockPrefix(prefix)
	if err != nil {
		return nil, err
	}
	defer unlock(false)
	if err := down(prefix); err != nil {
		return nil, fmt.Errorf("lab up: removing previous lab %s: %w", prefix, err)
	}
	env, err := up(ctx, sc, prefix, opts)
	if err != nil {
		if derr := down(prefix); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	return env, nil
}

func up(ctx context.Context, sc Scenario, prefix string, opts Options) (*Env, error) {
	cli, rtr, srv := nsNames(prefix)
	env := &Env{
		Prefix: prefix, Scenario: sc.Name, Client: cli, Router: rtr, Server: srv,
		ClientV4: ClientV4, ClientV6: ClientV6, ServerV4: ServerV4, ServerV6: ServerV6,
		Port: Port, Expect: sc.Expect, Family: sc.Family, NAT: opts.NAT,
		NoClient: opts.NoClient, Started: time.Now().UTC(),
	}
	if err := os.MkdirAll(agentDir(prefix), 0o755); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	// Save first so that Down finds the lab even if Up dies half way.
	if err := env.save(); err != nil {
		return nil, err
	}
	l := &lab{prefix: prefix, env: env}
	defer l.close()
	if err := l.buildTopology(opts.NAT); err != nil {
		return nil, err
	}
	if err := l.warmUp(ctx); err != nil {
		return nil, err
	}
	if sc.setup != nil {
		if err := sc.setup(l); err != nil {
			return nil, fmt.Errorf("lab %s: injecting %s: %w", prefix, sc.Name, err)
		}
	}
	if sc.listener != nil {
		if err := l.startAgent(ctx, l.srv, agentSpec{Kind: "listener", Listener: sc.listener}); err != nil {
			return nil, err
		}
	}
	if sc.afterListen != nil {
		if err := sc.afterListen(ctx, l); err != nil {
			return nil, fmt.Errorf("lab %s: injecting %s: %w", prefix, sc.Name, err)
		}
	}
	if !opts.NoClient {
		cs := sc.client
		if cs == nil {
			cs = &clientSpec{}
		}
		c := *cs
		dst := ServerV4
		if sc.Family == 6 {
			dst = ServerV6
		}
		c.Target = netip.AddrPortFrom(dst, Port).String()
		if err := l.startAgent(ctx, l.cli, agentSpec{Kind: "client", Client: &c}); err != nil {
			return nil, err
		}
	}
	if err := env.save(); err != nil {
		return nil, err
	}
	return env, nil
}

func (l *lab) buildTopology(nat bool) error {
	cli, rtr, srv := nsNames(l.prefix)
	var err error
	for _, x := range []struct {
		name string
		t    **netns.Target
		h    **netlink.Handle
	}{{cli, &l.cli, &l.hc}, {rtr, &l.rtr, &l.hr}, {srv, &l.srv, &l.hs}} {
		if *x.t, err = netns.Create(x.name); err != nil {
			return fmt.Errorf("lab up: %w", err)
		}
		h, err := (*x.t).Handle()
		if err != nil {
			return fmt.Errorf("lab up: %s: %w", x.name, err)
		}
		if *x.h, err = netlink.NewHandleAt(h); err != nil {
			return fmt.Errorf("lab up: netlink in %s: %w", x.name, err)
		}
		// DAD off before any interface appears, so new interfaces
		// inherit it from "default" and addresses work at once.
		if err := setSysctls(*x.t, map[string]string{
			"net/ipv6/conf/all/accept_dad":     "0",
			"net/ipv6/conf/default/accept_dad": "0",
		}); err != nil {
			return err
		}
	}
	if err := setSysctls(l.rtr, map[string]string{
		"net/ipv4/ip_forward":              "1",
		"net/ipv6/conf/all/forwarding":     "1",
		"net/ipv6/conf/default/forwarding": "1",
	}); err != nil {
		return err
	}
	// Short SYN retries so the background client's failures are quick.
	if err := setSysctls(l.cli, map[string]string{"net/ipv4/tcp_syn_retries": "1"}); err != nil {
		return err
	}
	// Create each pair from one namespace with the peer placed straight into
	// the other, so no name ever exists in the host namespace.
	if err := addVeth(l.hc, "c0", l.rtr, "rc0"); err != nil {
		return err
	}
	if err := addVeth(l.hr, "rs0", l.srv, "s0"); err != nil {
		return err
	}
	for _, a := range []struct {
		h    *netlink.Handle
		dev  string
		cidr []string
	}{
		{l.hc, "c0", []string{"10.77.1.2/24", "fd77:1::2/64"}},
		{l.hr, "rc0", []string{"10.77.1.1/24", "fd77:1::1/64"}},
		{l.hr, "rs0", []string{"10.77.2.1/24", "fd77:2::1/64"}},
		{l.hs, "s0", []string{"10.77.2.2/24", "fd77:2::2/64"}},
	} {
		if err := addrsUp(a.h, a.dev, a.cidr...); err != nil {
			return err
		}
	}
	for _, r := range []struct {
		h   *netlink.Handle
		dev string
		gw  netip.Addr
	}{{l.hc, "c0", RouterC4}, {l.hc, "c0", RouterC6}, {l.hs, "s0", RouterS4}, {l.hs, "s0", RouterS6}} {
		if err := addRoute(r.h, r.dev, netip.Prefix{}, r.gw, r.gw.Is4()); err != nil {
			return err
		}
	}
	// The SYN generator's spoofed sources are answered towards the client,
	// which is no router and drops the SYN-ACKs silently (no RST frees the
	// request), as a flood's unreachable sources do.
	if err := addRoute(l.hr, "rc0", netip.MustParsePrefix(spoofV4), ClientV4, true); err != nil {
		return err
	}
	if err := addRoute(l.hr, "rc0", netip.MustParsePrefix(spoofV6), ClientV6, false); err != nil {
		return err
	}
	if nat {
		if err := addMasquerade(l.rtr, "rs0"); err != nil {
			return err
		}
	}
	return nil
}

// Spoofed SYN sources: documentation prefixes, routed only inside the lab.
const (
	spoofV4 = "198.51.100.0/24"
	spoofV6 = "2001:db8:77::/64"
)

func addVeth(h *netlink.Handle, name string, peerNS *netns.Target, peer string) error {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name},
		PeerName:      peer,
		PeerNamespace: netlink.NsFd(peerNS.FD()),
	}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("lab up: veth %s/%s: %w", name, peer, err)
	}
	return nil
}

func addrsUp(h *netlink.Handle, dev string, cidrs ...string) error {
	link, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("lab up: %s: %w", dev, err)
	}
	for _, c := range cidrs {
		a, err := netlink.ParseAddr(c)
		if err != nil {
			return fmt.Errorf("lab up: %s: %w", c, err)
		}
		if a.IP.To4() == nil {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil {
			return fmt.Errorf("lab up: address %s on %s: %w", c, dev, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("lab up: %s up: %w", dev, err)
	}
	return nil
}

// addRoute adds dst (default route when dst is invalid) via gw on dev;
// v4 selects the family for a default route.
func addRoute(h *netlink.Handle, dev string, dst netip.Prefix, gw netip.Addr, v4 bool) error {
	link, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("lab up: %s: %w", dev, err)
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice())}
	if dst.IsValid() {
		r.Dst = prefixNet(dst)
	} else if v4 {
		r.Dst = prefixNet(netip.MustParsePrefix("0.0.0.0/0"))
	} else {
		r.Dst = prefixNet(netip.MustParsePrefix("::/0"))
	}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("lab up: route %s via %s dev %s: %w", r.Dst, gw, dev, err)
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// setSysctls writes /proc/sys entries from inside t: net.* sysctls are per
// namespace and resolved against the writing thread's namespace.
func setSysctls(t *netns.Target, kv map[string]string) error {
	return t.Do(func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0); err != nil {
				return fmt.Errorf("lab: sysctl %s=%s in %s: %w", strings.ReplaceAll(k, "/", "."), v, t.Label(), err)
			}
		}
		return nil
	})
}

// warmUp proves the topology with one connection per family to a temporary
// listener, which also leaves the neighbour entries a real host has (the
// doctor reads the server's neighbour table to name a missing gateway).
func (l *lab) warmUp(ctx context.Context) error {
	var ln net.Listener
	if err := l.srv.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", Port))
		return err
	}); err != nil {
		return fmt.Errorf("lab up: warm-up listener: %w", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, dst := range []netip.Addr{ServerV4, ServerV6} {
		var err error
		// Bounded: neighbour discovery can cost the first attempt.
		for i := 0; i < 5; i++ {
			if err = dialIn(ctx, l.cli, netip.AddrPortFrom(dst, Port), time.Second); err == nil {
				break
			}
			if ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("lab up: warm-up connection failed, topology broken: %w", err)
		}
	}
	return nil
}

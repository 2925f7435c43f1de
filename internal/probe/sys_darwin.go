package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/net/route"
	"golang.org/x/sys/unix"
)

// macOS names for the report.
const (
	osFirewallName = "a local filter (pf or a content filter)"
	osRouteHow     = "routing socket RTM_GET"
	resolverDir    = "/etc/resolver"
)

// readOSDNS reads /etc/resolv.conf (macOS writes the primary resolver
// there) and the scoped resolvers in /etc/resolver/*; configuration only
// scutil --dns shows (VPN- or profile-installed resolvers without files)
// is not read, and the system resolver's answer still includes it.
func readOSDNS() osDNS {
	conf := osDNS{Desc: "/etc/resolv.conf and /etc/resolver/* (scutil --dns shows the full set)", HostsFile: "/etc/hosts"}
	var errs []error
	if f, err := os.Open("/etc/resolv.conf"); err == nil {
		rc := ParseResolvConf(f)
		f.Close()
		sc := DNSScope{Source: "/etc/resolv.conf", Servers: []string{}}
		for _, s := range rc.Servers {
			sc.Servers = append(sc.Servers, s.String())
		}
		conf.Scopes = append(conf.Scopes, sc)
	} else {
		errs = append(errs, err)
	}
	ents, err := os.ReadDir(resolverDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	var scoped []macResolver
	for i, e := range ents {
		if i >= 64 || e.IsDir() {
			continue
		}
		f, err := os.Open(filepath.Join(resolverDir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m := parseMacResolver(e.Name(), f)
		m.File = filepath.Join(resolverDir, e.Name())
		scoped = append(scoped, m)
		f.Close()
	}
	sort.SliceStable(scoped, func(i, j int) bool { return scoped[i].Order < scoped[j].Order })
	var out []DNSScope
	for _, m := range scoped {
		sc := DNSScope{Source: m.File, Domain: m.Domain, Servers: []string{}}
		for _, s := range m.Servers {
			sc.Servers = append(sc.Servers, s.String())
		}
		out = append(out, sc)
	}
	conf.Scopes = append(out, conf.Scopes...)
	conf.Err = errors.Join(errs...)
	return conf
}

// readOSProxy: macOS keeps its proxy settings in SystemConfiguration,
// readable only through a framework (cgo); they are not checked.
func readOSProxy(string) ([]SystemProxy, Check) {
	return nil, Check{Name: "proxy-system", Status: "skipped",
		Detail: "not checked: the macOS proxy settings (System Settings, scutil --proxy) need SystemConfiguration; only the environment variables were read"}
}

// osRoute asks the kernel with a routing-socket RTM_GET for the route,
// interface, gateway and source address the flow would use.
func osRoute(dst, src netip.Addr) LocalPath {
	lp := LocalPath{ByHand: "route -n get " + dst.String()}
	fd, err := unix.Socket(unix.AF_ROUTE, unix.SOCK_RAW, unix.AF_UNSPEC)
	if err != nil {
		lp.RouteOK, lp.RouteError = true, "not checked: routing socket: "+err.Error()
		lp.Route = lp.RouteError
		return lp
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
	var da route.Addr = &route.Inet4Addr{IP: dst.As4()}
	if dst.Is6() {
		da = &route.Inet6Addr{IP: dst.As16()}
	}
	pid := uintptr(os.Getpid())
	msg := &route.RouteMessage{Version: unix.RTM_VERSION, Type: unix.RTM_GET, ID: pid, Seq: 1,
		Flags: unix.RTF_UP | unix.RTF_HOST,
		Addrs: []route.Addr{unix.RTAX_DST: da, unix.RTAX_IFP: &route.LinkAddr{}}}
	b, err := msg.Marshal()
	if err != nil {
		lp.RouteOK, lp.RouteError = true, "not checked: "+err.Error()
		return lp
	}
	if _, err := unix.Write(fd, b); err != nil {
		if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENETUNREACH) {
			lp.RouteError = "no route to " + dst.String()
			lp.Route = lp.RouteError
			return lp
		}
		lp.RouteOK, lp.RouteError = true, "not checked: RTM_GET: "+err.Error()
		lp.Route = lp.RouteError
		return lp
	}
	buf := make([]byte, 2048)
	for range 16 {
		n, err := unix.Read(fd, buf)
		if err != nil {
			break
		}
		msgs, err := route.ParseRIB(route.RIBTypeRoute, buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			rm, ok := m.(*route.RouteMessage)
			if !ok || rm.ID != pid || rm.Seq != 1 || rm.Type != unix.RTM_GET {
				continue
			}
			if rm.Err != nil {
				lp.RouteError = "RTM_GET: " + rm.Err.Error()
				lp.Route = lp.RouteError
				return lp
			}
			fillDarwinRoute(&lp, rm, dst)
			return lp
		}
	}
	lp.RouteOK, lp.RouteError = true, "not checked: no RTM_GET answer"
	lp.Route = lp.RouteError
	return lp
}

func fillDarwinRoute(lp *LocalPath, rm *route.RouteMessage, dst netip.Addr) {
	lp.RouteOK = true
	at := func(i int) route.Addr {
		if i < len(rm.Addrs) {
			return rm.Addrs[i]
		}
		return nil
	}
	addrOf := func(a route.Addr) netip.Addr {
		switch v := a.(type) {
		case *route.Inet4Addr:
			return netip.AddrFrom4(v.IP)
		case *route.Inet6Addr:
			return netip.AddrFrom16(v.IP)
		}
		return netip.Addr{}
	}
	if g := addrOf(at(unix.RTAX_GATEWAY)); g.IsValid() && rm.Flags&unix.RTF_GATEWAY != 0 {
		lp.Gateway = g.String()
	}
	if s := addrOf(at(unix.RTAX_IFA)); s.IsValid() {
		lp.Source = s.String()
	}
	if l, ok := at(unix.RTAX_IFP).(*route.LinkAddr); ok && l.Name != "" {
		lp.Dev = l.Name
	} else if ifc, err := net.InterfaceByIndex(rm.Index); err == nil {
		lp.Dev = ifc.Name
	}
	dest := "default"
	if d := addrOf(at(unix.RTAX_DST)); d.IsValid() && !d.IsUnspecified() {
		dest = d.String()
	}
	lp.Route = fmt.Sprintf("%s: %s via %s dev %s src %s", dst, dest, orDash(lp.Gateway), orDash(lp.Dev), orDash(lp.Source))
}

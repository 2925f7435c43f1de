package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// Windows names for the report.
const (
	osFirewallName = "Windows Filtering Platform"
	osRouteHow     = "GetBestRoute2, or GetBestRoute for IPv4 where it is missing"
)

// readOSDNS reads every up adapter's DNS servers (GetAdaptersAddresses)
// and the NRPT rules (registry, policy and local), and names the hosts
// file.
func readOSDNS() osDNS {
	root := os.Getenv("SystemRoot")
	if root == "" {
		root = `C:\Windows`
	}
	conf := osDNS{Desc: "adapter DNS servers (GetAdaptersAddresses) and NRPT rules",
		HostsFile: filepath.Join(root, "System32", "drivers", "etc", "hosts")}
	var errs []error
	ads, err := adapters()
	if err != nil {
		errs = append(errs, fmt.Errorf("GetAdaptersAddresses: %w", err))
	}
	for aa := ads; aa != nil; aa = aa.Next {
		if aa.OperStatus != windows.IfOperStatusUp {
			continue
		}
		sc := DNSScope{Source: "adapter " + windows.UTF16PtrToString(aa.FriendlyName), Servers: []string{}}
		for d := aa.FirstDnsServerAddress; d != nil; d = d.Next {
			if a, ok := netip.AddrFromSlice(d.Address.IP()); ok {
				sc.Servers = append(sc.Servers, a.Unmap().String())
			}
		}
		if len(sc.Servers) > 0 {
			conf.Scopes = append(conf.Scopes, sc)
		}
	}
	nrpt, err := readNRPT()
	if err != nil {
		errs = append(errs, err)
	}
	// NRPT rules go first: for a matching name they replace the adapters'.
	conf.Scopes = append(nrpt, conf.Scopes...)
	conf.Err = errors.Join(errs...)
	return conf
}

// adapters returns the adapter list (the buffer grows up to three times).
func adapters() (*windows.IpAdapterAddresses, error) {
	size := uint32(15000)
	for range 3 {
		buf := make([]byte, size)
		aa := (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0]))
		err := windows.GetAdaptersAddresses(windows.AF_UNSPEC, windows.GAA_FLAG_SKIP_ANYCAST|windows.GAA_FLAG_SKIP_MULTICAST, 0, aa, &size)
		if err == nil {
			return aa, nil
		}
		if !errors.Is(err, windows.ERROR_BUFFER_OVERFLOW) {
			return nil, err
		}
	}
	return nil, errors.New("adapter list keeps growing")
}

// readNRPT reads the Name Resolution Policy Table rules that name DNS
// servers (GenericDNSServers); a missing key is no rules.
func readNRPT() ([]DNSScope, error) {
	// Group policy, then the local (Add-DnsClientNrptRule) store.
	nrptKeys := []string{
		`SOFTWARE\Policies\Microsoft\Windows NT\DNSClient\DnsPolicyConfig`,
		`SYSTEM\CurrentControlSet\Services\Dnscache\Parameters\DnsPolicyConfig`,
	}
	var out []DNSScope
	for _, path := range nrptKeys {
		k, err := registry.OpenKey(registry.LOCAL_MACHINE, path, registry.ENUMERATE_SUB_KEYS|registry.QUERY_VALUE)
		if errors.Is(err, registry.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("NRPT %s: %w", path, err)
		}
		names, _ := k.ReadSubKeyNames(64)
		for _, n := range names {
			rk, err := registry.OpenKey(k, n, registry.QUERY_VALUE)
			if err != nil {
				continue
			}
			doms, _, _ := rk.GetStringsValue("Name")
			srv, _, _ := rk.GetStringValue("GenericDNSServers")
			rk.Close()
			servers := strings.FieldsFunc(srv, func(r rune) bool { return r == ';' || r == ' ' || r == ',' })
			if servers == nil {
				servers = []string{}
			}
			for _, d := range doms {
				out = append(out, DNSScope{Source: "NRPT rule " + n, Domain: d, Servers: servers})
			}
		}
		k.Close()
	}
	return out, nil
}

// readOSProxy reads the WinHTTP default proxy (HKLM WinHttpSettings) and
// the user's Internet Settings (ProxyEnable/ProxyServer/ProxyOverride,
// AutoConfigURL, WPAD auto-detect from DefaultConnectionSettings).
func readOSProxy(host string) ([]SystemProxy, Check) {
	const conns = `SOFTWARE\Microsoft\Windows\CurrentVersion\Internet Settings\Connections`
	var out []SystemProxy
	var problems []string
	wh := SystemProxy{Source: "WinHTTP"}
	if k, err := registry.OpenKey(registry.LOCAL_MACHINE, conns, registry.QUERY_VALUE); err == nil {
		if b, _, err := k.GetBinaryValue("WinHttpSettings"); err == nil {
			if cs, err := parseConnSettings(b); err == nil {
				if cs.Flags&connProxy != 0 {
					wh.Proxy, wh.Bypass = cs.Proxy, cs.Bypass
				}
			} else {
				problems = append(problems, "WinHttpSettings: "+err.Error())
			}
		}
		k.Close()
	}
	out = append(out, wh)

	ie := SystemProxy{Source: "Internet Settings (user)"}
	if k, err := registry.OpenKey(registry.CURRENT_USER, `SOFTWARE\Microsoft\Windows\CurrentVersion\Internet Settings`, registry.QUERY_VALUE); err == nil {
		if on, _, err := k.GetIntegerValue("ProxyEnable"); err == nil && on != 0 {
			ie.Proxy, _, _ = k.GetStringValue("ProxyServer")
			ie.Bypass, _, _ = k.GetStringValue("ProxyOverride")
		}
		ie.PAC, _, _ = k.GetStringValue("AutoConfigURL")
		k.Close()
	} else if !errors.Is(err, registry.ErrNotExist) {
		problems = append(problems, "Internet Settings: "+err.Error())
	}
	if k, err := registry.OpenKey(registry.CURRENT_USER, conns, registry.QUERY_VALUE); err == nil {
		if b, _, err := k.GetBinaryValue("DefaultConnectionSettings"); err == nil {
			if cs, err := parseConnSettings(b); err == nil {
				ie.AutoDetect = cs.Flags&connAutoDetect != 0
			}
		}
		k.Close()
	}
	out = append(out, ie)
	for i := range out {
		s := &out[i]
		p := proxyForScheme(s.Proxy, "https")
		if p == "" {
			p = proxyForScheme(s.Proxy, "http")
		}
		s.Applies = p != "" && bypassMatch(s.Bypass, host) == ""
	}
	chk := Check{Name: "proxy-system", Status: "ok", Detail: "WinHTTP default proxy and the user's Internet Settings read; a PAC script or WPAD is reported, not evaluated"}
	if len(problems) > 0 {
		chk.Status, chk.Detail = "failed", strings.Join(problems, "; ")
	}
	return out, chk
}

// osRoute asks GetBestRoute2 for the route and source the OS would use;
// where it is missing (Wine) IPv4 asks GetBestRoute, with the source the OS
// picks for a UDP socket connected to the destination.
func osRoute(dst, src netip.Addr) LocalPath {
	lp := LocalPath{ByHand: "Find-NetRoute -RemoteIPAddress " + dst.String()}
	iphlp := windows.NewLazySystemDLL("iphlpapi.dll")
	fr, source, how, err := bestRoute2(iphlp, dst, src)
	if errors.Is(err, windows.ERROR_NOT_SUPPORTED) && dst.Is4() {
		fr, how, err = bestRoute(iphlp, dst, src)
		source = udpSource(dst, src)
	}
	switch {
	case errors.Is(err, windows.ERROR_NETWORK_UNREACHABLE) || errors.Is(err, windows.ERROR_HOST_UNREACHABLE):
		lp.RouteError = fmt.Sprintf("%s: no route (%v)", how, err)
		lp.Route = lp.RouteError
		return lp
	case err != nil:
		// Unknown is not "no route": the handshakes decide.
		lp.RouteOK, lp.RouteError = true, fmt.Sprintf("not checked: %s: %v", how, err)
		lp.Route = lp.RouteError
		return lp
	}
	lp.RouteOK = true
	if source.IsValid() {
		lp.Source = source.String()
	}
	if fr.NextHop.IsValid() && !fr.NextHop.IsUnspecified() {
		lp.Gateway = fr.NextHop.String()
	}
	if ifc, err := net.InterfaceByIndex(int(fr.IfIndex)); err == nil {
		lp.Dev = ifc.Name
	} else {
		lp.Dev = fmt.Sprintf("ifindex %d", fr.IfIndex)
	}
	lp.Route = fmt.Sprintf("%s via %s dev %s src %s metric %d (%s)", fr.Prefix, orDash(lp.Gateway), lp.Dev, orDash(lp.Source), fr.Metric, how)
	return lp
}

// bestRoute2 calls GetBestRoute2 (IPv4 and IPv6).
func bestRoute2(dll *windows.LazyDLL, dst, src netip.Addr) (forwardRow, netip.Addr, string, error) {
	const how = "GetBestRoute2"
	proc := dll.NewProc(how)
	if err := proc.Find(); err != nil {
		return forwardRow{}, netip.Addr{}, how, windows.ERROR_NOT_SUPPORTED
	}
	var dsa, ssa, best [sizeofSockaddrInet]byte
	var row [sizeofForwardRow2]byte
	putSockaddrInet(dsa[:], dst)
	var srcp uintptr
	if src.IsValid() {
		putSockaddrInet(ssa[:], src)
		srcp = uintptr(unsafe.Pointer(&ssa[0]))
	}
	rc, _, _ := proc.Call(0, 0, srcp, uintptr(unsafe.Pointer(&dsa[0])), 0,
		uintptr(unsafe.Pointer(&row[0])), uintptr(unsafe.Pointer(&best[0])))
	if rc != 0 {
		return forwardRow{}, netip.Addr{}, how, windows.Errno(rc)
	}
	fr, err := parseForwardRow2(row[:])
	if err != nil {
		return fr, netip.Addr{}, how, err
	}
	s, _ := parseSockaddrInet(best[:])
	return fr, s, how, nil
}

// bestRoute calls the IPv4-only GetBestRoute.
func bestRoute(dll *windows.LazyDLL, dst, src netip.Addr) (forwardRow, string, error) {
	const how = "GetBestRoute"
	proc := dll.NewProc(how)
	if err := proc.Find(); err != nil {
		return forwardRow{}, how, err
	}
	var row [sizeofForwardRow]byte
	d4 := dst.As4()
	var s4 [4]byte
	if src.Is4() {
		s4 = src.As4()
	}
	// The addresses are DWORDs holding network-order bytes.
	rc, _, _ := proc.Call(uintptr(*(*uint32)(unsafe.Pointer(&d4[0]))), uintptr(*(*uint32)(unsafe.Pointer(&s4[0]))),
		uintptr(unsafe.Pointer(&row[0])))
	if rc != 0 {
		return forwardRow{}, how, windows.Errno(rc)
	}
	fr, err := parseForwardRow(row[:])
	return fr, how, err
}

// udpSource is the source address the OS picks for dst: the local
// address of a UDP socket connected to it (no packet is sent). Raw
// Winsock calls: Go's net package adds an ioctl Wine does not implement.
func udpSource(dst, src netip.Addr) netip.Addr {
	af := windows.AF_INET
	if dst.Is6() {
		af = windows.AF_INET6
	}
	s, err := windows.Socket(af, windows.SOCK_DGRAM, windows.IPPROTO_UDP)
	if err != nil {
		return netip.Addr{}
	}
	defer windows.Closesocket(s)
	if src.IsValid() {
		if err := windows.Bind(s, winSockaddr(src, 0)); err != nil {
			return netip.Addr{}
		}
	}
	if err := windows.Connect(s, winSockaddr(dst, 9)); err != nil {
		return netip.Addr{}
	}
	sa, err := windows.Getsockname(s)
	if err != nil {
		return netip.Addr{}
	}
	switch v := sa.(type) {
	case *windows.SockaddrInet4:
		return netip.AddrFrom4(v.Addr)
	case *windows.SockaddrInet6:
		return netip.AddrFrom16(v.Addr)
	}
	return netip.Addr{}
}

func winSockaddr(a netip.Addr, port int) windows.Sockaddr {
	if a.Is4() {
		return &windows.SockaddrInet4{Port: port, Addr: a.As4()}
	}
	return &windows.SockaddrInet6{Port: port, Addr: a.As16()}
}

// putSockaddrInet writes a into a SOCKADDR_INET.
func putSockaddrInet(b []byte, a netip.Addr) {
	if a.Is4() {
		b[0] = winAFInet
		v := a.As4()
		copy(b[4:8], v[:])
		return
	}
	b[0] = winAFInet6
	v := a.As16()
	copy(b[8:24], v[:])
}

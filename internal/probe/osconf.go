package probe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// This file holds the parsers of Windows and macOS configuration: pure
// functions on bytes and strings, so Linux unit tests run them on recorded
// inputs.

// Connection-settings flags (the DWORD at offset 8 of WinHttpSettings and
// DefaultConnectionSettings).
const (
	connDirect     = 0x1
	connProxy      = 0x2
	connAutoURL    = 0x4
	connAutoDetect = 0x8
)

// connSettings is a decoded WinHttpSettings or DefaultConnectionSettings
// registry value.
type connSettings struct {
	Flags  uint32
	Proxy  string
	Bypass string
	PAC    string
}

// parseConnSettings decodes the binary connection-settings blob: DWORD
// version, DWORD counter, DWORD flags, then length-prefixed proxy, bypass
// and (optional) auto-config URL strings, little-endian.
func parseConnSettings(b []byte) (connSettings, error) {
	var cs connSettings
	if len(b) < 12 {
		return cs, fmt.Errorf("connection settings: %d bytes, want at least 12", len(b))
	}
	cs.Flags = binary.LittleEndian.Uint32(b[8:])
	off := 12
	next := func() (string, bool, error) {
		if off == len(b) {
			return "", false, nil
		}
		if off+4 > len(b) {
			return "", false, errors.New("connection settings: truncated length")
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		if n < 0 || n > len(b)-off {
			return "", false, fmt.Errorf("connection settings: string of %d bytes past the end", n)
		}
		s := strings.TrimRight(string(b[off:off+n]), "\x00")
		off += n
		return s, true, nil
	}
	var err error
	var ok bool
	if cs.Proxy, ok, err = next(); err != nil || !ok {
		return cs, err
	}
	if cs.Bypass, ok, err = next(); err != nil || !ok {
		return cs, err
	}
	cs.PAC, _, err = next()
	return cs, err
}

// proxyForScheme picks the proxy a WinINet/WinHTTP ProxyServer string
// gives scheme: "host:port" serves every scheme, "http=h:p;https=h2:p2"
// one each ("" = none for that scheme).
func proxyForScheme(server, scheme string) string {
	server = strings.TrimSpace(server)
	if server == "" {
		return ""
	}
	if !strings.Contains(server, "=") {
		return server
	}
	for _, part := range strings.FieldsFunc(server, func(r rune) bool { return r == ';' || r == ' ' }) {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), scheme) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// bypassMatch returns the entry of a proxy bypass list (ProxyOverride,
// WinHTTP bypass: ';', ',' or space separated, '*' wildcards, "<local>"
// for names without a dot) that exempts host, or "".
func bypassMatch(list, host string) string {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	for _, e := range strings.FieldsFunc(list, func(r rune) bool { return r == ';' || r == ',' || r == ' ' || r == '\t' }) {
		le := strings.ToLower(e)
		if le == "<local>" {
			if !strings.Contains(h, ".") {
				return e
			}
			continue
		}
		// Entries may carry a scheme; the probe is scheme-less.
		if i := strings.Index(le, "://"); i >= 0 {
			le = le[i+3:]
		}
		if ok, _ := path.Match(le, h); ok {
			return e
		}
	}
	return ""
}

// scopeMatches says whether a resolver scope for domain ("" or "." = every
// name) serves host: the domain itself or a name under it. A leading dot
// (NRPT's ".corp.example") is ignored.
func scopeMatches(domain, host string) bool {
	d := strings.ToLower(strings.Trim(domain, "."))
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return d == "" || h == d || strings.HasSuffix(h, "."+d)
}

// macResolver is one /etc/resolver/NAME file (resolver(5)).
type macResolver struct {
	File    string // set by the caller
	Domain  string
	Servers []netip.AddrPort
	Search  []string
	Order   int // search_order; lower is asked first
}

// parseMacResolver reads a resolver(5) file; its domain defaults to the
// file's name, port (default 53) applies to every nameserver.
func parseMacResolver(name string, r io.Reader) macResolver {
	mr := macResolver{Domain: name}
	port := uint16(53)
	var addrs []netip.Addr
	sc := bufio.NewScanner(r)
	for n := 0; sc.Scan() && n < 1000; n++ {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil {
				addrs = append(addrs, a.Unmap())
			}
		case "port":
			if p, err := strconv.ParseUint(f[1], 10, 16); err == nil && p > 0 {
				port = uint16(p)
			}
		case "domain":
			mr.Domain = f[1]
		case "search":
			mr.Search = append(mr.Search, f[1:]...)
		case "search_order":
			mr.Order, _ = strconv.Atoi(f[1])
		}
	}
	for _, a := range addrs {
		mr.Servers = append(mr.Servers, netip.AddrPortFrom(a, port))
	}
	return mr
}

// Windows address families in SOCKADDR_INET.
const (
	winAFInet  = 2
	winAFInet6 = 23
)

// sizeofSockaddrInet and sizeofForwardRow2 are the Windows structure sizes
// (SOCKADDR_INET, MIB_IPFORWARD_ROW2) on amd64 and arm64.
const (
	sizeofSockaddrInet = 28
	sizeofForwardRow2  = 104
)

// parseSockaddrInet decodes a SOCKADDR_INET (family at 0; IPv4 address at
// 4; IPv6 address at 8, scope id at 24).
func parseSockaddrInet(b []byte) (netip.Addr, error) {
	if len(b) < sizeofSockaddrInet {
		return netip.Addr{}, fmt.Errorf("SOCKADDR_INET: %d bytes", len(b))
	}
	switch binary.LittleEndian.Uint16(b) {
	case winAFInet:
		return netip.AddrFrom4([4]byte(b[4:8])), nil
	case winAFInet6:
		return netip.AddrFrom16([16]byte(b[8:24])), nil
	case 0:
		return netip.Addr{}, nil
	}
	return netip.Addr{}, fmt.Errorf("SOCKADDR_INET: family %d", binary.LittleEndian.Uint16(b))
}

// forwardRow is the part of a MIB_IPFORWARD_ROW2 the probe reports.
type forwardRow struct {
	IfIndex uint32
	Prefix  netip.Prefix
	NextHop netip.Addr // unspecified: on-link
	Metric  uint32
}

// parseForwardRow2 decodes MIB_IPFORWARD_ROW2: InterfaceLuid (8),
// InterfaceIndex (4) at 8, DestinationPrefix (SOCKADDR_INET + prefix
// length byte, padded to 32) at 12, NextHop at 44, Metric at 84.
func parseForwardRow2(b []byte) (forwardRow, error) {
	var fr forwardRow
	if len(b) < sizeofForwardRow2 {
		return fr, fmt.Errorf("MIB_IPFORWARD_ROW2: %d bytes", len(b))
	}
	fr.IfIndex = binary.LittleEndian.Uint32(b[8:])
	dst, err := parseSockaddrInet(b[12:40])
	if err != nil {
		return fr, err
	}
	if dst.IsValid() {
		if fr.Prefix, err = dst.Prefix(int(b[40])); err != nil {
			return fr, err
		}
	}
	if fr.NextHop, err = parseSockaddrInet(b[44:72]); err != nil {
		return fr, err
	}
	fr.Metric = binary.LittleEndian.Uint32(b[84:])
	return fr, nil
}

// sizeofForwardRow is sizeof(MIB_IPFORWARDROW): fourteen DWORDs.
const sizeofForwardRow = 56

// parseForwardRow decodes the IPv4-only MIB_IPFORWARDROW GetBestRoute
// fills: destination, mask and next hop in network byte order at 0, 4 and
// 12, the interface index at 16, metric 1 at 36.
func parseForwardRow(b []byte) (forwardRow, error) {
	var fr forwardRow
	if len(b) < sizeofForwardRow {
		return fr, fmt.Errorf("MIB_IPFORWARDROW: %d bytes", len(b))
	}
	dst := netip.AddrFrom4([4]byte(b[0:4]))
	mask := netip.AddrFrom4([4]byte(b[4:8]))
	bits := 0
	for _, c := range mask.As4() {
		for i := 7; i >= 0 && c&(1<<i) != 0; i-- {
			bits++
		}
	}
	var err error
	if fr.Prefix, err = dst.Prefix(bits); err != nil {
		return fr, err
	}
	fr.NextHop = netip.AddrFrom4([4]byte(b[12:16]))
	fr.IfIndex = binary.LittleEndian.Uint32(b[16:])
	fr.Metric = binary.LittleEndian.Uint32(b[36:])
	return fr, nil
}

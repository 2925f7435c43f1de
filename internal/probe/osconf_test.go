package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
)

// connBlob builds a connection-settings value as Windows writes it.
func connBlob(version, flags uint32, strs ...string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, version)
	b = binary.LittleEndian.AppendUint32(b, 7) // change counter
	b = binary.LittleEndian.AppendUint32(b, flags)
	for _, s := range strs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func TestParseConnSettings(t *testing.T) {
	// `netsh winhttp set proxy proxy.corp:3128 "<local>;*.corp"` writes
	// version 0x28, flags 3 (direct|proxy), proxy, bypass; no PAC.
	wh := connBlob(0x28, connDirect|connProxy, "proxy.corp:3128", "<local>;*.corp")
	// `netsh winhttp reset proxy`: flags 1, two empty strings.
	reset := connBlob(0x28, connDirect, "", "")
	// IE DefaultConnectionSettings with a PAC URL and WPAD on, then the
	// trailing zero padding Windows appends.
	ie := append(connBlob(0x46, connDirect|connAutoURL|connAutoDetect, "", "", "http://wpad.corp/proxy.pac"), make([]byte, 32)...)
	cases := []struct {
		name string
		b    []byte
		want connSettings
		err  bool
	}{
		{"winhttp-proxy", wh, connSettings{Flags: 3, Proxy: "proxy.corp:3128", Bypass: "<local>;*.corp"}, false},
		{"winhttp-reset", reset, connSettings{Flags: 1}, false},
		{"ie-pac-wpad", ie, connSettings{Flags: 13, PAC: "http://wpad.corp/proxy.pac"}, false},
		{"header-only", connBlob(0x28, 1), connSettings{Flags: 1}, false},
		{"short", []byte{1, 2, 3}, connSettings{}, true},
		{"length-past-end", append(connBlob(0x28, 3), 0xff, 0xff, 0, 0, 'x'), connSettings{Flags: 3}, true},
		{"truncated-length", append(connBlob(0x28, 3), 1, 0), connSettings{Flags: 3}, true},
	}
	for _, c := range cases {
		got, err := parseConnSettings(c.b)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("%s: got %+v, %v; want %+v, error %v", c.name, got, err, c.want, c.err)
		}
	}
}

func TestProxyForSchemeAndBypass(t *testing.T) {
	cases := []struct{ server, scheme, want string }{
		{"proxy:8080", "https", "proxy:8080"},
		{"http=hp:80;https=sp:443", "https", "sp:443"},
		{"http=hp:80;https=sp:443", "http", "hp:80"},
		{"http=hp:80", "https", ""},
		{"HTTPS=sp:443 ftp=f:21", "https", "sp:443"},
		{"", "http", ""},
	}
	for _, c := range cases {
		if got := proxyForScheme(c.server, c.scheme); got != c.want {
			t.Errorf("proxyForScheme(%q, %s) = %q, want %q", c.server, c.scheme, got, c.want)
		}
	}
	bp := []struct{ list, host, want string }{
		{"<local>;*.corp.example", "intranet", "<local>"},
		{"<local>;*.corp.example", "db.corp.example", "*.corp.example"},
		{"<local>;*.corp.example", "corp.example.evil.net", ""},
		{"10.*; 192.168.1.1", "10.0.0.7", "10.*"},
		{"10.*, 192.168.1.1", "192.168.1.1", "192.168.1.1"},
		{"https://*.Example.COM", "www.example.com", "https://*.Example.COM"},
		{"", "a.b", ""},
	}
	for _, c := range bp {
		if got := bypassMatch(c.list, c.host); got != c.want {
			t.Errorf("bypassMatch(%q, %q) = %q, want %q", c.list, c.host, got, c.want)
		}
	}
}

func TestScopeMatches(t *testing.T) {
	cases := []struct {
		domain, host string
		want         bool
	}{
		{"", "anything.example", true},
		{".", "x", true},
		{".corp.example", "db.corp.example", true},
		{"corp.example", "corp.example.", true},
		{"corp.example", "notcorp.example", false},
		{"corp.example", "corp.example.com", false},
		{"Corp.Example", "DB.corp.example", true},
	}
	for _, c := range cases {
		if got := scopeMatches(c.domain, c.host); got != c.want {
			t.Errorf("scopeMatches(%q, %q) = %v", c.domain, c.host, got)
		}
	}
}

// A resolver(5) file as Tunnelblick / corporate VPN profiles write one.
func TestParseMacResolver(t *testing.T) {
	in := "# corp VPN\nnameserver 10.8.0.1\nnameserver fe80::1\nnameserver bogus\nport 5353\nsearch corp.example lab.corp.example\nsearch_order 1\ntimeout 3\n"
	got := parseMacResolver("corp.example", strings.NewReader(in))
	want := []netip.AddrPort{netip.MustParseAddrPort("10.8.0.1:5353"), netip.MustParseAddrPort("[fe80::1]:5353")}
	if got.Domain != "corp.example" || fmt.Sprint(got.Servers) != fmt.Sprint(want) ||
		strings.Join(got.Search, " ") != "corp.example lab.corp.example" || got.Order != 1 {
		t.Fatalf("%+v", got)
	}
	got = parseMacResolver("local", strings.NewReader("domain home.arpa\nnameserver 192.168.1.1\n"))
	if got.Domain != "home.arpa" || len(got.Servers) != 1 || got.Servers[0].Port() != 53 {
		t.Fatalf("%+v", got)
	}
}

// sockaddrInet builds a SOCKADDR_INET as Windows lays it out.
func sockaddrInet(a netip.Addr) []byte {
	b := make([]byte, sizeofSockaddrInet)
	if !a.IsValid() {
		return b
	}
	if a.Is4() {
		binary.LittleEndian.PutUint16(b, winAFInet)
		v := a.As4()
		copy(b[4:], v[:])
	} else {
		binary.LittleEndian.PutUint16(b, winAFInet6)
		v := a.As16()
		copy(b[8:], v[:])
	}
	return b
}

// The offsets are the ones unsafe.Offsetof gives for x/sys/windows'
// MibIpForwardRow2 in a GOOS=windows build (size 104; InterfaceIndex 8,
// DestinationPrefix 12, NextHop 44, Metric 84).
func TestParseForwardRow2(t *testing.T) {
	row := make([]byte, sizeofForwardRow2)
	binary.LittleEndian.PutUint64(row, 0x0006000000000000) // LUID
	binary.LittleEndian.PutUint32(row[8:], 12)
	copy(row[12:], sockaddrInet(netip.MustParseAddr("0.0.0.0")))
	row[40] = 0
	copy(row[44:], sockaddrInet(netip.MustParseAddr("192.168.1.254")))
	binary.LittleEndian.PutUint32(row[84:], 35)
	fr, err := parseForwardRow2(row)
	if err != nil || fr.IfIndex != 12 || fr.Prefix.String() != "0.0.0.0/0" || fr.NextHop.String() != "192.168.1.254" || fr.Metric != 35 {
		t.Fatalf("%+v %v", fr, err)
	}
	copy(row[12:], sockaddrInet(netip.MustParseAddr("2001:db8::")))
	row[40] = 32
	copy(row[44:], sockaddrInet(netip.MustParseAddr("::")))
	fr, err = parseForwardRow2(row)
	if err != nil || fr.Prefix.String() != "2001:db8::/32" || !fr.NextHop.IsUnspecified() {
		t.Fatalf("%+v %v", fr, err)
	}
	if _, err := parseForwardRow2(row[:100]); err == nil {
		t.Fatal("short row accepted")
	}
	binary.LittleEndian.PutUint16(row[44:], 99)
	if _, err := parseForwardRow2(row); err == nil {
		t.Fatal("unknown family accepted")
	}
}

func TestParseForwardRow(t *testing.T) {
	row := make([]byte, sizeofForwardRow)
	copy(row[0:], []byte{10, 77, 2, 0})
	copy(row[4:], []byte{255, 255, 255, 0})
	copy(row[12:], []byte{10, 77, 1, 1})
	binary.LittleEndian.PutUint32(row[16:], 4)
	binary.LittleEndian.PutUint32(row[36:], 25)
	fr, err := parseForwardRow(row)
	if err != nil || fr.Prefix.String() != "10.77.2.0/24" || fr.NextHop.String() != "10.77.1.1" || fr.IfIndex != 4 || fr.Metric != 25 {
		t.Fatalf("%+v %v", fr, err)
	}
}

// timeoutErr is a net.Error that timed out, as a dial deadline gives.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// The errno numbers are the OS's (winerror.h, macOS errno.h), wrapped as
// net.Dialer wraps them.
func TestClassifyDialErr(t *testing.T) {
	wrap := func(n uintptr) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connectex", syscall.Errno(n))}
	}
	cases := []struct {
		goos string
		err  error
		out  Outcome
		name string
		fw   bool
	}{
		{"windows", wrap(10061), OutRefused, "WSAECONNREFUSED", false},
		{"windows", wrap(10060), OutTimeout, "WSAETIMEDOUT", false},
		{"windows", wrap(10065), OutUnreachable, "WSAEHOSTUNREACH", false},
		{"windows", wrap(10051), OutUnreachable, "WSAENETUNREACH", false},
		{"windows", wrap(10013), OutLocalError, "WSAEACCES", true},
		{"windows", wrap(61), OutLocalError, "errno 61", false}, // macOS's number means nothing on Windows
		{"darwin", wrap(61), OutRefused, "ECONNREFUSED", false},
		{"darwin", wrap(60), OutTimeout, "ETIMEDOUT", false},
		{"darwin", wrap(65), OutUnreachable, "EHOSTUNREACH", false},
		{"darwin", wrap(1), OutLocalError, "EPERM", true},
		{"windows", &net.OpError{Op: "dial", Err: timeoutErr{}}, OutTimeout, "timeout", false},
		{"darwin", errors.New("weird"), OutLocalError, "weird", false},
	}
	for _, c := range cases {
		out, text, fw := classifyDialErr(c.goos, c.err)
		if out != c.out || fw != c.fw || !strings.Contains(text, c.name) {
			t.Errorf("%s %v: got %s %q fw=%v; want %s naming %s fw=%v", c.goos, c.err, out, text, fw, c.out, c.name, c.fw)
		}
	}
}

// TestOSVerdicts: the verdict logic with Windows and macOS observations
// gives the OS's own next steps and never nftables advice.
func TestOSVerdicts(t *testing.T) {
	mk := func(goos string, ap *AddrProbe) *Report {
		r := &Report{Target: Target{Host: "db.corp.example", Port: 5432, OS: goos}, Addresses: []*AddrProbe{ap}}
		ap.Local.RouteOK = true
		ap.Stats = Summarize(ap.Attempts)
		decide(r)
		return r
	}
	refused := func() *AddrProbe { return addr("10.0.0.5", "ipv4", OutRefused, OutRefused) }
	r := mk("windows", refused())
	if r.Verdict != Refused || r.NextCmd != "Test-NetConnection -ComputerName 10.0.0.5 -Port 5432" || r.ExitCode() != 1 {
		t.Errorf("windows refused: %s %q", r.Verdict, r.NextCmd)
	}
	r = mk("darwin", refused())
	if r.Verdict != Refused || !strings.HasPrefix(r.NextCmd, "nc -vz") {
		t.Errorf("darwin refused: %s %q", r.Verdict, r.NextCmd)
	}
	// WSAEACCES: the OS refused; reported as the local firewall with
	// PowerShell's rule listing, no nftables wording.
	fwAP := addr("10.0.0.5", "ipv4", OutLocalError)
	fwAP.Attempts[0].Error = "WSAEACCES: access denied"
	fwAP.Local.Firewall = []FWRule{{Where: "Windows Filtering Platform", Rule: "WSAEACCES: access denied", Verdict: fwOSRefused, Delta: -1}}
	r = mk("windows", fwAP)
	if r.Verdict != LocalFirewall || !strings.HasPrefix(r.NextCmd, "Get-NetFirewallRule -Direction Outbound") ||
		strings.Contains(r.Summary, "nftables") || !strings.Contains(r.Summary, "Windows Filtering Platform refused the connect") {
		t.Errorf("windows firewall: %s %q %q", r.Verdict, r.Summary, r.NextCmd)
	}
	to := addr("10.0.0.5", "ipv4", OutTimeout)
	r = mk("darwin", to)
	if r.Verdict != TimedOut || !strings.HasPrefix(r.NextCmd, "traceroute -n -P tcp -p 5432 10.0.0.5") || !strings.Contains(r.Next, "synscope doctor --port 5432") {
		t.Errorf("darwin timeout: %s %q %q", r.Verdict, r.Next, r.NextCmd)
	}
	nr := addr("10.0.0.5", "ipv4", OutUnreachable)
	r = &Report{Target: Target{Port: 1, OS: "windows"}, Addresses: []*AddrProbe{nr}}
	nr.Local.RouteOK = false // the OS route lookup said no route
	decide(r)
	if r.Verdict != LocalNoRoute || r.NextCmd != "Find-NetRoute -RemoteIPAddress 10.0.0.5" {
		t.Errorf("windows no route: %s %q", r.Verdict, r.NextCmd)
	}
	dns := &Report{Target: Target{Host: "x", OS: "windows"}, DNS: &DNSReport{Error: "no such host"}}
	decide(dns)
	if dns.Verdict != DNSFailure || !strings.Contains(dns.NextCmd, "Get-DnsClientServerAddress") {
		t.Errorf("windows dns: %s %q", dns.Verdict, dns.NextCmd)
	}
	// A static OS proxy that applies is named in the proxy verdict.
	px := mk("windows", addr("10.0.0.5", "ipv4", OutTimeout))
	px.Proxy = ProxyReport{System: []SystemProxy{{Source: "WinHTTP", Proxy: "proxy.corp:3128", Applies: true}}, Applies: true}
	decide(px)
	if px.Verdict != Proxy || !strings.Contains(px.Summary, "WinHTTP: proxy.corp:3128") {
		t.Errorf("windows proxy: %s %q", px.Verdict, px.Summary)
	}
	// Linux reports keep the Linux next step.
	r = mk("", refused())
	if !strings.HasPrefix(r.NextCmd, "synscope doctor") {
		t.Errorf("linux refused: %q", r.NextCmd)
	}
}

// TestTextHostileOS: the Windows/macOS parts of the report (adapter and
// NRPT names, registry proxy strings, the OS name) are shown escaped.
func TestTextHostileOS(t *testing.T) {
	evil := "x\x1b[2J\x1b]0;pwned\x07\u202e\nFAKE"
	a := addr("10.0.0.1", "ipv4", OutLocalError)
	a.Local.Firewall = []FWRule{{Where: "Windows Filtering Platform", Rule: evil, Verdict: fwOSRefused, Delta: -1}}
	r := &Report{
		Target: Target{Host: "h", Port: 80, Netns: "-", OS: evil},
		DNS: &DNSReport{Name: "h", System: true, ResolvConf: evil, HostsFile: evil, Addresses: []string{"10.0.0.1"},
			Scopes: []DNSScope{{Source: "adapter " + evil, Domain: evil, Servers: []string{evil}, Matches: true}}},
		Proxy:     ProxyReport{Set: []ProxyVar{}, System: []SystemProxy{{Source: "Internet Settings (user)", Proxy: evil, Bypass: evil, PAC: evil, AutoDetect: true}}},
		Addresses: []*AddrProbe{a},
	}
	decide(r)
	var b bytes.Buffer
	if err := Text(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for i, c := range []byte(out) {
		if (c < 0x20 && c != '\n') || c == 0x7f {
			t.Fatalf("raw control byte 0x%02x at %d:\n%q", c, i, out)
		}
	}
	if strings.Contains(out, "\u202e") || strings.Contains(out, "\nFAKE") || !strings.Contains(out, "PAC script") || !strings.Contains(out, "scope: adapter") {
		t.Fatalf("forged line, bidi override, or OS parts missing:\n%s", out)
	}
}

package probe

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseResolvConf(t *testing.T) {
	rc := ParseResolvConf(strings.NewReader(`# comment
nameserver 10.0.0.1
nameserver fd00::53 ; trailing
nameserver bogus
nameserver 10.0.0.2
nameserver 10.0.0.3
search a.example b.example.
options ndots:2 timeout:1 attempts:3 rotate
`))
	if len(rc.Servers) != 3 || rc.Servers[1] != netip.MustParseAddrPort("[fd00::53]:53") {
		t.Fatalf("servers %v (want 3, MAXNS)", rc.Servers)
	}
	if rc.Ndots != 2 || rc.Timeout != time.Second || rc.Attempts != 3 || !rc.Rotate || len(rc.Search) != 2 || rc.Search[1] != "b.example" {
		t.Fatalf("%+v", rc)
	}
	if got := rc.Candidates("www"); strings.Join(got, " ") != "www.a.example. www.b.example. www." {
		t.Fatalf("candidates %v", got)
	}
	if got := rc.Candidates("x.y.z"); got[0] != "x.y.z." {
		t.Fatalf("a name with ndots dots is tried as is first: %v", got)
	}
	if got := rc.Candidates("abs."); len(got) != 1 {
		t.Fatalf("absolute name: %v", got)
	}
	if d := ParseResolvConf(strings.NewReader("")); len(d.Servers) != 1 || d.Servers[0].Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("default server: %v", d.Servers)
	}
}

func TestHosts(t *testing.T) {
	hosts := "127.0.0.1 localhost\n10.1.1.1 web.lab web # c\n::ffff:10.1.1.2 WEB.lab.\n# 10.9.9.9 web\n"
	got := LookupHosts(strings.NewReader(hosts), "Web.Lab")
	if len(got) != 2 || got[0].Addr.String() != "10.1.1.1" || got[1].Addr.String() != "10.1.1.2" || got[1].Line != 3 {
		t.Fatalf("%v", got)
	}
	if o := HostsOrder(strings.NewReader("passwd: files\nhosts: dns [NOTFOUND=return] files\n")); strings.Join(o, " ") != "dns files" {
		t.Fatalf("order %v", o)
	}
	if o := HostsOrder(strings.NewReader("")); strings.Join(o, " ") != "files dns" {
		t.Fatalf("default order %v", o)
	}
}

func TestCheckProxy(t *testing.T) {
	env := []string{"HTTPS_PROXY=http://bob:hunter2@proxy:3128", "http_proxy=http://p2:80", "NO_PROXY=.internal,10.0.0.0/8", "PATH=/bin"}
	r := CheckProxy(env, "api.example.com", 443)
	if !r.Applies || r.HTTPS != "http://bob:%2A%2A%2A@proxy:3128" && r.HTTPS != "http://bob:***@proxy:3128" || r.HTTP != "http://p2:80" {
		t.Fatalf("%+v", r)
	}
	for _, v := range r.Set {
		if strings.Contains(v.Value, "hunter2") {
			t.Fatalf("password shown: %+v", v)
		}
	}
	if r := CheckProxy(env, "db.internal", 5432); r.Applies || r.NoProxy != ".internal" {
		t.Fatalf("NO_PROXY by domain: %+v", r)
	}
	if r := CheckProxy(env, "10.2.3.4", 80); r.Applies || r.NoProxy != "10.0.0.0/8" {
		t.Fatalf("NO_PROXY by CIDR: %+v", r)
	}
	if r := CheckProxy([]string{"ALL_PROXY=socks5://s:1080"}, "x.example", 22); !r.Applies || r.ALL == "" {
		t.Fatalf("ALL_PROXY: %+v", r)
	}
	if r := CheckProxy(nil, "x", 1); r.Applies || len(r.Set) != 0 {
		t.Fatalf("empty env: %+v", r)
	}
}

func TestSummarize(t *testing.T) {
	var at []Attempt
	for i := 1; i <= 10; i++ {
		at = append(at, Attempt{Outcome: OutConnected, RTTms: float64(i)})
	}
	at = append(at, Attempt{Outcome: OutTimeout}, Attempt{Outcome: OutRefused, RTTms: 0.5}, Attempt{Outcome: OutUnreachable})
	s := Summarize(at)
	if s.Sent != 13 || s.Connected != 10 || s.Timeouts != 1 || s.Refused != 1 || s.Unreachable != 1 {
		t.Fatalf("%+v", s)
	}
	if s.MinMs != 0.5 || s.MaxMs != 10 || s.MedianMs != 5 || s.P99Ms != 10 || s.LossPct != 7.7 {
		t.Fatalf("%+v", s)
	}
}

func addr(a, fam string, outcomes ...Outcome) *AddrProbe {
	p := &AddrProbe{Addr: a, Family: fam, Local: LocalPath{RouteOK: true, Route: a, Source: "10.0.0.2"}}
	for i, o := range outcomes {
		p.Attempts = append(p.Attempts, Attempt{Seq: i + 1, Outcome: o, RTTms: 1})
	}
	p.Stats = Summarize(p.Attempts)
	return p
}

func TestDecide(t *testing.T) {
	cases := []struct {
		name  string
		rep   *Report
		want  Verdict
		cause string
		sum   string
	}{
		{"connected", &Report{Addresses: []*AddrProbe{addr("10.0.0.1", "ipv4", OutConnected, OutConnected)}}, Connected, "", "connected"},
		{"family", &Report{Addresses: []*AddrProbe{addr("fd00::1", "ipv6", OutTimeout, OutTimeout), addr("10.0.0.1", "ipv4", OutConnected)}},
			FamilyBroken, "", "IPv6 times out while IPv4 works"},
		{"refused", &Report{Addresses: []*AddrProbe{addr("10.0.0.1", "ipv4", OutRefused)}}, Refused, "no-listener", "refused"},
		{"dns", &Report{DNS: &DNSReport{Error: "x A: nxdomain"}}, DNSFailure, "", "nxdomain"},
		{"timeout", &Report{Addresses: []*AddrProbe{addr("10.0.0.1", "ipv4", OutTimeout)}}, TimedOut, "", "--path"},
	}
	for _, c := range cases {
		c.rep.Target = Target{Host: "h", Port: 80}
		decide(c.rep)
		if c.rep.Verdict != c.want || string(c.rep.Cause) != c.cause || !strings.Contains(c.rep.Summary, c.sum) {
			t.Errorf("%s: got %s [%s] %q", c.name, c.rep.Verdict, c.rep.Cause, c.rep.Summary)
		}
	}

	// No route locally.
	a := addr("10.0.0.1", "ipv4", OutLocalError)
	a.Local.RouteOK = false
	r := &Report{Target: Target{Port: 80}, Addresses: []*AddrProbe{a}}
	decide(r)
	if r.Verdict != LocalNoRoute || r.Cause != "no-route-to-peer" {
		t.Errorf("no route: %s", r.Verdict)
	}

	// A counter that rose on a local output drop rule.
	a = addr("10.0.0.1", "ipv4", OutTimeout)
	a.Local.Firewall = []FWRule{{Where: "inet f out handle 3", Rule: "tcp dport 80 drop", Verdict: "drop", Delta: 2}}
	r = &Report{Target: Target{Port: 80}, Addresses: []*AddrProbe{a}}
	decide(r)
	if r.Verdict != LocalFirewall || !strings.Contains(r.Summary, "handle 3") {
		t.Errorf("local firewall: %s %q", r.Verdict, r.Summary)
	}

	// Path: SYNs pass hop 1, ping reaches at hop 2 → server-silent; ping
	// reaches at hop 4 → path-drop, a filter on TCP.
	a = addr("10.0.0.1", "ipv4", OutTimeout)
	a.Path = []Hop{{TTL: 1, Answer: ansTimeExceeded, Addr: "10.9.0.1"}, {TTL: 2, Answer: ansNone}}
	a.LastHop, a.LastAddr, a.PingTTL = 1, "10.9.0.1", 2
	r = &Report{Target: Target{Port: 80}, Addresses: []*AddrProbe{a}}
	decide(r)
	if r.Verdict != ServerSilent || !strings.Contains(r.NextCmd, "synscope doctor") {
		t.Errorf("server-silent: %s %q", r.Verdict, r.NextCmd)
	}
	a.PingTTL = 4
	r = &Report{Target: Target{Port: 80}, Addresses: []*AddrProbe{a}}
	decide(r)
	if r.Verdict != PathDrop || !strings.Contains(r.Summary, "filter on TCP") {
		t.Errorf("path-drop: %s %q", r.Verdict, r.Summary)
	}

	// ICMP admin prohibited → path-reject with the catalog's cause.
	a = addr("10.0.0.1", "ipv4", OutUnreachable)
	a.Attempts[0].ICMPFrom, a.Attempts[0].ICMPType, a.Attempts[0].ICMPCode = "10.9.0.1", 3, 13
	r = &Report{Target: Target{Port: 80}, Addresses: []*AddrProbe{a}}
	decide(r)
	if r.Verdict != PathReject || r.Cause == "" || !strings.Contains(r.Summary, "10.9.0.1") {
		t.Errorf("path-reject: %s [%s] %q", r.Verdict, r.Cause, r.Summary)
	}

	// A proxy applies and the direct path fails.
	r = &Report{Target: Target{Port: 80}, Proxy: ProxyReport{Applies: true, HTTPS: "http://p:1"}, Addresses: []*AddrProbe{addr("10.0.0.1", "ipv4", OutTimeout)}}
	decide(r)
	if r.Verdict != Proxy {
		t.Errorf("proxy: %s", r.Verdict)
	}
}

// TestTextHostile: strings from DNS, hosts files, interfaces, nft and the
// environment reach the terminal escaped.
func TestTextHostile(t *testing.T) {
	evil := "x\x1b[2J\x1b]0;pwned\x07\u202e\nFAKE"
	a := addr("10.0.0.1", "ipv4", OutTimeout)
	a.Local.Route = "10.0.0.1 dev " + evil
	a.Local.Dev = evil
	a.Local.Neighbor = &Neighbor{Addr: "10.0.0.254", Dev: evil, State: "FAILED"}
	a.Local.Firewall = []FWRule{{Where: "inet " + evil + " out handle 1", Rule: "drop", Verdict: "drop", Delta: 1}}
	a.Path = []Hop{{TTL: 1, Answer: ansTimeExceeded, Addr: "10.9.0.1", Name: evil}}
	r := &Report{
		Target:    Target{Host: evil, Port: 80, Netns: evil},
		DNS:       &DNSReport{Name: evil, ResolvConf: evil, Search: []string{evil}, Queries: []DNSQuery{{Name: evil, Type: "A", Server: "10.0.0.53:53", Outcome: "answer", Answers: []string{"10.0.0.1"}, CNAMEs: []string{evil + " -> " + evil}}}, Addresses: []string{"10.0.0.1"}},
		Proxy:     ProxyReport{Set: []ProxyVar{{Name: "HTTPS_PROXY", Value: evil}}, Applies: true, HTTPS: evil},
		Addresses: []*AddrProbe{a},
		Checks:    []Check{{Name: "firewall", Status: "failed", Detail: evil}},
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
	if strings.Contains(out, "\u202e") || strings.Contains(out, "\nFAKE") {
		t.Fatalf("bidi override or forged line in output:\n%s", out)
	}
	if !strings.Contains(out, `x\x1b[2J`) {
		t.Fatalf("escaped form missing:\n%s", out)
	}
}

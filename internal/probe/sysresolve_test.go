package probe

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer answers every A question with 127.0.0.9 and AAAA with
// NODATA, on a loopback UDP port, until the test ends (bounded by the
// packets it can read before the socket closes).
func dnsServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for range 100 {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil || len(m.Questions) != 1 {
				continue
			}
			q := m.Questions[0]
			m.Header.Response = true
			if q.Type == dnsmessage.TypeA {
				m.Answers = []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: q.Class, TTL: 60},
					Body: &dnsmessage.AResource{A: [4]byte{127, 0, 0, 9}}}}
			}
			if b, err := m.Pack(); err == nil {
				_, _ = pc.WriteTo(b, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// TestResolveSystem: the Windows/macOS name check asks the servers of the
// scopes that serve the name (and only those), reads the hosts file, and
// uses the system resolver's answer for the handshakes.
func TestResolveSystem(t *testing.T) {
	srv := dnsServer(t)
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n10.9.9.9 other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The system resolver's stand-in: no query leaves the host.
	system := func(_ context.Context, network, host string) ([]netip.Addr, error) {
		if network != "ip4" {
			t.Errorf("network %q for --family 4", network)
		}
		switch host {
		case "localhost":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		case "db.corp.example":
			return []netip.Addr{netip.MustParseAddr("fd00::3"), netip.MustParseAddr("::ffff:10.1.2.3"), netip.MustParseAddr("10.1.2.3")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	conf := osDNS{Desc: "test", HostsFile: hosts, Lookup: system, Scopes: []DNSScope{
		{Source: "NRPT rule {1}", Domain: ".corp.example", Servers: []string{"127.0.0.2"}},
		{Source: "adapter Ethernet", Servers: []string{srv}},
		{Source: "adapter Wi-Fi", Servers: []string{srv}}, // same server: asked once
	}}
	var checks []Check
	rep, addrs := resolveSystem(context.Background(), "localhost", 4, conf, &checks)
	if !rep.System || !slices.Contains(addrs, netip.MustParseAddr("127.0.0.1")) || len(checks) != 1 || checks[0].Status != "ok" {
		t.Fatalf("system answer: %+v %v %+v", rep, addrs, checks)
	}
	if rep.Scopes[0].Matches || !rep.Scopes[1].Matches || !rep.Scopes[2].Matches {
		t.Fatalf("scope matching: %+v", rep.Scopes)
	}
	if len(rep.Queries) != 1 || rep.Queries[0].Server != srv || rep.Queries[0].Type != "A" ||
		rep.Queries[0].Outcome != dnsAnswer || !slices.Equal(rep.Queries[0].Answers, []string{"127.0.0.9"}) {
		t.Fatalf("direct queries: %+v", rep.Queries)
	}
	if !slices.Equal(rep.Hosts, []string{"127.0.0.1"}) || !rep.HostsOverride {
		t.Fatalf("hosts: %v override %v", rep.Hosts, rep.HostsOverride)
	}

	// A name under the NRPT namespace asks that rule's server too.
	checks = nil
	conf.Scopes[0].Servers = []string{srv}
	rep, addrs = resolveSystem(context.Background(), "db.corp.example", 4, conf, &checks)
	if !rep.Scopes[0].Matches || len(rep.Queries) != 1 || !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("10.1.2.3")}) || rep.HostsOverride {
		t.Fatalf("NRPT scope: %+v %+v %v", rep.Scopes, rep.Queries, addrs)
	}

	// A name the system resolver does not know fails the dns check, even
	// when a server answers it directly.
	checks = nil
	rep, addrs = resolveSystem(context.Background(), "no-such-name.example", 4, conf, &checks)
	if len(addrs) != 0 || rep.Error == "" || checks[0].Status != "failed" || rep.Queries[0].Outcome != dnsAnswer {
		t.Fatalf("unknown name: %+v %v %+v", rep, addrs, checks)
	}
}

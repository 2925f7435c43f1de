package rtnl

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl"
)

// load reads a recorded dump (see record_linux_test.go).
func load(t *testing.T, file string) []nl.Message {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := nl.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return msgs
}

func decodeAll[T any](t *testing.T, file string, dec func([]byte) (T, error)) []T {
	t.Helper()
	var out []T
	for _, m := range load(t, file) {
		v, err := dec(m.Data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, v)
	}
	return out
}

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// byDst finds the recorded route of a family and destination ("default"
// for dst_len 0) in the main or given table.
func byDst(t *testing.T, rs []Route, fam uint8, dst string, table int) Route {
	t.Helper()
	for _, r := range rs {
		if r.Family != fam || r.Table != table {
			continue
		}
		if dst == "default" && r.IsDefault() || r.Dst.IsValid() && r.Dst.String() == dst {
			return r
		}
	}
	t.Fatalf("no route %s table %d in the recording", dst, table)
	return Route{}
}

// TestRecordedRoutes checks the decoder against the dump of the namespace
// recordSetup built (Linux 6.18): every value below is what a command there
// set.
func TestRecordedRoutes(t *testing.T) {
	rs := decodeAll(t, "routes.bin", DecodeRoute)
	if len(rs) != 24 {
		t.Errorf("%d routes, want 24", len(rs))
	}
	// route add default via 10.9.0.1 dev v0 metric 100 proto dhcp
	d4 := byDst(t, rs, unix.AF_INET, "default", unix.RT_TABLE_MAIN)
	if d4.Gateway != addr("10.9.0.1") || d4.Oif != 3 || d4.Priority != 100 || ProtocolName(d4.Protocol) != "dhcp" ||
		TypeName(d4.Type) != "unicast" || d4.Dst.IsValid() || d4.HasExpiry {
		t.Errorf("v4 default: %+v", d4)
	}
	if !Usable(d4.Type, d4.Expired(), d4.Flags, true) {
		t.Error("v4 default route not usable")
	}
	// -6 route add default via fe80::1 dev v0 proto ra expires 600 pref high metric 1024
	d6 := byDst(t, rs, unix.AF_INET6, "default", unix.RT_TABLE_MAIN)
	if d6.Gateway != addr("fe80::1") || d6.Oif != 3 || d6.Priority != 1024 || ProtocolName(d6.Protocol) != "ra" ||
		d6.Pref != 1 /* ICMPV6_ROUTER_PREF_HIGH */ || !d6.HasExpiry || d6.Expires <= 590*time.Second || d6.Expires > 600*time.Second {
		t.Errorf("v6 RA default: %+v", d6)
	}
	// multipath: two hops, weights are not kept
	mp := byDst(t, rs, unix.AF_INET, "198.51.100.0/24", unix.RT_TABLE_MAIN)
	want := []Hop{{Gateway: addr("10.9.0.1"), Ifindex: 3}, {Gateway: addr("10.9.0.3"), Ifindex: 3}}
	if !reflect.DeepEqual(mp.Hops, want) || !reflect.DeepEqual(mp.NextHops(), want) || mp.Gateway.IsValid() {
		t.Errorf("multipath: %+v", mp)
	}
	// blackhole and a table above 255 (RTA_TABLE)
	if bh := byDst(t, rs, unix.AF_INET, "192.0.2.0/24", unix.RT_TABLE_MAIN); TypeName(bh.Type) != "blackhole" || Usable(bh.Type, false, bh.Flags, false) {
		t.Errorf("blackhole: %+v", bh)
	}
	if un := byDst(t, rs, unix.AF_INET, "203.0.113.0/24", 1000); TypeName(un.Type) != "unreachable" || TableName(un.Table) != "1000" {
		t.Errorf("unreachable in table 1000: %+v", un)
	}
	// source-specific v6 route: src_len 64
	ss := byDst(t, rs, unix.AF_INET6, "2001:db8:a::/64", unix.RT_TABLE_MAIN)
	if ss.SrcLen != 64 || ss.Src != pfx("2001:db8:9::/64") || ss.Gateway != addr("2001:db8:9::1") {
		t.Errorf("source-specific route: %+v", ss)
	}
	// nexthop object
	if nh := byDst(t, rs, unix.AF_INET, "100.64.0.0/10", unix.RT_TABLE_MAIN); nh.NHID != 7 {
		t.Errorf("nhid route: %+v", nh)
	}
	// route via w0, whose peer is down: RTNH_F_LINKDOWN (and onlink)
	ld := byDst(t, rs, unix.AF_INET, "172.16.0.0/12", unix.RT_TABLE_MAIN)
	if ld.Flags != unix.RTNH_F_LINKDOWN|unix.RTNH_F_ONLINK || ld.NextHops()[0].Flags != unix.RTNH_F_LINKDOWN|unix.RTNH_F_ONLINK {
		t.Errorf("link-down route flags %#x, want linkdown|onlink", ld.Flags)
	}
	if Usable(ld.Type, false, ld.Flags, true) || !Usable(ld.Type, false, ld.Flags, false) {
		t.Error("a link-down route must be unusable exactly where link-down routes are ignored")
	}
	// local table entries: type local, scope host, prefsrc
	lo := byDst(t, rs, unix.AF_INET, "10.9.0.2/32", unix.RT_TABLE_LOCAL)
	if TypeName(lo.Type) != "local" || ScopeName(lo.Scope) != "host" || lo.PrefSrc != addr("10.9.0.2") || ProtocolName(lo.Protocol) != "kernel" {
		t.Errorf("local route: %+v", lo)
	}
}

func TestRecordedNexthops(t *testing.T) {
	nhs := decodeAll(t, "nexthops.bin", DecodeNexthop)
	if len(nhs) != 1 || nhs[0].ID != 7 || nhs[0].Gateway != addr("10.9.0.1") || nhs[0].Oif != 3 || nhs[0].Blackhole {
		t.Errorf("nexthops: %+v", nhs)
	}
}

func TestRecordedLinks(t *testing.T) {
	ls := decodeAll(t, "links.bin", DecodeLink)
	if len(ls) != 5 {
		t.Fatalf("%d links, want 5", len(ls))
	}
	v0, w0 := ls[2], ls[4]
	if v0.Name != "v0" || v0.Index != 3 || v0.Kind != "veth" || v0.HardwareAddr.String() != "02:00:00:00:00:a0" || !v0.Up() || !v0.Carrier() {
		t.Errorf("v0: %+v", v0)
	}
	if w0.Name != "w0" || !w0.Up() || w0.Carrier() || w0.CarrierChanges != 1 {
		t.Errorf("w0 (peer down: up, no carrier): %+v", w0)
	}
	if ls[0].Name != "lo" || ls[0].Kind != "" {
		t.Errorf("lo: %+v", ls[0])
	}
}

func TestRecordedAddrs(t *testing.T) {
	a4 := decodeAll(t, "addrs4.bin", DecodeAddr)
	if len(a4) != 3 || a4[1].Prefix() != pfx("10.9.0.2/24") || a4[1].Ifindex != 3 || ScopeName(a4[1].Scope) != "global" ||
		AddrFlagsText(a4[1].Flags) != "permanent" || !a4[1].HasCacheinfo || a4[1].Created <= 0 {
		t.Errorf("v4 addresses: %+v", a4)
	}
	a6 := decodeAll(t, "addrs6.bin", DecodeAddr)
	var g Addr
	for _, a := range a6 {
		if a.Ifindex == 3 && a.Scope == unix.RT_SCOPE_UNIVERSE {
			g = a
		}
	}
	// IPv6 sends IFA_ADDRESS only.
	if g.Prefix() != pfx("2001:db8:9::2/64") || AddrFlagsText(g.Flags) != "nodad permanent" {
		t.Errorf("v6 global address: %+v (%q)", g, AddrFlagsText(g.Flags))
	}
}

func TestRecordedNeighbours(t *testing.T) {
	ns := decodeAll(t, "neigh4.bin", DecodeNeigh)
	if len(ns) != 2 {
		t.Fatalf("%d neighbours, want 2", len(ns))
	}
	if ns[0].IP != addr("10.9.0.1") || NeighStateText(ns[0].State) != "PERMANENT" || ns[0].LLAddr.String() != "02:00:00:00:00:01" || ns[0].Ifindex != 3 {
		t.Errorf("permanent entry: %+v", ns[0])
	}
	if ns[1].IP != addr("10.9.0.3") || NeighStateText(ns[1].State) != "STALE" {
		t.Errorf("stale entry: %+v", ns[1])
	}
}

func TestRecordedRules(t *testing.T) {
	rs := decodeAll(t, "rules4.bin", DecodeRule)
	if len(rs) != 5 {
		t.Fatalf("%d rules, want 5", len(rs))
	}
	m := rs[1] // rule add fwmark 0x10/0xff table 1000 pref 100
	if m.Priority != 100 || m.Table != 1000 || !m.HasMark || m.Mark != 0x10 || m.Mask != 0xff || RuleActionName(m.Action) != "lookup" {
		t.Errorf("fwmark rule: %+v", m)
	}
	u := rs[2] // from 10.9.0.0/24 ipproto tcp dport 443 uidrange 1000-2000 lookup main pref 200
	if u.Priority != 200 || u.Src != pfx("10.9.0.0/24") || u.IPProto != unix.IPPROTO_TCP || !u.HasDport || u.Dport != [2]uint16{443, 443} ||
		u.HasSport || !u.HasUIDRange || u.UIDStart != 1000 || u.UIDEnd != 2000 || u.Table != unix.RT_TABLE_MAIN {
		t.Errorf("selector rule: %+v", u)
	}
	if rs[0].Table != unix.RT_TABLE_LOCAL || rs[0].Priority != 0 || rs[0].SuppressPrefixlen != -1 {
		t.Errorf("local rule: %+v", rs[0])
	}
}

func TestRecordedNetconf(t *testing.T) {
	ns := decodeAll(t, "netconf4.bin", DecodeNetconf)
	got := map[int]int{}
	for _, n := range ns {
		got[n.Ifindex] = n.IgnoreLinkdown
		if n.Forwarding != 0 {
			t.Errorf("forwarding %d on %d", n.Forwarding, n.Ifindex)
		}
	}
	if got[3] != 1 || got[5] != 0 || got[NetconfIfindexAll] != 0 || len(got) != 7 {
		t.Errorf("ignore_routes_with_linkdown by ifindex: %v (v0=3 set to 1)", got)
	}
}

package causes

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// counterName matches nstat counter names (TcpExtListenDrops,
// Ip6OutNoRoutes, TcpInCsumErrors, ...).
var counterName = regexp.MustCompile(`^(TcpExt|IpExt|Tcp|Ip6|Ip|Icmp6|Icmp|Udp6|Udp)[A-Z][A-Za-z0-9]+$`)

// TestModesNameOnlyCatalogCounters: every counter name a mode's code
// spells (a string literal in a non-test file) is one the catalog lists,
// so a counter cannot be added to a rule, a metric or a summary without
// the catalog that documents it.
func TestModesNameOnlyCatalogCounters(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	seen := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "bench", "deploy":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") ||
			strings.Contains(path, filepath.Join("internal", "causes")) || strings.Contains(path, filepath.Join("internal", "counters")) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil || !counterName.MatchString(v) {
				return true
			}
			seen++
			if !Known(v) {
				t.Errorf("%s: counter %q is not in the catalog (causes.go Counters or contextCounters)", fset.Position(lit.Pos()), v)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 20 {
		t.Fatalf("found only %d counter names in the modes' code: the scan is broken", seen)
	}
}

// TestReasonAndICMPMaps: the maps every mode uses resolve as the kernel
// facts say.
func TestReasonAndICMPMaps(t *testing.T) {
	for reason, want := range map[string]ID{
		"NETFILTER_DROP": FirewallDrop, "IP_RPFILTER": RPFilterDrop, "NO_SOCKET": NoListener,
		"NEIGH_FAILED": NeighborUnreachable, "TCP_LISTEN_OVERFLOW": AcceptQueueOverflow,
		"TCP_MD5NOTFOUND": TCPReject, "TCP_AONOTFOUND": TCPReject, "TCP_RFC7323_TW_PAWS": PAWSReject,
		"TCP_RFC7323_PAWS": PAWSReject, "SOCKET_FILTER": BPFDrop, "TCP_MINTTL": TCPReject, "TCP_CSUM": TCPReject,
		"IPV6DISABLED": IPv6Disabled, "NEIGH_DEAD": NeighborUnreachable,
		"NOT_SPECIFIED": "", "QUEUE_PURGE": "",
	} {
		if got := ForDropReason(reason); got != want {
			t.Errorf("ForDropReason(%s) = %q, want %q", reason, got, want)
		}
	}
	for reason, want := range map[string]ID{
		"NETFILTER_DROP": FirewallDrop, "NEIGH_QUEUEFULL": NeighborUnreachable, "NOT_SPECIFIED": NeighborUnreachable,
		"QUEUE_PURGE": NeighborUnreachable, "IPV6DISABLED": IPv6Disabled, "TC_EGRESS": SynackEgressDrop, "QDISC_DROP": SynackEgressDrop,
	} {
		if got := ForSynackDropReason(reason); got != want {
			t.Errorf("ForSynackDropReason(%s) = %q, want %q", reason, got, want)
		}
	}
	for _, c := range []struct {
		v6         bool
		typ, code  uint8
		want       ID
		text       string
		recognised bool
	}{
		{false, 3, 3, FirewallDrop, "port unreachable (a REJECT rule: closed TCP ports answer RST)", true},
		{false, 3, 13, FirewallDrop, "administratively prohibited", true},
		{false, 3, 10, FirewallDrop, "administratively prohibited", true},
		{false, 3, 9, FirewallDrop, "administratively prohibited", true},
		{false, 3, 7, NeighborUnreachable, "host unreachable", true},
		{false, 3, 6, NoRouteToPeer, "network unreachable", true},
		{true, 1, 5, FirewallDrop, "administratively prohibited", true},
		{true, 1, 6, FirewallDrop, "administratively prohibited", true},
		{false, 3, 1, NeighborUnreachable, "host unreachable", true},
		{false, 3, 0, NoRouteToPeer, "network unreachable", true},
		{false, 3, 2, NoRouteToPeer, "unreachable code 2", true},
		{false, 11, 0, NoRouteToPeer, "time exceeded", true},
		{true, 1, 4, FirewallDrop, "port unreachable (a REJECT rule: closed TCP ports answer RST)", true},
		{true, 1, 1, FirewallDrop, "administratively prohibited", true},
		{true, 1, 3, NeighborUnreachable, "address unreachable", true},
		{true, 1, 0, NoRouteToPeer, "no route to destination", true},
		{true, 1, 7, NoRouteToPeer, "unreachable code 7", true},
		{true, 3, 0, NoRouteToPeer, "time exceeded", true},
		{false, 5, 0, "", "", false},
	} {
		id, text, ok := ForICMP(c.v6, c.typ, c.code)
		if id != c.want || text != c.text || ok != c.recognised {
			t.Errorf("ForICMP(v6=%v, %d, %d) = %q %q %v, want %q %q %v", c.v6, c.typ, c.code, id, text, ok, c.want, c.text, c.recognised)
		}
	}
	for typ, ok := range map[string]bool{"unreachable": true, "blackhole": true, "prohibit": true, "throw": true, "unicast": false, "local": false} {
		if _, got := RouteTypeErrno(typ); got != ok {
			t.Errorf("RouteTypeErrno(%s) fails = %v, want %v", typ, got, ok)
		}
	}
}

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

// TestNoCauseFactSpelledOutside: no non-test Go file outside this package
// spells a cause ID or a drop-reason name the catalog owns as a string
// literal: modes name causes by the catalog's constants and look drop
// reasons up in it, so a renamed or re-mapped fact cannot leave a copy
// behind. The scan reads every string literal with go/parser.
func TestNoCauseFactSpelledOutside(t *testing.T) {
	ids := map[string]bool{}
	reasons := map[string]bool{DropReasonNotSpecified: true}
	var prefixes []string
	for _, c := range All() {
		ids[string(c.ID)] = true
		for _, list := range [][]string{c.DropReasons, c.SynackDropReasons} {
			for _, r := range list {
				switch {
				case r == "*":
				case strings.HasSuffix(r, "*"):
					prefixes = append(prefixes, strings.TrimSuffix(r, "*"))
				default:
					reasons[r] = true
				}
			}
		}
	}
	reasonName := regexp.MustCompile(`^[A-Z][A-Z0-9_]+$`)
	var alts []string
	for id := range ids {
		alts = append(alts, regexp.QuoteMeta(id))
	}
	// A cause ID inside a longer text ("… names no-listener"), not as
	// part of a longer kebab word.
	inText := regexp.MustCompile(`(^|[^a-z0-9-])(` + strings.Join(alts, "|") + `)([^a-z0-9-]|$)`)
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "bench", "deploy":
				return filepath.SkipDir
			}
			if path == filepath.Join(root, "internal", "causes") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		// The allowlist, each entry with its reason:
		//   - internal/lab names its fault scenarios after the cause
		//     they build (Name:, Scenario: fields): scenario names are
		//     lab API, not cause IDs, and TestCauseCoverage ties each to
		//     its Expect cause constant;
		//   - internal/lab/kernels.go's DropReason: fields name the BTF
		//     enum value whose absence on a kernel is the limit (a kernel
		//     fact checked against BTF, not a mapping to a cause), and its
		//     Why: fields are prose for the kernel matrix saying which
		//     cause a mode still reports;
		//   - "TCP_MD5SIG" is a setsockopt option, not a drop reason (it
		//     only shares the TCP_MD5 prefix).
		allowed := map[token.Pos]bool{}
		inLab := strings.Contains(path, filepath.Join("internal", "lab")+string(filepath.Separator))
		ast.Inspect(f, func(n ast.Node) bool {
			kv, ok := n.(*ast.KeyValueExpr)
			if !ok || !inLab {
				return true
			}
			if k, ok := kv.Key.(*ast.Ident); ok && (k.Name == "Name" || k.Name == "Scenario" || k.Name == "DropReason" || k.Name == "Why") {
				allowed[kv.Value.Pos()] = true
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING || allowed[lit.Pos()] {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil || v == "TCP_MD5SIG" {
				return true
			}
			if m := inText.FindStringSubmatch(v); m != nil {
				t.Errorf("%s: cause ID %q spelled in a string (%q): use the causes constant", fset.Position(lit.Pos()), m[2], v)
			}
			if reasons[v] {
				t.Errorf("%s: drop reason %q spelled as a string: look it up in the catalog", fset.Position(lit.Pos()), v)
			}
			for _, p := range prefixes {
				if strings.HasPrefix(v, p) && reasonName.MatchString(v) {
					t.Errorf("%s: drop reason %q (the catalog's %s*) spelled as a string", fset.Position(lit.Pos()), v, p)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("scanned only %d files: the walk is broken", files)
	}
}

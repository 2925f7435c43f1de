package firewall

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/testnet"
)

// nftListing maps rule keys to the text `nft -a list ruleset` prints.
func nftListing(t *testing.T, out string) map[string]string {
	t.Helper()
	tableRe := regexp.MustCompile(`^table (\S+) (\S+) \{`)
	chainRe := regexp.MustCompile(`^\s*chain (\S+) \{`)
	ruleRe := regexp.MustCompile(`^\s*(.*?) # handle (\d+)$`)
	var fam, table, chain string
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if s := tableRe.FindStringSubmatch(line); s != nil {
			fam, table = s[1], s[2]
			continue
		}
		if s := chainRe.FindStringSubmatch(line); s != nil {
			chain = s[1]
			continue
		}
		if chain == "" || strings.Contains(line, "type filter hook") {
			continue
		}
		if s := ruleRe.FindStringSubmatch(line); s != nil {
			m[fam+"/"+table+"/"+chain+"/"+s[2]] = s[1]
		}
	}
	return m
}

// TestRenderingMatchesNft loads testdata/ruleset.nft into a namespace and
// compares each rule's Text with nft's own listing of it.
func TestRenderingMatchesNft(t *testing.T) {
	src, err := os.ReadFile("testdata/ruleset.nft")
	if err != nil {
		t.Fatal(err)
	}
	ns := kernelNS(t, string(src))
	rs, err := Inspect(ns.FD())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	want := nftListing(t, testnet.MustExec(t, ns, "", "nft", "-a", "list", "ruleset"))
	if len(want) != len(rs.Rules) {
		t.Errorf("nft lists %d rules, Inspect %d", len(want), len(rs.Rules))
	}
	for _, r := range rs.Rules {
		if got, w := r.Text, want[r.Key()]; got != w {
			t.Errorf("%s:\n got %q\nwant %q", r.Key(), got, w)
		}
	}
}

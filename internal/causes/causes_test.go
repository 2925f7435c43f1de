package causes

import (
	"regexp"
	"testing"
)

func TestCatalogIDs(t *testing.T) {
	kebab := regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	seen := map[ID]bool{}
	for _, c := range All() {
		if !kebab.MatchString(string(c.ID)) {
			t.Errorf("%q is not kebab-case", c.ID)
		}
		if seen[c.ID] {
			t.Errorf("duplicate id %q", c.ID)
		}
		seen[c.ID] = true
		if c.Title == "" || c.Mechanism == "" || c.Confirm == "" || c.Fix == "" || len(c.Counters) == 0 {
			t.Errorf("%s: incomplete entry", c.ID)
		}
	}
	// The IDs the issues name; renaming one breaks every consumer.
	for _, id := range []ID{"no-route-to-peer", "accept-queue-overflow", "syn-queue-overflow",
		"syn-flood-cookies", "firewall-drop", "rp-filter-drop", "no-listener",
		"neighbor-unreachable", "conntrack-full", "ipv6-disabled", "tcp-reject",
		"synack-unanswered", "backlog-capped"} {
		if !seen[id] {
			t.Errorf("catalog lacks %q", id)
		}
	}
}

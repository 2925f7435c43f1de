package watch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseStat: the name in /proc/<pid>/stat may hold spaces and
// parentheses; the last ')' ends it.
func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		comm string
		ppid uint32
		ok   bool
	}{
		{"812 (ip) R 805 812 805 0 -1", "ip", 805, true},
		{"9 (a) b) (c) S 7 9 9 0", "a) b) (c", 7, true},
		{"9 (x y) S", "", 0, false},
		{"garbage", "", 0, false},
	} {
		comm, ppid, ok := parseStat([]byte(tc.in))
		if comm != tc.comm || ppid != tc.ppid || ok != tc.ok {
			t.Errorf("parseStat(%q) = %q %d %v, want %q %d %v", tc.in, comm, ppid, ok, tc.comm, tc.ppid, tc.ok)
		}
	}
}

// TestParentChain: parents are read from /proc while they live, bounded,
// stopping at pid 1; a parent already gone is named as the history
// recorded it (pcomm).
func TestParentChain(t *testing.T) {
	root := t.TempDir()
	for pid, stat := range map[string]string{"805": "805 (sh) S 700", "700": "700 (bash) S 600", "600": "600 (sshd: x) S 1", "1": "1 (systemd) S 0"} {
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var h *procHistory // not loaded: /proc only
	if got := strings.Join(h.parents(805, "sh", root), " ← "); got != "sh[805] ← bash[700] ← sshd: x[600]" {
		t.Errorf("chain %q", got)
	}
	if got := strings.Join(h.parents(999, "hook", root), " ← "); got != "hook[999]" {
		t.Errorf("gone parent: %q, want the recorded name", got)
	}
	if got := h.parents(1, "systemd", root); len(got) != 0 {
		t.Errorf("pid 1 named: %v", got)
	}
}

//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/safetext"
	"github.com/synscope/synscope/internal/trace"
)

// TestTraceTextHostile: trace's text lines name namespaces by their
// /run/netns names and carry evidence and listener keys from the traced
// system; written the way trace writes them, nothing reaches the terminal
// raw, and a newline in a name cannot start a line of its own.
func TestTraceTextHostile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a namespace with a hostile name")
	}
	// synscope refuses to create such a name; another program may not.
	// Bind the namespace to the hostile name and drop the valid one.
	ns, err := netns.Create(fmt.Sprintf("synscope-hx-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("hx\x1b[2J\x1b[31mOK\n%d", os.Getpid())
	hostile := filepath.Join(netns.RunDir, name)
	if err := os.WriteFile(hostile, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// /run/netns is a shared mount: the bind may be stacked; undo
		// every layer, then the file, and say so if anything stays.
		for i := 0; i < 4 && unix.Unmount(hostile, unix.MNT_DETACH) == nil; i++ {
		}
		if err := os.Remove(hostile); err != nil {
			t.Errorf("removing %q: %v", hostile, err)
		}
	})
	if err := unix.Mount(ns.Path, hostile, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	names := trace.NewNamespaceNames()
	if got := names.Label(uint32(ns.Inode)); got != name {
		t.Fatalf("label %q, want the namespace's name %q", got, name)
	}
	o := trace.Outcome{Time: time.Now(), Netns: uint32(ns.Inode), Client: "10.0.0.1:1", Server: "10.0.0.2:80",
		Fate: "dropped", Cause: "firewall-drop", SYNs: 1,
		Evidence: []string{"rule in table \x1b]0;t\x07 chain \u202ec"}}
	sum := trace.Summary{TopListeners: []trace.KeyCount{{Key: "[::]:80 \x1b[2Jcomm", Count: 1}}}
	var b strings.Builder
	w := safetext.NewWriter(&b)
	fmt.Fprintln(w, formatOutcome(o, names))
	writeTraceSummary(w, sum)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		if !safetext.Safe(l) {
			t.Errorf("line %d holds raw control bytes: %q", i+1, l)
		}
	}
	if !strings.Contains(lines[0], `hx\x1b[2J\x1b[31mOK\x0a`) {
		t.Errorf("first line does not show the namespace name on it: %q", lines[0])
	}
}

package fixcmd

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/safetext"
)

// hostile holds names a container can give its interfaces, tables or
// processes.
var hostile = []string{
	"eth0", "e$(id>p)", "e`id>p`", "a;touch p", "a|tee p", "a>p", "it's", `dq"x`, `b\s`,
	"\x1b[2J\x1b[31mFAKE", "tab\there", "nl\nmid", "%d%s%n", "-rf", "~root", "#c", "*", "?", "[a]",
	"crème", "\u202etxt", "\xff\xfe", "a b", "'", "''", "$HOME", "${IFS}", "!", "{a,b}",
	"\x01\x02\x7f", "\u009b2J", "-\xf30", "-\x1b",
	// printf's own syntax beside a byte that forces the printf path
	"\x01%s", "%d\x1b%n%%", "\u2028%b\\c", "-%s\x7f", "\x01\\n\\101\\\\",
}

// shellEcho runs `printf %s WORD` through sh and returns the bytes, proving
// the quoted word reaches a program unchanged.
func shellEcho(t testing.TB, quoted, dir string) []byte {
	t.Helper()
	cmd := exec.Command("sh", "-c", "printf %s "+quoted)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("sh -c 'printf %%s %s': %v: %q", quoted, err, out.String())
	}
	return out.Bytes()
}

func TestQuoteRoundTripsThroughSh(t *testing.T) {
	dir := t.TempDir()
	for _, s := range hostile {
		q, ok := Quote(s)
		if !ok {
			t.Fatalf("Quote(%q) refused", s)
		}
		if !safetext.Safe(q) {
			t.Errorf("Quote(%q) = %q holds bytes a terminal acts on", s, q)
		}
		if got := shellEcho(t, q, dir); string(got) != s {
			t.Errorf("Quote(%q) = %s: sh gave %q", s, q, got)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("quoting ran something: %v appeared", entries)
	}
}

func TestQuoteTrailingNewlineRefused(t *testing.T) {
	if _, ok := Quote("x\x1b\n"); ok {
		t.Fatal("a word ending in a newline cannot be printed on one line and must be refused")
	}
	c := New("ip", "link", "del", "x\x1b\n")
	if _, ok := c.Args(); !ok {
		t.Fatal("Args refused a real word")
	}
	if s := c.String(); !strings.Contains(s, "<unprintable") || strings.ContainsAny(s, "\n\x1b") {
		t.Fatalf("String = %q", s)
	}
}

func TestCmdAndScript(t *testing.T) {
	ns := New("ip", "-n", "hx evil")
	c := ns.Then(New("-6", "route", "add", "default", "via", netip.MustParseAddr("fd77:2::1"), "dev", "e$(id>p)", "table", 100))
	want := `ip -n 'hx evil' -6 route add default via fd77:2::1 dev 'e$(id>p)' table 100`
	if c.String() != want {
		t.Fatalf("got  %s\nwant %s", c, want)
	}
	var s Script
	s.Run(New("sysctl", "-w", "net.ipv4.tcp_syncookies=1")).
		Note("then restart\nFAKE: the listener \x1b[2J").
		Alt("or, if the rule is wrong", New("ip", "rule", "del", "priority", 10))
	got := s.String()
	lines := strings.Split(got, "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "# ") || strings.Contains(got, "\x1b") {
		t.Fatalf("script:\n%s", got)
	}
	h := New("ip", "route", "add", "default", "via", Hole("gateway"))
	if _, ok := h.Args(); ok || h.String() != "ip route add default via <gateway>" {
		t.Fatalf("hole: %q", h)
	}
}

// TestHoleDoesNotRun: a command with a placeholder fails in sh before it
// runs anything.
func TestHoleDoesNotRun(t *testing.T) {
	dir := t.TempDir()
	line := New("touch", "ran", Hole("gateway")).String()
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = dir
	if err := cmd.Run(); err == nil {
		t.Fatalf("%q ran in sh", line)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Fatalf("%q created a file", line)
	}
}

// FuzzQuote: any word sh gets back byte for byte, and the printed form
// is safe for a terminal.
func FuzzQuote(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			return // no name the kernel gives us holds NUL, and argv cannot
		}
		q, ok := Quote(s)
		if !ok {
			if !strings.HasSuffix(s, "\n") {
				t.Fatalf("Quote(%q) refused", s)
			}
			return
		}
		if !safetext.Safe(q) || strings.ContainsAny(q, "\n\r") {
			t.Fatalf("Quote(%q) = %q not terminal-safe", s, q)
		}
		if got := shellEcho(t, q, dir); string(got) != s {
			t.Fatalf("Quote(%q) = %s: sh gave %q", s, q, got)
		}
	})
}

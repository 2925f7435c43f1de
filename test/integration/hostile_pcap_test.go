package integration

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/pcap/capfile"
	"github.com/synscope/synscope/internal/pcap/synth"
)

// TestHostileCapture: a capture whose file name and packet comments carry
// escape sequences and a newline (file names come from whoever wrote the
// directory; comments from whoever wrote the capture). Every text mode of
// pcap — summary, table, ladder, two-capture comparison — shows them
// without a raw control byte, and a comparison's names cannot fake lines.
func TestHostileCapture(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := filepath.Join(dir, "cap\x1b[2J\x1b[32mALL-OK\n\u202etxt<script>alert(1)<.pcapng")
	writeHostileCapture(t, name)

	for _, args := range [][]string{
		{"pcap", name},
		{"pcap", name, "--table"},
		{"pcap", name, "--ladder", "1"},
		{"pcap", "--client", name, "--server", name},
		{"pcap", name + "\x1b[31m-missing"},
	} {
		r := synscope(t, args...)
		if r.code == 2 && len(args) == 2 && args[1] == name {
			t.Fatalf("%q: exit 2: %s", args, r.stderr)
		}
		assertTerminalSafe(t, args[len(args)-1], r.stdout+r.stderr)
	}
	// HTML: every value escaped once, shown safely.
	out := filepath.Join(dir, "report.html")
	if r := synscope(t, "pcap", name, "--html", out); r.code == 2 {
		t.Fatalf("--html: exit 2: %s", r.stderr)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	assertTerminalSafe(t, "html", string(page))
	// The page's own two scripts (its data block and its code) and no
	// other: the name is in the title escaped and in the data block as
	// JSON with <, > and & escaped.
	if strings.Count(string(page), "<script") != 2 || strings.Contains(string(page), "<script>alert") || !strings.Contains(string(page), "&lt;script&gt;") {
		t.Errorf("HTML report does not escape the file name:\n%s", page)
	}
}

// writeHostileCapture writes one refused handshake (SYN, RST) as pcapng
// with a hostile comment on each packet.
func writeHostileCapture(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := capfile.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	cli, srv := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	segs := []synth.Seg{
		{Src: cli, Dst: srv, Sport: 40000, Dport: 80, Seq: 1000, Flags: synth.SYN, Win: 64240, MSS: 1460, WScale: 7, TTL: 64},
		{Src: srv, Dst: cli, Sport: 80, Dport: 40000, Seq: 0, Ack: 1001, Flags: synth.RST | synth.ACK, WScale: -1, TTL: 64},
	}
	for i, s := range segs {
		fr := s.Frame()
		p := capfile.Packet{TS: int64(1_700_000_000_000_000_000 + i*1_000_000), Data: fr, OrigLen: len(fr), Link: 1}
		if err := w.Write(p, "\x1b]0;pwned\x07\x1b[2J comment\nfake line"); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

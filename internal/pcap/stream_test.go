package pcap

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/pcap/capfile"
	"github.com/synscope/synscope/internal/pcap/synth"
)

// genCapture writes a generated capture spanning ~25 s (1 ms between
// packets), so connections end mid-stream, get swept and are recycled.
func genCapture(t *testing.T, size int64) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := synth.WriteBench(&buf, size, synth.BenchOptions{Flows: 5000, Open: 200, FailPct: 10, Spacing: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gen.pcap")
	if err := writeFile(path, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	return path, buf.Bytes()
}

func connsJSON(t *testing.T, conns []*Conn) string {
	t.Helper()
	b, err := json.Marshal(conns)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The mapped-file path, the streamed path, and summary mode with
// recycled connections must agree exactly.
func TestFileModesAgree(t *testing.T) {
	path, data := genCapture(t, 4<<20)
	streamed, st, err := AnalyzeReader(bytes.NewReader(data), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Flows < 1000 || len(streamed) != st.Flows {
		t.Fatalf("generated capture too small: %+v, %d conns", st, len(streamed))
	}
	rep, err := AnalyzeFile(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := connsJSON(t, streamed), connsJSON(t, rep.Conns); a != b {
		t.Fatalf("mapped analysis differs from streamed")
	}
	if !reflect.DeepEqual(rep.Stats, st) {
		t.Fatalf("stats: mapped %+v, streamed %+v", rep.Stats, st)
	}
	// Summary mode recycles Conn records; a leak of state from one
	// connection into the next would change the counts.
	sum, err := SummarizeFile(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sum.Summary, rep.Summary) || !reflect.DeepEqual(sum.Causes, rep.Causes) {
		t.Fatalf("summary mode %+v\nfull mode %+v", sum.Summary, rep.Summary)
	}
	if sum.Stats.MaxOpen >= st.Flows/2 {
		t.Errorf("max open flows %d of %d: the sweep does not end idle connections", sum.Stats.MaxOpen, st.Flows)
	}
	// Without ReuseConns, OnConn may keep what it gets.
	var kept []*Conn
	cfg := Config{OnConn: func(c *Conn) { kept = append(kept, c) }}
	if _, _, err := AnalyzeReader(bytes.NewReader(data), cfg); err != nil {
		t.Fatal(err)
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].ID < kept[j].ID })
	if connsJSON(t, kept) != connsJSON(t, streamed) {
		t.Fatal("connections kept from OnConn differ from the collected ones")
	}
}

func TestTruncatedMappedFile(t *testing.T) {
	_, data := genCapture(t, 1<<20)
	cut := data[:len(data)-7]
	path := filepath.Join(t.TempDir(), "cut.pcap")
	if err := writeFile(path, cut); err != nil {
		t.Fatal(err)
	}
	want, _, werr := AnalyzeReader(bytes.NewReader(cut), Config{})
	rep, err := AnalyzeFile(path, Config{})
	if !errors.Is(err, capfile.ErrTruncated) || !errors.Is(werr, capfile.ErrTruncated) {
		t.Fatalf("errors: mapped %v, streamed %v", err, werr)
	}
	if rep == nil || connsJSON(t, rep.Conns) != connsJSON(t, want) {
		t.Fatal("truncated mapped file: report differs from streamed")
	}
	sum, err := SummarizeFile(path, Config{})
	if !errors.Is(err, capfile.ErrTruncated) || sum == nil || sum.Summary.Connections != len(want) {
		t.Fatalf("summary of truncated file: %v, %+v", err, sum)
	}
}

func TestNotACaptureFile(t *testing.T) {
	dir := t.TempDir()
	for name, b := range map[string][]byte{"empty": nil, "text": []byte("hello, this is not a capture file\n")} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if r, err := SummarizeFile(path, Config{}); err == nil || r != nil {
			t.Errorf("%s: got report %v, err %v", name, r, err)
		}
		if r, err := AnalyzeFile(path, Config{}); err == nil || r != nil {
			t.Errorf("%s: got report %v, err %v", name, r, err)
		}
	}
}

// A capture spanning years (captures concatenated in time order, like
// Zeek's ssh_ssh.pcap) must not make the sweep's 32-bit deadline ticks
// overflow and end live connections (each long connection stays one),
// and the sweep must keep ending idle ones years after the first packet.
func TestSweepAcrossYears(t *testing.T) {
	var c capture
	year := 365 * 24 * time.Hour
	for k, at := range []time.Duration{0, 3 * year, 5 * year, 7 * year} {
		s := syn(cli4, srv4, uint16(40000+k), 1000, 1)
		c.add(at, s.Frame())
		sa := synack(s, 5000)
		c.add(at+time.Millisecond, sa.Frame())
		a := ack(s, 5000)
		// Enough packets that the sweep runs many times inside each.
		for i := range 1500 {
			a.Payload = 10
			a.Seq = 1001 + uint32(10*i)
			c.add(at+time.Duration(2+i)*time.Millisecond, a.Frame())
		}
	}
	// The capture reaches 2030: analysed as if after it.
	conns, st, err := AnalyzeReader(bytes.NewReader(c.bytes(t)), Config{Now: time.Unix(1_700_000_000, 0).Add(8 * year)})
	if err != nil {
		t.Fatal(err)
	}
	if st.MaxOpen > 2 {
		t.Errorf("max open flows %d: connections idle for years were not swept", st.MaxOpen)
	}
	if len(conns) != 4 {
		for _, x := range conns {
			t.Logf("%d %s:%d %s %s", x.ID, x.OrigH, x.OrigP, x.ConnState, x.History)
		}
		t.Fatalf("%d connections, want 4", len(conns))
	}
	for _, x := range conns {
		if x.Verdict != VerdictEstablished || x.OrigPkts != 1501 {
			t.Errorf("conn %d: %s, %d orig packets", x.ID, x.Verdict, x.OrigPkts)
		}
	}
}

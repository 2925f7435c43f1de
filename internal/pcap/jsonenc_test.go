package pcap

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// The hand-written encoder must give exactly encoding/json's bytes for
// every connection of a generated capture and for hostile strings and
// edge-case numbers.
func TestConnJSONMatchesEncodingJSON(t *testing.T) {
	_, data := genCapture(t, 2<<20)
	conns, _, err := AnalyzeReader(bytes.NewReader(data), Config{})
	if err != nil {
		t.Fatal(err)
	}
	rtt := 1e-7
	hostile := "a<b>&c\"d\\e\x00\x01\x1b[2J\n\r\t\b\f\x7f\u2028\u2029\xff\xfe</script><!--é😀"
	conns = append(conns,
		&Conn{OrigH: hostile, RespH: hostile, ConnState: hostile, History: hostile, Verdict: Verdict(hostile), Cause: "x<y",
			Detail: hostile, RTOPattern: hostile, ICMP: hostile, TFO: hostile, Notes: []string{hostile, ""},
			SynSchedule: []float64{0, 1e-7, 1e21, 123456789.123456, -0.5, 5e-324}, HandshakeRTT: &rtt,
			TS: 1.7e9, Duration: 1e21, OrigP: 65535, RespP: 0, OrigPkts: math.MaxUint64, Duplicates: -1, ID: -3},
		&Conn{Notes: []string{}, SynSchedule: []float64{}},
		&Conn{},
	)
	var checked int
	for _, c := range conns {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendConn(nil, c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("connection %d:\n got %s\nwant %s", c.ID, got, want)
		}
		checked++
	}
	if checked < 500 {
		t.Fatalf("only %d connections checked", checked)
	}
	if _, err := appendConn(nil, &Conn{Duration: math.NaN()}); err == nil {
		t.Error("NaN encoded without error (encoding/json refuses it)")
	}
}

// reportMap decodes a JSON report with its connections sorted by id.
func reportMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("invalid JSON: %v\n%.500s", err, b)
	}
	cs, _ := m["connections"].([]any)
	sort.Slice(cs, func(i, j int) bool {
		return cs[i].(map[string]any)["id"].(float64) < cs[j].(map[string]any)["id"].(float64)
	})
	return m
}

// countingWriter counts the connection lines that reached it.
type countingWriter struct {
	buf   bytes.Buffer
	lines int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.lines += bytes.Count(p, []byte("\n    {"))
	return w.buf.Write(p)
}

// --json streams: the streamed report holds what the collected one holds
// (encoding/json of the whole Report, the v1 layout), connections reach
// the output before the analysis ends, and records are recycled (memory
// follows the open connections).
func TestJSONStreamMatchesReport(t *testing.T) {
	path, _ := genCapture(t, 4<<20)
	full, err := AnalyzeFile(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	var out countingWriter
	js := NewJSONStream(&out, path)
	records := map[*Conn]bool{}
	var seen, beforeEnd int
	cfg := Config{OnConn: func(c *Conn) {
		records[c] = true
		seen++
		js.Conn(c)
	}}
	rep, err := SummarizeFile(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	beforeEnd = out.lines
	if err := js.Finish(rep); err != nil {
		t.Fatal(err)
	}
	got := out.buf.Bytes()
	if !reflect.DeepEqual(reportMap(t, got), reportMap(t, want)) {
		t.Fatalf("streamed report differs from the collected one\nstreamed %.800s\ncollected %.800s", got, want)
	}
	if seen != len(full.Conns) || beforeEnd < seen/2 {
		t.Errorf("%d connections, %d of them written before Finish", seen, beforeEnd)
	}
	if len(records) > full.Stats.MaxOpen*2 || len(records) >= seen/2 {
		t.Errorf("%d Conn records for %d connections (max open %d): not recycled", len(records), seen, full.Stats.MaxOpen)
	}
	// One connection a line: a line-reading consumer gets each whole.
	sc := bufio.NewScanner(bytes.NewReader(got))
	sc.Buffer(nil, 1<<20)
	var lines int
	for sc.Scan() {
		l := strings.TrimSuffix(strings.TrimSpace(sc.Text()), ",")
		if strings.HasPrefix(l, `{"ts":`) {
			var c map[string]any
			if err := json.Unmarshal([]byte(l), &c); err != nil {
				t.Fatalf("connection line is not JSON: %v: %s", err, l)
			}
			lines++
		}
	}
	if lines != seen {
		t.Errorf("%d connection lines, want %d", lines, seen)
	}
	// Report.WriteJSON (kept-connection modes) writes the same layout.
	var wj bytes.Buffer
	if err := full.WriteJSON(&wj); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(reportMap(t, wj.Bytes()), reportMap(t, want)) {
		t.Fatal("Report.WriteJSON differs from encoding/json of the report")
	}
	// An empty report still has a connections list.
	var empty bytes.Buffer
	if err := NewReport("e", nil, Stats{}, nil).WriteJSON(&empty); err != nil {
		t.Fatal(err)
	}
	if m := reportMap(t, empty.Bytes()); m["connections"] == nil || m["schema"] != ReportSchema {
		t.Errorf("empty report: %s", empty.Bytes())
	}
}

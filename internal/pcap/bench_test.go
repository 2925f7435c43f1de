package pcap

import (
	"bytes"
	"io"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/pcap/synth"
)

// BenchmarkAnalyze measures summary-mode analysis (what `synscope pcap
// FILE` does) of a generated in-memory capture: 24 MB, mixed
// IPv4/IPv6/VLAN, 3% failures, 100 µs between packets so that the 13 s
// it spans reach the steady state where connections end and their
// records are recycled (allocs/pkt then counts only per-connection
// strings). It is small enough for CI to run with -benchtime 1x; the
// packets/s figure is per core (run with -cpu 1).
func BenchmarkAnalyze(b *testing.B) {
	var buf bytes.Buffer
	if err := synth.WriteBench(&buf, 24<<20, synth.BenchOptions{FailPct: 3, Spacing: 100 * time.Microsecond}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	var pkts int
	var m0, m1 runtime.MemStats
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	runtime.ReadMemStats(&m0)
	for b.Loop() {
		r, err := SummarizeReader(bytes.NewReader(data), Config{})
		if err != nil {
			b.Fatal(err)
		}
		pkts += r.Stats.Packets
	}
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(pkts), "allocs/pkt")
}

// BenchmarkAnalyzeFile measures single-core analysis of the capture named
// by SYNSCOPE_BENCH_PCAP (make one with bench/pcap/gen).
func BenchmarkAnalyzeFile(b *testing.B) {
	path := os.Getenv("SYNSCOPE_BENCH_PCAP")
	if path == "" {
		b.Skip("set SYNSCOPE_BENCH_PCAP to a capture (go run ./bench/pcap/gen -o f.pcap -size 200M)")
	}
	var pkts int
	for b.Loop() {
		r, err := SummarizeFile(path, Config{})
		if err != nil {
			b.Fatal(err)
		}
		pkts += r.Stats.Packets
	}
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkAnalyzeJSON is BenchmarkAnalyze writing the streamed JSON
// report (what `synscope pcap --json FILE` does) to io.Discard.
func BenchmarkAnalyzeJSON(b *testing.B) {
	var buf bytes.Buffer
	if err := synth.WriteBench(&buf, 24<<20, synth.BenchOptions{FailPct: 3, Spacing: 100 * time.Microsecond}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	var pkts int
	var m0, m1 runtime.MemStats
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	runtime.ReadMemStats(&m0)
	for b.Loop() {
		js := NewJSONStream(io.Discard, "bench.pcap")
		r, err := SummarizeReader(bytes.NewReader(data), Config{OnConn: js.Conn})
		if err != nil {
			b.Fatal(err)
		}
		if err := js.Finish(r); err != nil {
			b.Fatal(err)
		}
		pkts += r.Stats.Packets
	}
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(pkts), "allocs/pkt")
}

package pcap

import (
	"os"
	"testing"
)

// BenchmarkAnalyzeFile measures single-core analysis of the capture named
// by SYNSCOPE_BENCH_PCAP (make one with bench/pcap/gen).
func BenchmarkAnalyzeFile(b *testing.B) {
	path := os.Getenv("SYNSCOPE_BENCH_PCAP")
	if path == "" {
		b.Skip("set SYNSCOPE_BENCH_PCAP to a capture (go run ./bench/pcap/gen -o f.pcap -size 200M)")
	}
	for b.Loop() {
		r, err := SummarizeFile(path, Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(r.Stats.Packets)/b.Elapsed().Seconds()*float64(b.N), "pkts/s")
	}
}

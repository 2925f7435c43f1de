// Command gen writes a large synthetic capture for benchmarking synscope
// pcap: interleaved TCP connections over IPv4, IPv6 and 802.1Q-tagged
// Ethernet, most completing normally, a few percent timing out (SYN
// retransmissions) or refused (RST). The traffic itself comes from
// synth.WriteBench, which the in-memory Go benchmark uses too.
//
//	go run ./bench/pcap/gen -o /tmp/big.pcap -size 1G
//	go run ./bench/pcap/gen -o /tmp/flood.pcap -flood 1000000   # a SYN flood (synth.WriteFlood)
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/synscope/synscope/internal/pcap/synth"
)

func main() {
	out := flag.String("o", "bench.pcap", "output file")
	sizeS := flag.String("size", "1G", "approximate output size (K, M, G suffixes)")
	flows := flag.Int("flows", 100000, "number of connections (reused round-robin until the size is reached)")
	open := flag.Int("open", 2000, "connections in flight at once")
	failPct := flag.Float64("fail", 3, "percent of connections that fail")
	flood := flag.Int("flood", 0, "instead: write a SYN flood of this many spoofed SYNs, each answered by an unacknowledged SYN-ACK")
	flag.Parse()
	if *flood > 0 {
		if err := runFlood(*out, *flood); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(2)
		}
		return
	}
	size, err := parseSize(*sizeS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(2)
	}
	if err := run(*out, size, synth.BenchOptions{Flows: *flows, Open: *open, FailPct: *failPct}); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(2)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return n * mult, nil
}

func run(path string, size int64, o synth.BenchOptions) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if err := synth.WriteBench(f, size, o); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

func runFlood(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if err := synth.WriteFlood(f, n); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

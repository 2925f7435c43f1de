package main

import (
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	var ss []sample
	for r, v := range []float64{10, 12, 11} {
		ss = append(ss, sample{Round: r + 1, Mode: "baseline", Bulk: bulkResult{Gbps: v}, Storm: stormResult{PerSecond: 1000 * v, P99ms: v}})
		ss = append(ss, sample{Round: r + 1, Mode: "trace", Bulk: bulkResult{Gbps: v * 0.9}, Storm: stormResult{PerSecond: 950 * v, P99ms: v * 1.1}, RSSMiB: v})
	}
	out := summarize([]string{"baseline", "trace"}, ss)
	if len(out) != 2 || out[0].BulkGbps != 11 || out[1].Rounds != 3 {
		t.Fatalf("%+v", out)
	}
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if !near(out[1].BulkDelta, -10) || !near(out[1].HSDelta, -5) || !near(out[1].P99Delta, 10) || out[1].RSSMiB != 12 {
		t.Errorf("trace: %+v", out[1])
	}
	if !near(out[1].PairedBulk, -10) || !near(out[1].PairedHS, -5) {
		t.Errorf("paired: %+v", out[1])
	}
	if !near(out[0].NoiseBulk, 2.0/11*100) {
		t.Errorf("baseline spread %v", out[0].NoiseBulk)
	}
}

func TestParseModes(t *testing.T) {
	m, err := parseModes("watch, doctor")
	if err != nil || strings.Join(m, ",") != "baseline,watch,doctor" {
		t.Errorf("%v %v", m, err)
	}
	if _, err := parseModes("tarce"); err == nil {
		t.Error("a misspelt mode was accepted")
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
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

func TestKernelCost(t *testing.T) {
	a := map[ebpf.ProgramID]bpfRun{1: {ns: 100, runs: 10}, 2: {ns: 50, runs: 5}}
	b := map[ebpf.ProgramID]bpfRun{1: {ns: 400, runs: 40}, 2: {ns: 50, runs: 5}, 3: {ns: 70, runs: 7}}
	if d, ran := bpfDelta(a, b); d.ns != 370 || d.runs != 37 || len(ran) != 2 || ran[0].Runs != 30 {
		t.Errorf("delta %+v, want 370 ns over 37 runs (program 3 loaded in between counts from zero)", d)
	}
	var ss []sample
	for r := range 3 {
		ss = append(ss,
			sample{Round: r + 1, Mode: "baseline", Storm: stormResult{Handshakes: 1000}, BulkCost: &kernelCost{SharePct: 0.1}, StormCost: &kernelCost{BPFms: 0.1, BusyMs: 100, SharePct: 0.1}},
			sample{Round: r + 1, Mode: "trace", Storm: stormResult{Handshakes: 1000}, BulkCost: &kernelCost{SharePct: 1}, StormCost: &kernelCost{BPFms: 2, BusyMs: 100, SharePct: 2, TotalSharePct: 3}})
	}
	out := summarize([]string{"baseline", "trace"}, ss)
	if !out[1].Costed || out[1].StormBPFShare != 2 || out[1].BulkBPFShare != 1 || out[1].BPFNsPerHS != 2000 || out[1].BusyUsPerHS != 100 || out[0].BPFNsPerHS != 100 || out[1].StormTotalShare != 3 {
		t.Errorf("%+v", out[1])
	}
	var w strings.Builder
	writeTable(&w, &results{Summary: out})
	if !strings.Contains(w.String(), "2.00% (+1.90)") || !strings.Contains(w.String(), "2000 (+1900)") {
		t.Errorf("table:\n%s", w.String())
	}
}

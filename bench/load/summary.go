package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/synscope/synscope/bench/internal/procstat"
)

// This file reduces the samples to one row per mode and prints the table.

// summary is one mode's medians over the rounds, and the change against
// the baseline's medians (percent; negative throughput = a loss).
type summary struct {
	Mode        string  `json:"mode"`
	Rounds      int     `json:"rounds"`
	BulkGbps    float64 `json:"bulk_gbit_per_s"`
	BulkDelta   float64 `json:"bulk_change_pct"`
	HSPerS      float64 `json:"handshakes_per_s"`
	HSDelta     float64 `json:"handshakes_change_pct"`
	P50ms       float64 `json:"connect_p50_ms"`
	P50Delta    float64 `json:"connect_p50_change_pct"`
	P99ms       float64 `json:"connect_p99_ms"`
	P99Delta    float64 `json:"connect_p99_change_pct"`
	Failures    int     `json:"storm_failures"`
	IdleMCPU    float64 `json:"tool_idle_mcpu"`
	BulkMCPU    float64 `json:"tool_bulk_mcpu"`
	StormMCPU   float64 `json:"tool_storm_mcpu"`
	RSSMiB      float64 `json:"tool_peak_rss_mib"`
	AttachS     float64 `json:"attach_s,omitempty"`
	DoctorWallS float64 `json:"doctor_mean_wall_s,omitempty"`
	DoctorRuns  int     `json:"doctor_runs,omitempty"`
	// Paired: the median over rounds of each round's change against the
	// baseline of the same round (robust to drift between rounds).
	PairedBulk   float64 `json:"paired_bulk_change_pct"`
	PairedHS     float64 `json:"paired_handshakes_change_pct"`
	PairedP99    float64 `json:"paired_p99_change_pct"`
	NoiseBulk    float64 `json:"spread_bulk_pct"`
	NoiseHS      float64 `json:"spread_handshakes_pct"`
	NoiseP99     float64 `json:"spread_p99_pct"`
	LoadAvgFirst string  `json:"loadavg_first"`
	// Kernel-side cost (medians over rounds; absent without -bpf-stats):
	// the BPF programs' share of the machine's busy CPU in each phase,
	// and their run time per handshake in the storm.
	BulkBPFShare  float64 `json:"bulk_bpf_share_pct"`
	StormBPFShare float64 `json:"storm_bpf_share_pct"`
	BPFNsPerHS    float64 `json:"storm_bpf_ns_per_handshake"`
	BusyUsPerHS   float64 `json:"storm_busy_us_per_handshake"`
	// BPF programs and the tool's own CPU together, over the machine's
	// busy CPU: the mode's whole cost in each phase.
	BulkTotalShare  float64 `json:"bulk_total_share_pct"`
	StormTotalShare float64 `json:"storm_total_share_pct"`
	Costed          bool    `json:"bpf_stats"`
}

// spread is (max-min)/median in percent: the noise between rounds.
func spread(v []float64) float64 {
	m := procstat.Median(v)
	if m == 0 || len(v) < 2 {
		return 0
	}
	return (slices.Max(v) - slices.Min(v)) / m * 100
}

func change(v, base float64) float64 {
	if base == 0 {
		return 0
	}
	return (v - base) / base * 100
}

func summarize(modes []string, samples []sample) []summary {
	var out []summary
	for _, m := range modes {
		var bulk, hs, p50, p99, idle, bc, sc, rss, att, dw, bsh, ssh, nsh, bsy, bts, sts []float64
		s := summary{Mode: m}
		for _, x := range samples {
			if x.Mode != m {
				continue
			}
			if s.Rounds == 0 {
				s.LoadAvgFirst = x.LoadAvg
			}
			s.Rounds++
			bulk, hs = append(bulk, x.Bulk.Gbps), append(hs, x.Storm.PerSecond)
			p50, p99 = append(p50, x.Storm.P50ms), append(p99, x.Storm.P99ms)
			idle, bc, sc = append(idle, x.IdleMCPU), append(bc, x.BulkMCPU), append(sc, x.StormMCPU)
			rss, att = append(rss, x.RSSMiB), append(att, x.AttachS)
			s.Failures += x.Storm.Failures + x.Bulk.Failures
			if x.BulkCost != nil && x.StormCost != nil {
				s.Costed = true
				bsh, ssh = append(bsh, x.BulkCost.SharePct), append(ssh, x.StormCost.SharePct)
				bts, sts = append(bts, x.BulkCost.TotalSharePct), append(sts, x.StormCost.TotalSharePct)
				if x.Storm.Handshakes > 0 {
					nsh = append(nsh, x.StormCost.BPFms*1e6/float64(x.Storm.Handshakes))
					bsy = append(bsy, x.StormCost.BusyMs*1e3/float64(x.Storm.Handshakes))
				}
			}
			if x.Doctor != nil {
				dw = append(dw, x.Doctor.MeanWallS)
				s.DoctorRuns += x.Doctor.Runs
			}
		}
		s.BulkGbps, s.HSPerS, s.P50ms, s.P99ms = procstat.Median(bulk), procstat.Median(hs), procstat.Median(p50), procstat.Median(p99)
		s.IdleMCPU, s.BulkMCPU, s.StormMCPU, s.RSSMiB, s.AttachS = procstat.Median(idle), procstat.Median(bc), procstat.Median(sc), slices.Max(append(rss, 0)), procstat.Median(att)
		s.DoctorWallS = procstat.Median(dw)
		s.BulkBPFShare, s.StormBPFShare, s.BPFNsPerHS, s.BusyUsPerHS = procstat.Median(bsh), procstat.Median(ssh), procstat.Median(nsh), procstat.Median(bsy)
		s.BulkTotalShare, s.StormTotalShare = procstat.Median(bts), procstat.Median(sts)
		s.NoiseBulk, s.NoiseHS, s.NoiseP99 = spread(bulk), spread(hs), spread(p99)
		out = append(out, s)
	}
	base := map[int]sample{}
	for _, x := range samples {
		if x.Mode == "baseline" {
			base[x.Round] = x
		}
	}
	for i := range out {
		var pb, ph, pp []float64
		for _, x := range samples {
			b, ok := base[x.Round]
			if x.Mode != out[i].Mode || !ok {
				continue
			}
			pb = append(pb, change(x.Bulk.Gbps, b.Bulk.Gbps))
			ph = append(ph, change(x.Storm.PerSecond, b.Storm.PerSecond))
			pp = append(pp, change(x.Storm.P99ms, b.Storm.P99ms))
		}
		out[i].PairedBulk, out[i].PairedHS, out[i].PairedP99 = procstat.Median(pb), procstat.Median(ph), procstat.Median(pp)
	}
	if len(out) > 0 && out[0].Mode == "baseline" {
		b := out[0]
		for i := range out {
			out[i].BulkDelta = change(out[i].BulkGbps, b.BulkGbps)
			out[i].HSDelta = change(out[i].HSPerS, b.HSPerS)
			out[i].P50Delta = change(out[i].P50ms, b.P50ms)
			out[i].P99Delta = change(out[i].P99ms, b.P99ms)
		}
	}
	return out
}

// windowSeconds parses doctor's --window (a duration, or bare seconds).
func windowSeconds(w string) float64 {
	if d, err := time.ParseDuration(w); err == nil {
		return d.Seconds()
	}
	f, _ := strconv.ParseFloat(w, 64)
	return f
}

func writeTable(w io.Writer, r *results) {
	fmt.Fprintf(w, "synscope load benchmark: kernel %s, %d CPUs, load average %s at start, %s at end\n", r.Kernel, r.CPUs, r.LoadAvgStart, r.LoadAvgEnd)
	fmt.Fprintf(w, "%d rounds of %gs phases; bulk: %d streams; storm: %d workers; medians over rounds, change against the baseline of the same run\n",
		r.Params.Rounds, r.Params.DurationS, r.Params.Streams, r.Params.Workers)
	if r.Params.KubeRules > 0 {
		fmt.Fprintf(w, "server namespace carries a kube-proxy-shaped ruleset: %d iptables-nft nat rules\n", r.Params.KubeRules)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-28s %16s %18s %16s %16s %8s %22s %9s %8s\n", "mode", "bulk Gbit/s", "handshakes/s", "p50 connect ms", "p99 connect ms", "failed", "tool mCPU idle/bulk/storm", "RSS MiB", "attach s")
	for _, s := range r.Summary {
		att := "-"
		if s.AttachS > 0 {
			att = fmt.Sprintf("%.2f", s.AttachS)
		}
		if strings.HasPrefix(s.Mode, "doctor") {
			att = fmt.Sprintf("(run %.2fs)", s.DoctorWallS)
		}
		fmt.Fprintf(w, "%-28s %16s %18s %16s %16s %8d %22s %9.1f %8s\n", s.Mode,
			fmt.Sprintf("%.2f (%+.1f%%)", s.BulkGbps, s.BulkDelta),
			fmt.Sprintf("%.0f (%+.1f%%)", s.HSPerS, s.HSDelta),
			fmt.Sprintf("%.3f (%+.1f%%)", s.P50ms, s.P50Delta),
			fmt.Sprintf("%.3f (%+.1f%%)", s.P99ms, s.P99Delta),
			s.Failures,
			fmt.Sprintf("%.0f/%.0f/%.0f", s.IdleMCPU, s.BulkMCPU, s.StormMCPU),
			s.RSSMiB, att)
	}
	fmt.Fprintln(w, "\npaired: median over rounds of each round's change against that round's baseline")
	for _, s := range r.Summary[min(1, len(r.Summary)):] {
		fmt.Fprintf(w, "%-28s bulk %+.1f%%, handshakes/s %+.1f%%, p99 connect %+.1f%%\n", s.Mode, s.PairedBulk, s.PairedHS, s.PairedP99)
	}
	if len(r.Summary) > 0 {
		b := r.Summary[0]
		fmt.Fprintf(w, "\nnoise (baseline spread between rounds, max-min over median): bulk %.1f%%, handshakes/s %.1f%%, p99 %.1f%%\n", b.NoiseBulk, b.NoiseHS, b.NoiseP99)
	}
	if len(r.Summary) > 0 && r.Summary[0].Costed {
		b := r.Summary[0]
		fmt.Fprintln(w, "\ncost share (the kernel's BPF run-time statistics and the tool's CPU over the machine's busy CPU in the phase, medians over rounds;")
		fmt.Fprintln(w, "(+x) is over the baseline, which shows the programs the host runs anyway; both workloads are CPU-bound here, so the share is the throughput or rate the mode can cost)")
		fmt.Fprintf(w, "%-9s %18s %18s %20s %20s %20s %22s\n", "mode", "bulk BPF share", "storm BPF share", "bulk BPF+tool", "storm BPF+tool", "BPF ns/handshake", "machine µs/handshake")
		for _, s := range r.Summary {
			bt := fmt.Sprintf("%.2f%% (%+.2f)", s.BulkTotalShare, s.BulkTotalShare-b.BulkTotalShare)
			st := fmt.Sprintf("%.2f%% (%+.2f)", s.StormTotalShare, s.StormTotalShare-b.StormTotalShare)
			if s.Mode == "doctor" { // its runs' CPU comes from rusage per run, not per phase
				bt, st = "see tool mCPU", "see tool mCPU"
			}
			fmt.Fprintf(w, "%-9s %18s %18s %20s %20s %20s %22.1f\n", s.Mode,
				fmt.Sprintf("%.2f%% (%+.2f)", s.BulkBPFShare, s.BulkBPFShare-b.BulkBPFShare),
				fmt.Sprintf("%.2f%% (%+.2f)", s.StormBPFShare, s.StormBPFShare-b.StormBPFShare),
				bt, st,
				fmt.Sprintf("%.0f (%+.0f)", s.BPFNsPerHS, s.BPFNsPerHS-b.BPFNsPerHS), s.BusyUsPerHS)
		}
	}
	var notes []string
	for _, s := range r.Summary {
		if strings.HasPrefix(s.Mode, "doctor") {
			notes = append(notes, fmt.Sprintf("%s: %d runs back to back with --window %s: mean run %.3fs, %.0f ms beyond the window; CPU averaged over its loop (rusage), RSS is ru_maxrss", s.Mode, s.DoctorRuns, r.Params.DoctorWindow, s.DoctorWallS, (s.DoctorWallS-windowSeconds(r.Params.DoctorWindow))*1000))
		}
	}
	notes = append(notes, "tool CPU excludes BPF programs, which run in the kernel on the traffic's behalf: their cost is in the throughput, rate and latency columns")
	fmt.Fprintln(w, strings.Join(notes, "\n"))
}

// reprint prints the table of a saved -json file, summarised again.
func reprint(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	r.Summary = summarize(r.Params.Modes, r.Samples)
	writeTable(os.Stdout, &r)
	return nil
}

package main

import (
	"cmp"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// This file measures what the tool's BPF programs cost the kernel, from
// the kernel's own per-program run-time statistics, and what the whole
// machine spent in the same phase: a cost share that, unlike throughput
// and rate, does not move with whatever else the shared machine runs.

// enableBPFStats turns the kernel's BPF run-time statistics on while the
// returned closer is open (BPF_ENABLE_STATS: no sysctl is changed, and
// the statistics go off when the harness exits).
func enableBPFStats() (io.Closer, error) {
	return ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
}

// bpfRun is one program's cumulative run time and run count.
type bpfRun struct {
	name     string
	ns, runs uint64
}

// bpfSnapshot reads every loaded program's statistics. Programs that go
// away between the listing and the read are skipped.
func bpfSnapshot() map[ebpf.ProgramID]bpfRun {
	out := map[ebpf.ProgramID]bpfRun{}
	var id ebpf.ProgramID
	for range 1 << 16 { // bounded: far more programs than a host holds
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			break
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		st, err := p.Stats()
		var name string
		if info, err := p.Info(); err == nil {
			name = info.Name
		}
		p.Close()
		if err != nil {
			continue
		}
		out[id] = bpfRun{name: name, ns: uint64(st.Runtime), runs: st.RunCount}
	}
	return out
}

// bpfDelta sums the run time and runs between two snapshots (programs
// loaded in between count from zero), and lists the programs that ran,
// costliest first.
func bpfDelta(a, b map[ebpf.ProgramID]bpfRun) (bpfRun, []progCost) {
	var d bpfRun
	var ran []progCost
	for id, r := range b {
		p := a[id]
		if r.ns >= p.ns && r.runs >= p.runs && r.runs > p.runs {
			d.ns += r.ns - p.ns
			d.runs += r.runs - p.runs
			ran = append(ran, progCost{Name: r.name, Ms: float64(r.ns-p.ns) / 1e6, Runs: r.runs - p.runs})
		}
	}
	slices.SortFunc(ran, func(x, y progCost) int { return cmp.Compare(y.Ms, x.Ms) })
	return d, ran
}

// progCost is one program's run time and runs in a phase.
type progCost struct {
	Name string  `json:"name"`
	Ms   float64 `json:"ms"`
	Runs uint64  `json:"runs"`
}

// busyTime is the machine's non-idle CPU time so far (all CPUs; user,
// nice, system, irq, softirq, steal from /proc/stat).
func busyTime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: no cpu line")
	}
	var j uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		j += v
	}
	const hz = 100 // USER_HZ
	return time.Duration(j) * time.Second / hz, nil
}

// kernelCost is what BPF programs and the whole machine spent in one
// phase.
type kernelCost struct {
	// BPFms is the run time of every BPF program that ran in the phase
	// (the tool's and any the host had loaded before: the baseline row
	// shows that floor); BPFRuns their invocations.
	BPFms   float64 `json:"bpf_ms"`
	BPFRuns uint64  `json:"bpf_runs"`
	// BusyMs is the machine's non-idle CPU time in the phase: client,
	// server, kernel and tool together.
	BusyMs float64 `json:"busy_ms"`
	// SharePct is BPFms over BusyMs: the share of the machine's work the
	// BPF programs took. Where the workload is CPU-bound, as both are
	// here, it is the throughput or rate those programs can cost.
	SharePct float64 `json:"bpf_share_pct"`
	// ToolMs is the tool's own CPU time in the phase (user and system:
	// its reading of the programs' events), TotalSharePct the BPF
	// programs and the tool together over BusyMs: what the mode costs.
	ToolMs        float64 `json:"tool_ms"`
	TotalSharePct float64 `json:"total_share_pct"`
	// Programs lists the programs that ran, costliest first.
	Programs []progCost `json:"programs,omitempty"`
}

// costMeter measures one phase.
type costMeter struct {
	bpf  map[ebpf.ProgramID]bpfRun
	busy time.Duration
}

func startCost() costMeter {
	b, _ := busyTime()
	return costMeter{bpf: bpfSnapshot(), busy: b}
}

// stop ends the phase; tool is the tool's CPU time in it.
func (m costMeter) stop(tool time.Duration) kernelCost {
	d, ran := bpfDelta(m.bpf, bpfSnapshot())
	b, _ := busyTime()
	c := kernelCost{BPFms: float64(d.ns) / 1e6, BPFRuns: d.runs, BusyMs: float64(b-m.busy) / float64(time.Millisecond),
		ToolMs: float64(tool) / float64(time.Millisecond), Programs: ran}
	if c.BusyMs > 0 {
		c.SharePct = c.BPFms / c.BusyMs * 100
		c.TotalSharePct = (c.BPFms + c.ToolMs) / c.BusyMs * 100
	}
	return c
}

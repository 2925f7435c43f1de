// Command load measures what synscope's live modes cost a busy server.
//
// It builds two network namespaces joined by a veth pair (benchmark
// addresses 198.18.0.1 and .2, RFC 2544), runs a TCP server in one and two
// workloads from the other — bulk throughput on parallel streams and a
// handshake storm of short connections — and repeats both without
// synscope, under `synscope trace`, under `synscope watch --syn-trace on`
// and with `synscope doctor` running back to back, all aimed at the
// server's namespace. Modes are interleaved round by round (the order
// rotates), so drift on a shared machine hits every mode alike, and the
// table gives each mode's median and its change against the baseline
// measured in the same run, with the baseline's own spread as the noise.
//
// The tool's CPU comes from /proc/PID/stat (utime+stime; for doctor, the
// rusage of each finished run), its memory from /proc/PID/status (VmHWM;
// doctor: ru_maxrss). BPF programs run in the kernel on behalf of the
// traffic and are not in the tool's CPU: their cost shows as lost
// throughput, handshakes or latency.
//
// Run as root from the repository root (bench/load/run.sh builds synscope
// and this command). It takes the flock /tmp/synscope-ns.lock for its whole
// run, deletes its namespaces on exit (and stale ones from a killed run on
// start), and every process it starts is bounded in time.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/synscope/synscope/bench/load/kuberules"
)

func main() {
	var o options
	role := flag.String("role", "", "internal: server, bulk or storm (the harness starts these in its namespaces); kuberules prints -n services' iptables-restore input")
	addr := flag.String("addr", "", "internal: the server's address (server: to listen on; bulk, storm: to connect to)")
	n := flag.Int("n", 0, "internal: streams (bulk) or workers (storm)")
	d := flag.Duration("d", 0, "internal: how long a client runs")
	life := flag.Duration("life", time.Hour, "internal: the server's longest life")
	flag.StringVar(&o.bin, "bin", "", "synscope binary to measure (required)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each workload phase")
	flag.DurationVar(&o.idle, "idle", 3*time.Second, "idle phase before the workloads (the tool's idle CPU)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every mode once, in rotated order")
	flag.IntVar(&o.streams, "streams", 50, "parallel bulk streams")
	flag.IntVar(&o.workers, "workers", 16, "handshake-storm client workers")
	modes := flag.String("modes", modeList, "modes to measure (baseline is always included); doctor variants such as doctor+no-capture or doctor+no-trace+no-capture run doctor with those flags")
	flag.StringVar(&o.window, "doctor-window", "2s", "doctor's --window in the doctor mode")
	doctorArgs := flag.String("doctor-args", "", "extra doctor flags in the doctor mode, space-separated (e.g. \"--no-trace --no-capture\", to find what costs)")
	flag.IntVar(&o.kubeServices, "kube-services", 0, "load this many kube-proxy services (2 iptables-nft nat rules each) into the server namespace first")
	flag.BoolVar(&o.bpfStats, "bpf-stats", true, "measure the kernel time BPF programs take in each phase (BPF_ENABLE_STATS while the harness runs; adds two clock reads per program run in every mode)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	report := flag.String("report", "", "print the table again from a -json file (no measurement)")
	flag.StringVar(&o.lockPath, "lock", "/tmp/synscope-ns.lock", "flock held while the benchmark runs (\"\": the caller holds it, e.g. around several runs)")
	flag.Parse()
	o.doctorArgs = strings.Fields(*doctorArgs)

	var err error
	switch *role {
	case "server":
		err = runServer(*addr, *life)
	case "bulk":
		err = runBulk(*addr, *n, *d)
	case "storm":
		err = runStorm(*addr, *n, *d)
	case "kuberules":
		_, err = fmt.Print(kuberules.IPTables(*n))
	case "":
		if *report != "" {
			err = reprint(*report)
			break
		}
		o.modes, err = parseModes(*modes)
		if err == nil {
			err = run(&o)
		}
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
}

func parseModes(s string) ([]string, error) {
	out := []string{"baseline"}
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		switch m {
		case "", "baseline":
		case "trace", "watch", "doctor":
			out = append(out, m)
		default:
			if _, err := doctorModeArgs(m); err == nil {
				out = append(out, m)
				continue
			}
			return nil, fmt.Errorf("unknown mode %q (want %s, or doctor variants such as doctor+no-capture, doctor+no-trace+no-capture)", m, modeList)
		}
	}
	return out, nil
}

// modeList is every mode beside the baseline.
const modeList = "trace,watch,doctor"

// doctorModeArgs gives the extra doctor flags a mode names: "doctor" none,
// "doctor+no-capture+no-trace" --no-capture --no-trace. Variants of doctor
// measured in the same run, rounds interleaved, tell what of its cost
// comes from which part.
func doctorModeArgs(mode string) ([]string, error) {
	parts := strings.Split(mode, "+")
	if parts[0] != "doctor" {
		return nil, fmt.Errorf("not a doctor mode: %q", mode)
	}
	var args []string
	for _, p := range parts[1:] {
		switch p {
		case "no-capture", "no-trace":
			args = append(args, "--"+p)
		default:
			return nil, fmt.Errorf("unknown doctor variant %q in mode %q (want no-capture, no-trace)", p, mode)
		}
	}
	return args, nil
}

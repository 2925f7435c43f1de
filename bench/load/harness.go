package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/synscope/synscope/bench/internal/procstat"
)

// This file sets up the namespaces, runs the rounds and measures the tool.

// Names and lab addresses the harness owns.
const (
	nsSrv    = "synscope-bench-srv"
	nsCli    = "synscope-bench-cli"
	vethSrv  = "sbench-s"
	vethCli  = "sbench-c"
	addrSrv  = "198.18.0.1"
	addrCli  = "198.18.0.2"
	readyMax = 60 * time.Second
)

type options struct {
	bin               string
	duration, idle    time.Duration
	rounds            int
	streams, workers  int
	modes             []string
	window            string
	doctorArgs        []string
	jsonOut, lockPath string
	kubeServices      int
	bpfStats          bool
}

// sample is one mode's measurement in one round.
type sample struct {
	Round   int     `json:"round"`
	Mode    string  `json:"mode"`
	LoadAvg string  `json:"loadavg"`
	AttachS float64 `json:"attach_s,omitempty"`
	// Tool CPU in millicores during each phase, and its memory.
	IdleMCPU  float64     `json:"tool_idle_mcpu"`
	BulkMCPU  float64     `json:"tool_bulk_mcpu"`
	StormMCPU float64     `json:"tool_storm_mcpu"`
	RSSMiB    float64     `json:"tool_peak_rss_mib"`
	Bulk      bulkResult  `json:"bulk"`
	Storm     stormResult `json:"storm"`
	// Kernel-side cost in each phase (BPF run-time statistics and the
	// machine's busy time); absent with -bpf-stats=false.
	BulkCost  *kernelCost  `json:"bulk_cost,omitempty"`
	StormCost *kernelCost  `json:"storm_cost,omitempty"`
	Doctor    *doctorStats `json:"doctor,omitempty"`
}

// doctorStats sums the doctor runs of one sample.
type doctorStats struct {
	Runs      int     `json:"runs"`
	ExitCodes []int   `json:"exit_codes"`
	MeanWallS float64 `json:"mean_wall_s"`
	CPUS      float64 `json:"cpu_s"`
	WallS     float64 `json:"loop_wall_s"`
	MaxRSSMiB float64 `json:"max_rss_mib"`
}

// results is the JSON document.
type results struct {
	procstat.Header
	Params struct {
		DurationS    float64  `json:"phase_s"`
		IdleS        float64  `json:"idle_s"`
		Rounds       int      `json:"rounds"`
		Streams      int      `json:"streams"`
		Workers      int      `json:"storm_workers"`
		Modes        []string `json:"modes"`
		DoctorWindow string   `json:"doctor_window"`
		DoctorArgs   []string `json:"doctor_args,omitempty"`
		KubeRules    int      `json:"kube_proxy_rules"`
	} `json:"params"`
	Samples []sample  `json:"samples"`
	Summary []summary `json:"summary"`
}

func run(o *options) error {
	if err := procstat.Preflight(o.bin); err != nil {
		return err
	}
	if o.rounds < 1 || o.rounds > 50 || o.duration <= 0 || o.duration > 10*time.Minute || o.streams < 1 || o.streams > 1000 || o.workers < 1 || o.workers > 1000 || o.kubeServices < 0 || o.kubeServices > 50000 {
		return errors.New("rounds 1-50, duration up to 10m, streams and workers 1-1000, kube-services up to 50000")
	}
	ctx, end, err := procstat.Begin(o.lockPath)
	if err != nil {
		return err
	}
	defer end()

	res := &results{Header: procstat.NewHeader("synscope.bench.load/v1")}
	res.Params.DurationS, res.Params.IdleS, res.Params.Rounds = o.duration.Seconds(), o.idle.Seconds(), o.rounds
	res.Params.Streams, res.Params.Workers, res.Params.Modes, res.Params.DoctorWindow = o.streams, o.workers, o.modes, o.window
	res.Params.DoctorArgs = o.doctorArgs

	if o.bpfStats {
		st, err := enableBPFStats()
		if err != nil {
			return fmt.Errorf("-bpf-stats: enable the kernel's BPF run-time statistics: %w", err)
		}
		defer st.Close()
	}
	teardown()
	defer teardown()
	if err := setup(ctx); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if o.kubeServices > 0 {
		if res.Params.KubeRules, err = loadKubeRules(ctx, o.kubeServices); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	srv, err := startServer(ctx, self)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	defer srv.stop()

	for r := range o.rounds {
		for i := range o.modes {
			mode := o.modes[(i+r)%len(o.modes)]
			fmt.Fprintf(os.Stderr, "round %d/%d: %s (load %s)\n", r+1, o.rounds, mode, procstat.Loadavg())
			s, err := measure(ctx, o, self, mode)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, mode, err)
			}
			s.Round = r + 1
			res.Samples = append(res.Samples, s)
		}
	}
	res.LoadAvgEnd = procstat.Loadavg()
	res.Summary = summarize(o.modes, res.Samples)
	writeTable(os.Stdout, res)
	return procstat.WriteJSON(o.jsonOut, res)
}

func sh(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// setup builds the two namespaces and the veth pair between them.
func setup(ctx context.Context) error {
	steps := [][]string{
		{"ip", "netns", "add", nsSrv},
		{"ip", "netns", "add", nsCli},
		{"ip", "link", "add", vethSrv, "netns", nsSrv, "type", "veth", "peer", "name", vethCli, "netns", nsCli},
		{"ip", "-n", nsSrv, "addr", "add", addrSrv + "/24", "dev", vethSrv},
		{"ip", "-n", nsCli, "addr", "add", addrCli + "/24", "dev", vethCli},
		{"ip", "-n", nsSrv, "link", "set", "lo", "up"},
		{"ip", "-n", nsCli, "link", "set", "lo", "up"},
		{"ip", "-n", nsSrv, "link", "set", vethSrv, "up"},
		{"ip", "-n", nsCli, "link", "set", vethCli, "up"},
	}
	for _, s := range steps {
		if err := sh(ctx, s...); err != nil {
			return err
		}
	}
	// A listener backlog and SYN queue that a storm does not overflow,
	// and client ports for it.
	sysctls := map[string]map[string]string{
		nsSrv: {"net/core/somaxconn": "8192", "net/ipv4/tcp_max_syn_backlog": "8192"},
		nsCli: {"net/ipv4/ip_local_port_range": "10000 65000"},
	}
	for ns, kv := range sysctls {
		for k, v := range kv {
			if err := sh(ctx, "ip", "netns", "exec", ns, "sh", "-c", fmt.Sprintf("echo %s > /proc/sys/%s", v, k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// teardown deletes the harness's namespaces (the veth pair goes with
// them); a missing one is fine.
func teardown() {
	for _, ns := range []string{nsCli, nsSrv} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			if err := sh(context.Background(), "ip", "netns", "del", ns); err != nil {
				fmt.Fprintln(os.Stderr, "cleanup:", err)
			}
		}
	}
}

type server struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startServer(ctx context.Context, self string) (*server, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nsSrv, self, "-role", "server", "-addr", addrSrv, "-life", "2h")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, stdin: in}
	if err := readyLine(out, func(l string) bool { return l == "ready" }, 20*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *server) stop() {
	_ = s.stdin.Close()
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// client runs one workload from the client namespace and decodes its
// JSON result into v.
func client(ctx context.Context, self, role, addr string, n int, d time.Duration, v any) error {
	ctx, cancel := context.WithTimeout(ctx, d+90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nsCli, self, "-role", role, "-addr", addr, "-n", strconv.Itoa(n), "-d", d.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s client: %w: %s", role, err, bytes.TrimSpace(errb.Bytes()))
	}
	return json.Unmarshal(out, v)
}

// tool is a running synscope trace or watch.
type tool struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startTool(ctx context.Context, bin, mode string) (*tool, time.Duration, error) {
	var args []string
	var ready func(string) bool
	switch mode {
	case "trace":
		args = []string{"trace", "--netns", nsSrv}
		ready = func(l string) bool { return strings.HasPrefix(l, "tracing SYNs") }
	case "watch":
		args = []string{"watch", "--netns", nsSrv, "--syn-trace", "on", "--listen", ""}
		ready = func(l string) bool { return strings.Contains(l, `"event":"syn-trace"`) }
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, 0, err
	}
	cmd.Stderr = pw
	if mode == "watch" {
		cmd.Stdout = pw // its log
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		return nil, 0, err
	}
	pw.Close()
	t := &tool{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); pr.Close(); close(t.done) }()
	if err := readyLine(pr, ready, readyMax); err != nil {
		t.stop()
		return nil, 0, fmt.Errorf("synscope %s: %w", mode, err)
	}
	return t, time.Since(start), nil
}

func (t *tool) stop() {
	_ = t.cmd.Process.Signal(os.Interrupt)
	select {
	case <-t.done:
	case <-time.After(10 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.done
	}
}

// doctorLoop runs doctor back to back until stopped.
type doctorLoop struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	st    doctorStats
	cpu   time.Duration
	wall  time.Duration
}

func startDoctor(ctx context.Context, bin, window string, extra []string) *doctorLoop {
	l := &doctorLoop{stopc: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(l.done)
		var sumWall time.Duration
		for {
			select {
			case <-l.stopc:
				l.mu.Lock()
				l.st.WallS = time.Since(start).Seconds()
				if l.st.Runs > 0 {
					l.st.MeanWallS = sumWall.Seconds() / float64(l.st.Runs)
				}
				l.mu.Unlock()
				return
			default:
			}
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			args := append([]string{"doctor", "--netns", nsSrv, "--window", window, "--json"}, extra...)
			cmd := exec.CommandContext(rctx, bin, args...)
			t0 := time.Now()
			err := cmd.Run()
			cancel()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				code = -1
			}
			l.mu.Lock()
			l.st.Runs++
			l.st.ExitCodes = append(l.st.ExitCodes, code)
			sumWall += time.Since(t0)
			if cmd.ProcessState != nil {
				l.st.CPUS += (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
				if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
					l.st.MaxRSSMiB = max(l.st.MaxRSSMiB, float64(ru.Maxrss)/1024)
				}
			}
			l.mu.Unlock()
			if ctx.Err() != nil {
				<-l.stopc
			}
		}
	}()
	return l
}

func (l *doctorLoop) stop() doctorStats {
	close(l.stopc)
	<-l.done
	return l.st
}

// measure runs the idle, bulk and storm phases under one mode.
func measure(ctx context.Context, o *options, self, mode string) (sample, error) {
	s := sample{Mode: mode, LoadAvg: procstat.Loadavg()}
	var t *tool
	var doc *doctorLoop
	switch mode {
	case "baseline":
	case "trace", "watch":
		var err error
		var attach time.Duration
		t, attach, err = startTool(ctx, o.bin, mode)
		if err != nil {
			return s, err
		}
		defer t.stop()
		s.AttachS = attach.Seconds()
	default:
		extra, err := doctorModeArgs(mode)
		if err != nil {
			return s, err
		}
		doc = startDoctor(ctx, o.bin, o.window, append(append([]string{}, o.doctorArgs...), extra...))
	}
	cpu := func() time.Duration {
		if t == nil {
			return 0
		}
		return procstat.CPU(t.cmd.Process.Pid)
	}
	phase := func(f func() error) (float64, error) {
		c0, w0 := cpu(), time.Now()
		err := f()
		return float64(cpu()-c0) / float64(time.Since(w0)) * 1000, err
	}
	// costed runs a workload phase and, with -bpf-stats, records what
	// BPF programs and the machine spent in it.
	costed := func(into **kernelCost, f func() error) func() error {
		return func() error {
			if !o.bpfStats {
				return f()
			}
			m, c0 := startCost(), cpu()
			err := f()
			c := m.stop(cpu() - c0)
			*into = &c
			return err
		}
	}
	var err error
	if s.IdleMCPU, err = phase(func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.idle):
			return nil
		}
	}); err != nil {
		return s, err
	}
	if s.BulkMCPU, err = phase(costed(&s.BulkCost, func() error {
		return client(ctx, self, "bulk", fmt.Sprintf("%s:%d", addrSrv, portBulk), o.streams, o.duration, &s.Bulk)
	})); err != nil {
		return s, err
	}
	if s.StormMCPU, err = phase(costed(&s.StormCost, func() error {
		return client(ctx, self, "storm", fmt.Sprintf("%s:%d", addrSrv, portStorm), o.workers, o.duration, &s.Storm)
	})); err != nil {
		return s, err
	}
	if t != nil {
		s.RSSMiB = procstat.HWM(t.cmd.Process.Pid)
	}
	if doc != nil {
		st := doc.stop()
		s.Doctor = &st
		if st.WallS > 0 {
			m := st.CPUS / st.WallS * 1000
			s.IdleMCPU, s.BulkMCPU, s.StormMCPU = m, m, m
		}
		s.RSSMiB = st.MaxRSSMiB
		for _, c := range st.ExitCodes {
			if c != 0 && c != 1 {
				return s, fmt.Errorf("doctor exited %d (want 0 or 1)", c)
			}
		}
	}
	return s, nil
}

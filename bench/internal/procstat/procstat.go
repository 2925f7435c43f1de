// Package procstat holds what the benchmarks under bench/ share: the
// namespace-test flock, a process's CPU, memory, threads and descriptors
// read from /proc, the load average, and medians and quantiles.
package procstat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Lock takes the namespace-test flock at path, waiting (in line with the
// other waiters, a blocking flock) at most 30 minutes. The returned
// function releases it.
func Lock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		fmt.Fprintf(os.Stderr, "waiting for %s ...\n", path)
		errc := make(chan error, 1)
		go func() { errc <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
		select {
		case err := <-errc:
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("flock %s: %w", path, err)
			}
		case <-ctx.Done():
			// The blocked flock ends with the process.
			return nil, ctx.Err()
		case <-time.After(30 * time.Minute):
			return nil, fmt.Errorf("flock %s: not free within 30 minutes", path)
		}
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// CPU is a process's utime+stime from /proc/PID/stat (0 when unreadable).
func CPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parens.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz
}

// Status reads one numeric field of /proc/PID/status ("VmHWM", "VmRSS",
// "Threads"; kB units are kept as read), 0 when unreadable.
func Status(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return n
		}
	}
	return 0
}

// HWM is a process's peak RSS (VmHWM) in MiB.
func HWM(pid int) float64 { return Status(pid, "VmHWM") / 1024 }

// RSS is a process's resident set (VmRSS) in MiB.
func RSS(pid int) float64 { return Status(pid, "VmRSS") / 1024 }

// FDs counts a process's open descriptors (-1 when unreadable).
func FDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// Loadavg is the 1, 5 and 15 minute load average, "?" when unreadable.
func Loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Median of v (0 for none).
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Quantile is the nearest-rank q-quantile of v (0 < q <= 1; 0 for none):
// the smallest value with at least q of the values at or below it.
func Quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Preflight checks what every benchmark needs before it changes anything:
// root (it makes network namespaces) and the synscope binary to measure.
func Preflight(bin string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (creates network namespaces)")
	}
	if bin == "" {
		return errors.New("-bin: the synscope binary to measure is required")
	}
	_, err := os.Stat(bin)
	return err
}

// Kernel is the running kernel's release ("" when unknown).
func Kernel() string {
	var un unix.Utsname
	if unix.Uname(&un) != nil {
		return ""
	}
	return unix.ByteSliceToString(un.Release[:])
}

// WriteJSON writes v, indented, to path ("" writes nothing).
func WriteJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Begin starts a benchmark run: a context that ends on SIGINT or
// SIGTERM, and the flock at lockPath ("" when the caller holds it). The
// returned function releases both.
func Begin(lockPath string) (context.Context, func(), error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if lockPath == "" {
		return ctx, stop, nil
	}
	unlock, err := Lock(ctx, lockPath)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return ctx, func() { unlock(); stop() }, nil
}

// Header opens every benchmark's JSON document: what ran where, and the
// load average around it (the machine is shared: every number needs it).
type Header struct {
	Schema       string    `json:"schema"`
	Started      time.Time `json:"started"`
	Kernel       string    `json:"kernel"`
	CPUs         int       `json:"cpus"`
	LoadAvgStart string    `json:"loadavg_start"`
	LoadAvgEnd   string    `json:"loadavg_end"`
}

// NewHeader fills a Header at the start of a run (LoadAvgEnd at its end).
func NewHeader(schema string) Header {
	return Header{Schema: schema, Started: time.Now().UTC(), Kernel: Kernel(), CPUs: runtime.NumCPU(), LoadAvgStart: Loadavg()}
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// This file runs `synscope watch --all-netns` and follows its log.

// event is one log line of interest, with when the harness read it.
type event struct {
	at     time.Time
	Event  string `json:"event"`
	Netns  string `json:"netns"`
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	NS     int    `json:"namespaces"`
	Family string `json:"family"`
}

// logbook keeps watch's log lines (bounded by what the run makes happen)
// and wakes waiters on each one.
type logbook struct {
	mu     sync.Mutex
	events []event
	notify chan struct{}
	lines  int
}

func newLogbook() *logbook { return &logbook{notify: make(chan struct{}, 1)} }

func (b *logbook) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		e := event{at: time.Now()}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		b.mu.Lock()
		b.events = append(b.events, e)
		b.lines++
		b.mu.Unlock()
		select {
		case b.notify <- struct{}{}:
		default:
		}
	}
}

// mark is the position of the next line.
func (b *logbook) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.events)
}

// wait returns the first event from position from that matches, or an
// error after timeout.
func (b *logbook) wait(ctx context.Context, from int, timeout time.Duration, match func(e event) bool) (event, error) {
	deadline := time.Now().Add(timeout)
	for {
		b.mu.Lock()
		for i := from; i < len(b.events); i++ {
			if match(b.events[i]) {
				e := b.events[i]
				b.mu.Unlock()
				return e, nil
			}
		}
		from = len(b.events)
		b.mu.Unlock()
		left := time.Until(deadline)
		if left <= 0 {
			return event{}, fmt.Errorf("not within %s", timeout)
		}
		select {
		case <-b.notify:
		case <-time.After(left):
		case <-ctx.Done():
			return event{}, ctx.Err()
		}
	}
}

// count counts the events since from that match.
func (b *logbook) count(from int, match func(e event) bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, e := range b.events[from:] {
		if match(e) {
			n++
		}
	}
	return n
}

// watchProc is a running watch.
type watchProc struct {
	cmd  *exec.Cmd
	log  *logbook
	addr string
	done chan struct{}
}

func (w *watchProc) pid() int { return w.cmd.Process.Pid }

// freePort finds a loopback port for the metrics endpoint.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startWatch runs watch and waits for its watch-started line.
func startWatch(ctx context.Context, bin string, interval time.Duration, extra []string) (*watchProc, time.Duration, error) {
	addr, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	args := append([]string{"watch", "--all-netns", "--syn-trace", "on", "--listen", addr, "--interval", interval.String()}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, 0, err
	}
	w := &watchProc{cmd: cmd, log: newLogbook(), addr: addr, done: make(chan struct{})}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	go func() { w.log.read(out); _ = cmd.Wait(); close(w.done) }()
	if _, err := w.log.wait(ctx, 0, 5*time.Minute, func(e event) bool { return e.Event == "watch-started" }); err != nil {
		w.stop()
		return nil, 0, fmt.Errorf("watch did not start: %w", err)
	}
	return w, time.Since(t0), nil
}

func (w *watchProc) stop() {
	_ = w.cmd.Process.Signal(os.Interrupt)
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

func (w *watchProc) alive() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// This file holds the processes the harness starts inside its namespaces
// (re-executing itself with -role): the server, the bulk client and the
// handshake-storm client. Each one is bounded: the server exits when its
// stdin (a pipe from the harness) closes or after -life, the clients after
// -d plus a grace period.

const (
	portBulk  = 5201
	portStorm = 5202
	// bufSize is the bulk write and read size.
	bufSize = 128 << 10
)

// runServer listens on host for bulk streams (read everything, then answer with
// the byte count) and for the storm (accept and close), prints "ready",
// and runs until stdin closes or life passes.
func runServer(host string, life time.Duration) error {
	bulk, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(portBulk)))
	if err != nil {
		return err
	}
	// net.Listen takes somaxconn as the backlog (the harness raised it).
	storm, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(portStorm)))
	if err != nil {
		return err
	}
	go serveBulk(bulk)
	go serveStorm(storm)
	fmt.Println("ready")
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(life):
	}
	return nil
}

func serveBulk(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, bufSize)
			var n uint64
			for {
				k, err := c.Read(buf)
				n += uint64(k)
				if err != nil {
					break
				}
			}
			_, _ = c.Write(binary.BigEndian.AppendUint64(nil, n))
		}()
	}
}

func serveStorm(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) {
				continue
			}
			return
		}
		_ = c.Close()
	}
}

// bulkResult is what the bulk client prints.
type bulkResult struct {
	Streams  int     `json:"streams"`
	Bytes    uint64  `json:"bytes_received"`
	Seconds  float64 `json:"seconds"`
	Gbps     float64 `json:"gbit_per_s"`
	Failures int     `json:"failed_streams"`
}

// runBulk sends on n parallel streams for d and prints what the server
// says it received, over the time until the last count arrived.
func runBulk(addr string, n int, d time.Duration) error {
	start := time.Now()
	deadline := start.Add(d)
	var mu sync.Mutex
	var res bulkResult
	res.Streams = n
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := bulkStream(addr, deadline)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failures++
				return
			}
			res.Bytes += got
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Gbps = float64(res.Bytes) * 8 / res.Seconds / 1e9
	return json.NewEncoder(os.Stdout).Encode(res)
}

func bulkStream(addr string, deadline time.Time) (uint64, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	buf := make([]byte, bufSize)
	_ = tc.SetWriteDeadline(deadline)
	for time.Now().Before(deadline) {
		if _, err := tc.Write(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			return 0, err
		}
	}
	if err := tc.CloseWrite(); err != nil {
		return 0, err
	}
	_ = tc.SetReadDeadline(time.Now().Add(30 * time.Second))
	var b [8]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// stormResult is what the storm client prints.
type stormResult struct {
	Workers    int     `json:"workers"`
	Handshakes int     `json:"handshakes"`
	Failures   int     `json:"failures"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"handshakes_per_s"`
	P50ms      float64 `json:"connect_p50_ms"`
	P99ms      float64 `json:"connect_p99_ms"`
	FirstError string  `json:"first_error,omitempty"`
}

// runStorm opens and resets short connections from w workers for d and
// prints the rate and connect latency percentiles. The client closes
// with RST (SO_LINGER 0) so no TIME_WAIT state exhausts the ports.
func runStorm(addr string, w int, d time.Duration) error {
	start := time.Now()
	deadline := start.Add(d)
	lat := make([][]time.Duration, w)
	fails := make([]int, w)
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dl := net.Dialer{Timeout: 3 * time.Second}
			for time.Now().Before(deadline) {
				t0 := time.Now()
				c, err := dl.Dial("tcp", addr)
				if err != nil {
					fails[i]++
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
				_ = c.(*net.TCPConn).SetLinger(0)
				_ = c.Close()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	all := slices.Concat(lat...)
	slices.Sort(all)
	res := stormResult{Workers: w, Handshakes: len(all), Seconds: el, PerSecond: float64(len(all)) / el}
	for _, f := range fails {
		res.Failures += f
	}
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	if len(all) > 0 {
		res.P50ms = float64(all[len(all)/2]) / 1e6
		res.P99ms = float64(all[len(all)*99/100]) / 1e6
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// readyLine waits for a line containing want on r (then keeps draining r
// in the background so the writer never blocks).
func readyLine(r io.Reader, want func(string) bool, timeout time.Duration) error {
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			if !signalled && want(sc.Text()) {
				close(found)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case <-found:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("not ready within %s", timeout)
	}
}

package lab

import (
	"context"
	"net"
	"sync"
	"time"
)

// clientSpec configures the background client. Zero values mean the
// defaults: 5 attempts/s, 1 s per attempt, at most 3000 attempts.
type clientSpec struct {
	Target string `json:"target"` // addr:port, filled in by Up
	// Interval between attempt starts.
	Interval time.Duration `json:"interval,omitempty"`
	Timeout  time.Duration `json:"timeout,omitempty"`
	// MaxAttempts bounds the total count.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Parallel bounds attempts in flight.
	Parallel int `json:"parallel,omitempty"`
	// Hold keeps up to this many established connections open (for
	// accept-queue scenarios); 0 closes each at once.
	Hold int `json:"hold,omitempty"`
	// LocalPort pins the source port (with Parallel 1), to replay one
	// flow again and again.
	LocalPort int `json:"local_port,omitempty"`
}

func (c clientSpec) withDefaults() clientSpec {
	if c.Interval <= 0 {
		c.Interval = 200 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3000
	}
	if c.Parallel <= 0 {
		c.Parallel = 8
	}
	return c
}

// runClient connects to the server again and again until ctx ends or the
// attempt budget is spent. The whole agent process lives in the client
// namespace, so plain net.Dial is right here.
func runClient(ctx context.Context, c clientSpec, ready func() error) error {
	c = c.withDefaults()
	if _, err := net.ResolveTCPAddr("tcp", c.Target); err != nil {
		return err
	}
	if err := ready(); err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		held []net.Conn
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, c.Parallel)
	tick := time.NewTicker(c.Interval)
	defer tick.Stop()
	d := net.Dialer{Timeout: c.Timeout}
	if c.LocalPort != 0 {
		d.LocalAddr = &net.TCPAddr{Port: c.LocalPort}
	}
	for i := 0; i < c.MaxAttempts; i++ {
		select {
		case <-ctx.Done():
			i = c.MaxAttempts
			continue
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // too many in flight: skip this tick
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conn, err := d.DialContext(ctx, "tcp", c.Target)
			if err != nil {
				return
			}
			if c.Hold <= 0 {
				conn.Close()
				return
			}
			mu.Lock()
			held = append(held, conn)
			if len(held) > c.Hold {
				held[0].Close()
				held = held[1:]
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if c.Hold > 0 {
		<-ctx.Done()
	}
	mu.Lock()
	for _, h := range held {
		h.Close()
	}
	mu.Unlock()
	return nil
}

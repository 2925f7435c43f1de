package trace

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// DrainMax bounds how long Run keeps reading after its context ends, for
// handshakes that began before the end and still wait for their next
// step (the SYN-ACK's fate, the client's final ACK).
const DrainMax = 50 * time.Millisecond

// events is what Run reads: the Tracer, or a test's stand-in.
type events interface {
	// Read blocks until the next event, the deadline (os.ErrDeadlineExceeded)
	// or Wake (ringbuf.ErrFlushed, after the events already queued);
	// os.ErrClosed once closed.
	Read(deadline time.Time) (Event, error)
	// Wake makes a blocked Read return.
	Wake() error
}

// Run reads events until ctx is done, feeds them to eng and hands every
// decided outcome to emit; then it drains (see drain) and flushes the
// flows still waiting.
func Run(ctx context.Context, tr *Tracer, eng *Engine, emit func(Outcome)) error {
	return run(ctx, tr, eng, emit, DrainMax, monoNow)
}

func run(ctx context.Context, tr events, eng *Engine, emit func(Outcome), drainMax time.Duration, now func() time.Duration) error {
	// The end of ctx wakes the reader at once, not at its next tick.
	stop := context.AfterFunc(ctx, func() { _ = tr.Wake() })
	defer stop()
	tick := 100 * time.Millisecond
	for ctx.Err() == nil {
		ev, err := tr.Read(time.Now().Add(tick))
		switch {
		case err == nil:
			for _, o := range eng.Add(ev) {
				emit(o)
			}
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ringbuf.ErrFlushed):
		case errors.Is(err, os.ErrClosed):
			return nil
		default:
			return err
		}
		for _, o := range eng.Expire(now()) {
			emit(o)
		}
	}
	if err := drain(tr, eng, emit, drainMax, now); err != nil {
		return err
	}
	for _, o := range eng.Flush(now()) {
		emit(o)
	}
	return nil
}

// drain reads what the kernel already queued, and keeps waiting — at most
// drainMax — only while a handshake that began before the stop has not
// reached its end (its SYN-ACK's fate, its final ACK): the evidence, not
// a fixed sleep, decides how long. A quiet or settled namespace costs one
// poll of the ring; a server under a handshake storm, whose ring never
// empties, stops at drainMax.
func drain(tr events, eng *Engine, emit func(Outcome), drainMax time.Duration, now func() time.Duration) error {
	cutoff := now()
	until := time.Now().Add(drainMax)
	for time.Now().Before(until) {
		wait := time.Now() // poll: what is queued
		if eng.Unfinished(cutoff) {
			wait = until
		}
		ev, err := tr.Read(wait)
		switch {
		case err == nil:
			for _, o := range eng.Add(ev) {
				emit(o)
			}
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			continue
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, os.ErrClosed):
			return nil
		}
		return err
	}
	return nil
}

func monoNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

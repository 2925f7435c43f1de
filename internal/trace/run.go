package trace

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Run reads events until ctx is done, feeds them to eng and hands every
// decided outcome to emit; at the end it flushes the flows still waiting.
func Run(ctx context.Context, tr *Tracer, eng *Engine, emit func(Outcome)) error {
	tick := 100 * time.Millisecond
	for {
		if ctx.Err() != nil {
			break
		}
		ev, err := tr.Read(time.Now().Add(tick))
		switch {
		case err == nil:
			for _, o := range eng.Add(ev) {
				emit(o)
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
		case errors.Is(err, os.ErrClosed):
			return nil
		default:
			return err
		}
		for _, o := range eng.Expire(monoNow()) {
			emit(o)
		}
	}
	// Drain what the kernel already produced, then flush.
	for {
		ev, err := tr.Read(time.Now().Add(50 * time.Millisecond))
		if err != nil {
			break
		}
		for _, o := range eng.Add(ev) {
			emit(o)
		}
	}
	for _, o := range eng.Flush(monoNow()) {
		emit(o)
	}
	return nil
}

func monoNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

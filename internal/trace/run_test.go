package trace

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// fakeEvents stands in for the tracer's ring buffer: events queued on ch,
// Wake like ringbuf's Flush, and storm, when set, an event always ready.
type fakeEvents struct {
	ch    chan Event
	wake  chan struct{}
	storm func() Event
}

func newFakeEvents() *fakeEvents {
	return &fakeEvents{ch: make(chan Event, 16), wake: make(chan struct{}, 1)}
}

func (f *fakeEvents) Read(deadline time.Time) (Event, error) {
	if f.storm != nil {
		return f.storm(), nil
	}
	select {
	case e := <-f.ch:
		return e, nil
	default:
	}
	d := time.Until(deadline)
	if d <= 0 {
		return Event{}, os.ErrDeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case e := <-f.ch:
		return e, nil
	case <-f.wake:
		return Event{}, ringbuf.ErrFlushed
	case <-t.C:
		return Event{}, os.ErrDeadlineExceeded
	}
}

func (f *fakeEvents) Wake() error {
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

// runFake runs the loop on f, cancels it once the events queued before
// are read, calls after (events arriving after the stop) and returns the
// outcomes and how long Run took from the cancel.
func runFake(t *testing.T, f *fakeEvents, drainMax time.Duration, after func()) ([]Outcome, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var outs []Outcome
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, f, NewEngine(time.Second), func(o Outcome) { outs = append(outs, o) }, drainMax, monoNow)
	}()
	for len(f.ch) > 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond) // the loop is blocked in Read again
	began := time.Now()
	cancel()
	if after != nil {
		after()
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of its context's end")
	}
	return outs, time.Since(began)
}

// A handshake under way when the trace stops still gets its fate: the
// drain waits for the final ACK that arrives 10 ms after the stop.
func TestDrainWaitsForHandshakeUnderWay(t *testing.T) {
	f := newFakeEvents()
	m := monoNow()
	f.ch <- synEv(m, FlagConsumed|FlagSynAck|FlagFib, func(e *Event) { e.SynAckMono = m + 40*time.Microsecond })
	outs, took := runFake(t, f, time.Second, func() {
		time.Sleep(10 * time.Millisecond)
		f.ch <- ev(KindAck, monoNow(), nil)
	})
	if len(outs) != 1 || outs[0].Fate != Established || outs[0].Incomplete {
		t.Fatalf("outcomes %+v, want the handshake established", outs)
	}
	if took > 500*time.Millisecond {
		t.Errorf("drain took %v: it should end when the ACK came, not at its bound", took)
	}
}

// With nothing under way the stop costs one poll of the ring, however
// long the bound: no fixed wait, and the reader is woken at once rather
// than at its next 100 ms tick.
func TestDrainQuietIsImmediate(t *testing.T) {
	f := newFakeEvents()
	m := monoNow()
	f.ch <- synEv(m, FlagConsumed|FlagSynAck|FlagFib, func(e *Event) { e.SynAckMono = m + 40*time.Microsecond })
	f.ch <- ev(KindAck, m+time.Millisecond, nil)
	outs, took := runFake(t, f, time.Second, nil)
	if len(outs) != 1 || outs[0].Fate != Established {
		t.Fatalf("outcomes %+v", outs)
	}
	if took > 50*time.Millisecond {
		t.Errorf("Run took %v after the stop with nothing under way", took)
	}
}

// Under a handshake storm the ring never empties and new handshakes are
// always under way: the drain stops at its bound.
func TestDrainBoundedUnderStorm(t *testing.T) {
	f := newFakeEvents()
	port := uint16(1)
	f.storm = func() Event {
		port++
		m := monoNow()
		return synEv(m, FlagConsumed|FlagSynAck|FlagFib, func(e *Event) {
			e.SynAckMono = m
			e.Client = netip.AddrPortFrom(tClient.Addr(), port)
		})
	}
	_, took := runFake(t, f, 30*time.Millisecond, nil)
	if took > 300*time.Millisecond {
		t.Errorf("Run took %v after the stop under a storm, bound 30 ms", took)
	}
}

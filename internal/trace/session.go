package trace

import (
	"context"
	"time"
)

// Session is the trace engine wired the one way every caller uses it (the
// trace command, probe --server): the attached tracer, and the engine with
// its listener and conntrack lookups.
type Session struct {
	tr  *Tracer
	eng *Engine
}

// OpenSession loads and attaches the tracer for opts and builds its engine;
// pending is how long a SYN-ACKed handshake waits for its final ACK.
func OpenSession(opts Options, pending time.Duration) (*Session, error) {
	tr, err := Open(opts)
	if err != nil {
		return nil, err
	}
	return &Session{tr: tr, eng: NewWiredEngine(pending)}, nil
}

// NewWiredEngine is the engine every mode runs (trace, probe --server,
// doctor's trace source through Session, and watch): with the listener
// and conntrack lookups that tell an accept-queue overflow from another
// admission drop and a conntrack-invalid drop from a rule's. Both answers
// are cached per namespace (and port) for a fraction of a second, so a
// flood of dropped SYNs costs a few lookups a second, not one each.
func NewWiredEngine(pending time.Duration) *Engine {
	eng := NewEngine(pending)
	eng.Listener = NewListenerLookup().Func()
	eng.Conntrack = NewConntrackLookup().Func()
	return eng
}

// Capabilities are the tracer's hooks and whether each is available.
func (s *Session) Capabilities() []Capability { return s.tr.Capabilities() }

// Run hands every decided outcome to emit until ctx is done (see Run).
func (s *Session) Run(ctx context.Context, emit func(Outcome)) error {
	return Run(ctx, s.tr, s.eng, emit)
}

// Summary is the kernel's counters and the engine's tallies so far.
func (s *Session) Summary() (Summary, error) {
	c, err := s.tr.Counters()
	if err != nil {
		return Summary{}, err
	}
	sum := Summarize(c, s.eng.Stats())
	sum.Fexit = s.tr.Fexit()
	sum.Capabilities = s.tr.Capabilities()
	return sum, nil
}

// Close detaches the tracer.
func (s *Session) Close() error { return s.tr.Close() }

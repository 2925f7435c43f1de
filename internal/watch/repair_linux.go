package watch

import (
	"context"
	"time"
)

// repairDone is a finished repair attempt.
type repairDone struct{}

// repairer is the guarded repair of one namespace (see repair guards).
type repairer struct {
	l    *nsLoop
	done chan repairDone
}

func newRepairer(l *nsLoop) *repairer { return &repairer{l: l, done: make(chan repairDone, 4)} }

func (p *repairer) lost(ctx context.Context, r Route, reason Reason, now time.Time) {}
func (p *repairer) restored(r Route)                                              {}
func (p *repairer) tick(ctx context.Context, now time.Time)                       {}
func (p *repairer) finished(ctx context.Context, d repairDone)                    {}
func (p *repairer) stop()                                                         {}

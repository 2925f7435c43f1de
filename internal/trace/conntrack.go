package trace

import (
	"fmt"
	"sync"
	"time"

	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/netns"
)

// ConntrackState is a namespace's conntrack statistics from
// /proc/net/stat/nf_conntrack.
type ConntrackState struct {
	// Entries is the namespace's conntrack table size.
	Entries uint64
	// Invalid is how many packets conntrack found INVALID (all CPUs).
	Invalid uint64
}

// ConntrackFunc returns the conntrack statistics of the namespace with
// inode netns; ok is false when they cannot be read (no nf_conntrack
// module, namespace gone).
type ConntrackFunc func(netns uint32) (st ConntrackState, ok bool)

// ConntrackLookup reads conntrack statistics by netns inode, caching each
// namespace's answer briefly so a burst of drops costs one read. Safe for
// concurrent use.
type ConntrackLookup struct {
	ns    *ListenerLookup // namespace paths by inode
	mu    sync.Mutex
	cache map[uint32]ctSample
}

type ctSample struct {
	at time.Time
	st ConntrackState
	ok bool
}

// conntrackCacheFor bounds how stale a cached answer may be.
const conntrackCacheFor = 200 * time.Millisecond

// NewConntrackLookup returns an empty lookup.
func NewConntrackLookup() *ConntrackLookup {
	return &ConntrackLookup{ns: NewListenerLookup(), cache: map[uint32]ctSample{}}
}

// Func adapts the lookup to Engine.Conntrack.
func (l *ConntrackLookup) Func() ConntrackFunc {
	return func(ns uint32) (ConntrackState, bool) {
		l.mu.Lock()
		if s, ok := l.cache[ns]; ok && time.Since(s.at) < conntrackCacheFor {
			l.mu.Unlock()
			return s.st, s.ok
		}
		l.mu.Unlock()
		st, err := l.Lookup(ns)
		l.mu.Lock()
		if len(l.cache) >= maxListenerCache {
			clear(l.cache)
		}
		l.cache[ns] = ctSample{at: time.Now(), st: st, ok: err == nil}
		l.mu.Unlock()
		return st, err == nil
	}
}

// Lookup reads the conntrack statistics of the namespace with inode ns.
func (l *ConntrackLookup) Lookup(ns uint32) (ConntrackState, error) {
	path, err := l.ns.nsPath(ns)
	if err != nil {
		return ConntrackState{}, err
	}
	tg, err := netns.Open(path)
	if err != nil {
		return ConntrackState{}, err
	}
	defer tg.Close()
	var ct counters.Conntrack
	err = tg.Do(func() error {
		var err error
		ct, err = counters.ReadConntrack(netns.ProcNet, "/proc/sys")
		return err
	})
	switch {
	case err != nil:
		return ConntrackState{}, fmt.Errorf("conntrack statistics of netns %d: %w", ns, err)
	case !ct.Available:
		return ConntrackState{}, fmt.Errorf("conntrack statistics of netns %d: nf_conntrack not loaded", ns)
	}
	return ConntrackState{Entries: ct.Count, Invalid: ct.Invalid}, nil
}

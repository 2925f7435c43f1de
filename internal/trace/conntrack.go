package trace

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

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
	var st ConntrackState
	err = tg.Do(func() error {
		f, err := os.Open(netns.ProcNet + "/stat/nf_conntrack")
		if err != nil {
			return err
		}
		defer f.Close()
		st, err = parseConntrackStat(f)
		return err
	})
	if err != nil {
		return ConntrackState{}, fmt.Errorf("conntrack statistics of netns %d: %w", ns, err)
	}
	return st, nil
}

// parseConntrackStat reads /proc/net/stat/nf_conntrack: a header naming
// the columns, then one line of hex counters per CPU. "entries" is the
// namespace's table size repeated on every line; the others are per CPU.
func parseConntrackStat(r io.Reader) (ConntrackState, error) {
	var st ConntrackState
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return st, fmt.Errorf("nf_conntrack stat: empty")
	}
	cols := strings.Fields(sc.Text())
	entries, invalid := -1, -1
	for i, c := range cols {
		switch c {
		case "entries":
			entries = i
		case "invalid":
			invalid = i
		}
	}
	if entries < 0 || invalid < 0 {
		return st, fmt.Errorf("nf_conntrack stat: no entries/invalid column in %q", sc.Text())
	}
	for line := 0; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) != len(cols) {
			return st, fmt.Errorf("nf_conntrack stat: %d fields, want %d", len(f), len(cols))
		}
		inv, err := strconv.ParseUint(f[invalid], 16, 64)
		if err != nil {
			return st, fmt.Errorf("nf_conntrack stat: invalid %q: %w", f[invalid], err)
		}
		st.Invalid += inv
		if line == 0 {
			if st.Entries, err = strconv.ParseUint(f[entries], 16, 64); err != nil {
				return st, fmt.Errorf("nf_conntrack stat: entries %q: %w", f[entries], err)
			}
		}
	}
	return st, sc.Err()
}

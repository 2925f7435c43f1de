package trace

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/sockets"
)

// ListenerLookup finds listeners by netns inode through sock_diag, to tell
// an accept-queue overflow from other admission drops. Namespaces are found
// by inode among /run/netns and /proc/*/ns/net. Safe for concurrent use.
type ListenerLookup struct {
	mu    sync.Mutex
	paths map[uint32]string
	// states caches Func's answers per namespace and port.
	states map[listenerKey]listenerSample
	// look is Lookup (tests count the calls through it).
	look func(ns uint32, server netip.AddrPort) (ListenerState, error)
}

type listenerKey struct {
	ns   uint32
	port uint16
}

type listenerSample struct {
	at time.Time
	st ListenerState
	ok bool
}

// listenerCacheFor bounds how stale a cached listener state may be: a
// full queue that drops SYNs stays full far longer, and a flood of drops
// then costs a sock_diag dump every 100 ms per port instead of one per
// SYN.
const listenerCacheFor = 100 * time.Millisecond

// maxListenerCache bounds the cache (entries are replaced, never grown
// past it: namespaces and ports come and go under watch).
const maxListenerCache = 4096

// NewListenerLookup returns an empty lookup cache.
func NewListenerLookup() *ListenerLookup {
	l := &ListenerLookup{paths: map[uint32]string{}, states: map[listenerKey]listenerSample{}}
	l.look = l.Lookup
	return l
}

// Func adapts the lookup to Engine.Listener, with answers cached for
// listenerCacheFor per namespace and port.
func (l *ListenerLookup) Func() ListenerFunc {
	return func(ns uint32, server netip.AddrPort) (ListenerState, bool) {
		k := listenerKey{ns, server.Port()}
		now := time.Now()
		l.mu.Lock()
		if s, ok := l.states[k]; ok && now.Sub(s.at) < listenerCacheFor {
			l.mu.Unlock()
			return s.st, s.ok
		}
		l.mu.Unlock()
		st, err := l.look(ns, server)
		l.mu.Lock()
		if len(l.states) >= maxListenerCache {
			clear(l.states)
		}
		l.states[k] = listenerSample{at: now, st: st, ok: err == nil}
		l.mu.Unlock()
		return st, err == nil
	}
}

// Lookup returns the state of the listener covering server in netns.
func (l *ListenerLookup) Lookup(ns uint32, server netip.AddrPort) (ListenerState, error) {
	path, err := l.nsPath(ns)
	if err != nil {
		return ListenerState{}, err
	}
	tg, err := netns.Open(path)
	if err != nil {
		return ListenerState{}, err
	}
	defer tg.Close()
	var ls, rs []sockets.Socket
	// sock_diag answers for the namespace of the thread that asks.
	err = tg.Do(func() error {
		var err error
		if ls, err = sockets.Listeners(); err != nil {
			return err
		}
		rs, err = sockets.SynRecv()
		return err
	})
	if err != nil {
		return ListenerState{}, fmt.Errorf("listeners of netns %d: %w", ns, err)
	}
	var st ListenerState
	found := false
	// A v4 client may hit a dual-stack [::] listener: any family.
	for _, s := range ls {
		if s.Local.Port() == server.Port() && (!found || s.RecvQ > st.AcceptQueue) {
			st.AcceptQueue, st.Backlog, found = s.RecvQ, s.SendQ, true
		}
	}
	for _, s := range rs {
		if s.Local.Port() == server.Port() {
			st.SynRecv++
		}
	}
	if !found {
		return st, fmt.Errorf("no listener on port %d in netns %d", server.Port(), ns)
	}
	return st, nil
}

func (l *ListenerLookup) nsPath(ns uint32) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p, ok := l.paths[ns]; ok && inodeOf(p) == ns {
		return p, nil
	}
	cands, _ := filepath.Glob("/run/netns/*")
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range append(cands, procs...) {
		if inodeOf(p) == ns {
			l.paths[ns] = p
			return p, nil
		}
	}
	return "", fmt.Errorf("network namespace with inode %d not found", ns)
}

func inodeOf(path string) uint32 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0
	}
	return uint32(st.Ino)
}

// NamespaceNames labels netns inodes for display: the /run/netns name when
// there is one, else the inode number. Safe for concurrent use.
type NamespaceNames struct {
	mu    sync.Mutex
	names map[uint32]string
}

// NewNamespaceNames returns an empty label cache.
func NewNamespaceNames() *NamespaceNames { return &NamespaceNames{names: map[uint32]string{}} }

// Label returns a display name for the namespace with inode ns.
func (n *NamespaceNames) Label(ns uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.names[ns]; ok {
		return s
	}
	label := fmt.Sprint(ns)
	if ns == 0 {
		label = "?"
	} else if inodeOf("/proc/self/ns/net") == ns {
		label = "host"
	} else {
		paths, _ := filepath.Glob("/run/netns/*")
		for _, p := range paths {
			if inodeOf(p) == ns {
				label = filepath.Base(p)
				break
			}
		}
	}
	n.names[ns] = label
	return label
}

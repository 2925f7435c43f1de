package trace

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
)

const (
	tcpSynRecv = 3
	tcpListen  = 10
)

// ListenerLookup finds listeners by netns inode through sock_diag, to tell
// an accept-queue overflow from other admission drops. Namespaces are found
// by inode among /run/netns and /proc/*/ns/net. Safe for concurrent use.
type ListenerLookup struct {
	mu    sync.Mutex
	paths map[uint32]string
}

// NewListenerLookup returns an empty lookup cache.
func NewListenerLookup() *ListenerLookup { return &ListenerLookup{paths: map[uint32]string{}} }

// Func adapts the lookup to Engine.Listener.
func (l *ListenerLookup) Func() ListenerFunc {
	return func(ns uint32, server netip.AddrPort) (ListenerState, bool) {
		st, err := l.Lookup(ns, server)
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
	var st ListenerState
	found := false
	// A v4 client may hit a dual-stack [::] listener, so look at both.
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		var socks []*netlink.Socket
		// A Handle made for another namespace has no inet_diag socket of
		// its own, so the dump must run on a thread inside the namespace.
		err := tg.Do(func() error {
			var err error
			socks, err = netlink.SocketDiagTCP(fam)
			return err
		})
		if err != nil {
			continue
		}
		for _, s := range socks {
			if s.ID.SourcePort != server.Port() {
				continue
			}
			switch s.State {
			case tcpListen:
				if !found || s.RQueue > st.AcceptQueue {
					st.AcceptQueue, st.Backlog = s.RQueue, s.WQueue
				}
				found = true
			case tcpSynRecv:
				st.SynRecv++
			}
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

package trace

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// The wired engine's listener lookup answers a flood of admission drops
// from its cache: one sock_diag dump per namespace and port per
// listenerCacheFor, failures included, and a fresh one after it.
func TestListenerLookupCached(t *testing.T) {
	l := NewListenerLookup()
	calls := map[listenerKey]int{}
	l.look = func(ns uint32, server netip.AddrPort) (ListenerState, error) {
		calls[listenerKey{ns, server.Port()}]++
		if ns == 2 {
			return ListenerState{}, errors.New("no listener")
		}
		return ListenerState{AcceptQueue: 5, Backlog: 5}, nil
	}
	f := l.Func()
	a := netip.MustParseAddrPort("10.0.0.1:8080")
	b := netip.MustParseAddrPort("10.0.0.1:9090")
	for range 100 {
		if st, ok := f(1, a); !ok || st.AcceptQueue != 5 {
			t.Fatalf("cached answer %+v %v", st, ok)
		}
		if _, ok := f(2, a); ok {
			t.Fatal("a failed lookup answered ok from the cache")
		}
		f(1, b)
	}
	if calls[listenerKey{1, 8080}] != 1 || calls[listenerKey{2, 8080}] != 1 || calls[listenerKey{1, 9090}] != 1 {
		t.Fatalf("lookups %v, want one per namespace and port", calls)
	}
	time.Sleep(listenerCacheFor + 10*time.Millisecond)
	f(1, a)
	if calls[listenerKey{1, 8080}] != 2 {
		t.Fatalf("lookups %v: a stale answer was served past %v", calls, listenerCacheFor)
	}
}

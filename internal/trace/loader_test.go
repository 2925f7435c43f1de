package trace

import (
	"net/netip"
	"testing"
	"time"
)

// collect reads events until d passes.
func collect(t *testing.T, tr *Tracer, d time.Duration) []Event {
	t.Helper()
	var out []Event
	deadline := time.Now().Add(d)
	for {
		ev, err := tr.Read(deadline)
		if err != nil {
			return out
		}
		out = append(out, ev)
	}
}

func openTracer(t *testing.T, o Options) *Tracer {
	t.Helper()
	tr, err := Open(o)
	if err != nil {
		t.Fatalf("open tracer: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestKernelMissingRouteSYN proves that a SYN whose SYN-ACK has no route
// back (consumed in tcp_conn_request, invisible to kfree_skb) is seen with
// its tuple and the failed reply route lookup, for IPv4 and IPv6.
func TestKernelMissingRouteSYN(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "mr")
	e.listen(t, "tcp", "[::]:8080", 16, true)
	e.delFarRoutes(t)
	tr := openTracer(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}})
	for _, tc := range []struct {
		src netip.Addr
		dst netip.Addr
	}{{farAddr4, srvAddr4}, {farAddr6, srvAddr6}} {
		err := e.dial(tc.src, netip.AddrPortFrom(tc.dst, 8080), 300*time.Millisecond)
		if err == nil {
			t.Fatalf("dial from %s unexpectedly succeeded", tc.src)
		}
		evs := collect(t, tr, 200*time.Millisecond)
		var found bool
		for _, ev := range evs {
			t.Logf("%+v", ev)
			if ev.Kind != KindSYN || ev.Client.Addr() != tc.src || ev.Server != netip.AddrPortFrom(tc.dst, 8080) {
				continue
			}
			found = true
			if ev.Netns != uint32(e.srv.Inode) {
				t.Errorf("netns = %d, want %d", ev.Netns, e.srv.Inode)
			}
			if ev.Flags&FlagConsumed == 0 || ev.Flags&FlagSynAck != 0 {
				t.Errorf("flags = %#x, want consumed without SYN-ACK", ev.Flags)
			}
			if ev.Flags&FlagFib == 0 || ev.FibErr == 0 {
				t.Errorf("no failed reply route lookup recorded: flags %#x err %d", ev.Flags, ev.FibErr)
			}
		}
		if !found {
			t.Errorf("no SYN event from %s", tc.src)
		}
	}
}

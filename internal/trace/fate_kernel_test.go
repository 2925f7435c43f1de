package trace

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
)

// session runs the tracer and engine in the background and collects
// outcomes until stop.
type session struct {
	mu   sync.Mutex
	outs []Outcome
	stop func()
	done chan struct{}
}

func startSession(t *testing.T, o Options, pending time.Duration) *session {
	t.Helper()
	tr := openTracer(t, o)
	eng := NewEngine(pending)
	eng.Listener = NewListenerLookup().Func()
	eng.Conntrack = NewConntrackLookup().Func()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	s := &session{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = Run(ctx, tr, eng, func(o Outcome) {
			s.mu.Lock()
			s.outs = append(s.outs, o)
			s.mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// await waits until the engine has decided an outcome for every client,
// so that finish does not flush a handshake whose last event (the final
// ACK, the RST, the pending timer) the kernel or the engine has not
// produced yet. It replaces fixed sleeps, which under load were not always
// long enough. The bound only turns a missing outcome into a failure;
// want reports which.
func (s *session) await(t *testing.T, clients ...netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		missing := 0
		for _, c := range clients {
			found := false
			for _, o := range s.outs {
				found = found || o.ClientAddr().Addr() == c
			}
			if !found {
				missing++
			}
		}
		s.mu.Unlock()
		if missing == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finish stops the session and returns every outcome.
func (s *session) finish() []Outcome {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Outcome(nil), s.outs...)
}

func nft(t *testing.T, ns, rules string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v: %s", ns, err, out)
	}
}

// want asserts that every outcome from client has the fate and cause, and
// that there is at least one.
func want(t *testing.T, outs []Outcome, client netip.Addr, fate Fate, cause causes.ID) []Outcome {
	t.Helper()
	var mine []Outcome
	for _, o := range outs {
		if o.ClientAddr().Addr() == client {
			mine = append(mine, o)
		}
	}
	if len(mine) == 0 {
		t.Fatalf("no outcome for client %s; got %+v", client, outs)
	}
	for _, o := range mine {
		t.Logf("%s -> %s %s %s %v", o.Client, o.Server, o.Fate, o.Cause, o.Evidence)
		if o.Fate != fate || o.Cause != cause {
			t.Errorf("client %s: fate %s cause %q, want %s %q (evidence %v)", o.Client, o.Fate, o.Cause, fate, cause, o.Evidence)
		}
	}
	return mine
}

func TestKernelFateHealthy(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "ok")
	e.listen(t, "tcp", "[::]:8080", 16, true)
	s := startSession(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}}, time.Second)
	for _, dst := range []netip.Addr{srvAddr4, srvAddr6} {
		if err := e.dial(netip.Addr{}, netip.AddrPortFrom(dst, 8080), time.Second); err != nil {
			t.Fatalf("dial %s: %v", dst, err)
		}
	}
	s.await(t, cliAddr4, cliAddr6)
	outs := s.finish()
	for _, c := range []netip.Addr{cliAddr4, cliAddr6} {
		for _, o := range want(t, outs, c, Established, "") {
			if o.SynToSynAckUS == nil || o.SynAckToAckUS == nil || *o.SynToSynAckUS <= 0 || *o.SynAckToAckUS <= 0 {
				t.Errorf("missing latencies: %+v", o)
			}
		}
	}
}

func TestKernelFateNoListener(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "nl")
	s := startSession(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8081}}, time.Second)
	for _, dst := range []netip.Addr{srvAddr4, srvAddr6} {
		if err := e.dial(netip.Addr{}, netip.AddrPortFrom(dst, 8081), time.Second); !isRefused(err) {
			t.Fatalf("dial %s: %v, want connection refused", dst, err)
		}
	}
	s.await(t, cliAddr4, cliAddr6)
	outs := s.finish()
	want(t, outs, cliAddr4, Refused, causes.NoListener)
	want(t, outs, cliAddr6, Refused, causes.NoListener)
}

func TestKernelFateMissingRoute(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "rt")
	e.listen(t, "tcp", "[::]:8080", 16, true)
	e.delFarRoutes(t)
	s := startSession(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}}, time.Second)
	for _, c := range []struct{ src, dst netip.Addr }{{farAddr4, srvAddr4}, {farAddr6, srvAddr6}} {
		if err := e.dial(c.src, netip.AddrPortFrom(c.dst, 8080), 1200*time.Millisecond); err == nil {
			t.Fatalf("dial from %s succeeded without a route back", c.src)
		}
	}
	outs := s.finish()
	want(t, outs, farAddr4, Dropped, causes.NoRouteToPeer)
	want(t, outs, farAddr6, Dropped, causes.NoRouteToPeer)
}

func TestKernelFateFirewallDropSYN(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "fw")
	e.listen(t, "tcp", "[::]:8080", 16, true)
	nft(t, e.srv.Name, "table inet synscopetest {\n chain in {\n  type filter hook input priority 0\n  tcp dport 8080 tcp flags & (syn|ack) == syn drop\n }\n}\n")
	s := startSession(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}}, time.Second)
	_ = e.dial(netip.Addr{}, netip.AddrPortFrom(srvAddr4, 8080), 300*time.Millisecond)
	_ = e.dial(netip.Addr{}, netip.AddrPortFrom(srvAddr6, 8080), 300*time.Millisecond)
	outs := s.finish()
	want(t, outs, cliAddr4, Dropped, causes.FirewallDrop)
	want(t, outs, cliAddr6, Dropped, causes.FirewallDrop)
}

// TestKernelFateFirewallDropTracked: with conntrack hooked (a ct rule), a
// valid SYN dropped by a plain rule carries its NEW conntrack entry at the
// drop, so it is a firewall drop and not conntrack-invalid.
func TestKernelFateFirewallDropTracked(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "ft")
	e.listen(t, "tcp", "[::]:8080", 16, true)
	nft(t, e.srv.Name, "table inet synscopetest {\n chain in {\n  type filter hook input priority 0\n  ct state invalid drop\n  ct state established,related accept\n  tcp dport 8080 tcp flags & (syn|ack) == syn drop\n }\n}\n")
	s := startSession(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}}, time.Second)
	_ = e.dial(netip.Addr{}, netip.AddrPortFrom(srvAddr4, 8080), 300*time.Millisecond)
	_ = e.dial(netip.Addr{}, netip.AddrPortFrom(srvAddr6, 8080), 300*time.Millisecond)
	outs := s.finish()
	for _, c := range []netip.Addr{cliAddr4, cliAddr6} {
		for _, o := range want(t, outs, c, Dropped, causes.FirewallDrop) {
			if !strings.Contains(strings.Join(o.Evidence, "; "), "tracked by conntrack") {
				t.Errorf("%s: evidence does not say the SYN was tracked: %v", c, o.Evidence)
			}
		}
	}
}

func TestKernelFateFirewallDropSynAck(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "fo")
	e.listen(t, "tcp", "[::]:8080", 16, true)
	nft(t, e.srv.Name, "table inet synscopetest {\n chain out {\n  type filter hook output priority 0\n  tcp sport 8080 tcp flags & (syn|ack) == (syn|ack) drop\n }\n}\n")
	s := startSession(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}}, time.Second)
	_ = e.dial(netip.Addr{}, netip.AddrPortFrom(srvAddr4, 8080), 300*time.Millisecond)
	outs := s.finish()
	want(t, outs, cliAddr4, Dropped, causes.FirewallDrop)
}

func TestKernelFateAcceptQueueOverflow(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "aq")
	e.listen(t, "tcp", "0.0.0.0:8080", 1, false)
	// Fill the accept queue (backlog 1 holds 2) before tracing.
	for i := 0; i < 2; i++ {
		if err := e.dial(netip.Addr{}, netip.AddrPortFrom(srvAddr4, 8080), time.Second); err != nil {
			t.Fatalf("fill dial %d: %v", i, err)
		}
	}
	s := startSession(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}}, time.Second)
	_ = e.dial(netip.Addr{}, netip.AddrPortFrom(srvAddr4, 8080), 300*time.Millisecond)
	outs := s.finish()
	want(t, outs, cliAddr4, Dropped, causes.AcceptQueueOverflow)
}

func TestKernelFateSynAckUnanswered(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "su")
	e.listen(t, "tcp", "[::]:8080", 16, true)
	// The client never sees SYN-ACKs, so the server retransmits them.
	nft(t, e.cli.Name, "table inet synscopetest {\n chain in {\n  type filter hook input priority 0\n  tcp sport 8080 drop\n }\n}\n")
	s := startSession(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}}, 1500*time.Millisecond)
	_ = e.dial(netip.Addr{}, netip.AddrPortFrom(srvAddr4, 8080), 2500*time.Millisecond)
	s.await(t, cliAddr4) // decided when the 1.5 s pending window ends
	outs := s.finish()
	for _, o := range want(t, outs, cliAddr4, SynAckRetransmitted, causes.SynackUnanswered) {
		if o.Retransmits == 0 {
			t.Errorf("no retransmit count: %+v", o)
		}
	}
}

// TestKernelFateLoopback covers a handshake that never leaves a namespace:
// SYN, SYN-ACK and ACK all cross lo.
func TestKernelFateLoopback(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "lo")
	e.listen(t, "tcp", "[::]:8080", 16, true)
	s := startSession(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}}, time.Second)
	lo := &pairEnv{srv: e.srv, cli: e.srv}
	for _, dst := range []string{"127.0.0.1", "::1"} {
		if err := lo.dial(netip.Addr{}, netip.AddrPortFrom(netip.MustParseAddr(dst), 8080), time.Second); err != nil {
			t.Fatalf("dial %s: %v", dst, err)
		}
	}
	s.await(t, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"))
	outs := s.finish()
	want(t, outs, netip.MustParseAddr("127.0.0.1"), Established, "")
	want(t, outs, netip.MustParseAddr("::1"), Established, "")
}

// TestKernelPeerFilter checks that --peer filtering happens in the kernel:
// SYNs from other clients are neither reported nor counted.
func TestKernelPeerFilter(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "pf")
	e.listen(t, "tcp", "[::]:8080", 16, true)
	tr := openTracer(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}, Peers: []netip.Addr{farAddr4}})
	for _, src := range []netip.Addr{cliAddr4, farAddr4, cliAddr4} {
		if err := e.dial(src, netip.AddrPortFrom(srvAddr4, 8080), time.Second); err != nil {
			t.Fatalf("dial from %s: %v", src, err)
		}
	}
	evs := collect(t, tr, 300*time.Millisecond)
	for _, ev := range evs {
		if ev.Client.Addr() != farAddr4 {
			t.Errorf("event from filtered-out client: %+v", ev)
		}
	}
	c, err := tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.SYNs != 1 || c.Acks != 1 {
		t.Errorf("counters %+v, want exactly one SYN and one final ACK", c)
	}
}

// TestKernelSamplingBudget checks that beyond the per-CPU budget SYNs only
// move counters: a burst costs counters, not events.
func TestKernelSamplingBudget(t *testing.T) {
	needRoot(t)
	e := newPairEnv(t, "sb")
	e.listen(t, "tcp", "[::]:8080", 64, true)
	tr := openTracer(t, Options{Netns: uint32(e.srv.Inode), Ports: []uint16{8080}, SamplesPerSec: 3})
	const n = 60
	for i := 0; i < n; i++ {
		if err := e.dial(netip.Addr{}, netip.AddrPortFrom(srvAddr4, 8080), time.Second); err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
	}
	evs := collect(t, tr, 300*time.Millisecond)
	syns := 0
	for _, ev := range evs {
		if ev.Kind == KindSYN {
			syns++
		}
	}
	c, err := tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d SYN events, counters %+v", syns, c)
	if c.SYNs != n || c.SynAcked != n {
		t.Errorf("kernel counted %d SYNs (%d SYN-ACKed), want %d", c.SYNs, c.SynAcked, n)
	}
	if c.Unsampled == 0 || uint64(syns) != c.SYNs-c.Unsampled {
		t.Errorf("%d SYN events, %d unsampled of %d: budget not applied or events missing", syns, c.Unsampled, c.SYNs)
	}
	if c.Lost != 0 {
		t.Errorf("%d events lost", c.Lost)
	}
}

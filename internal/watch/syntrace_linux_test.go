package watch

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestLabSYNTrace: with --syn-trace=on, the SYNs a client sends to a
// server that lost its IPv4 default route are counted one by one in
// synscope_syn_drops_total{cause="no-route-to-peer",source="trace"}, beside
// the counters' attribution, and only for the watched namespace.
func TestLabSYNTrace(t *testing.T) {
	env := labUp(t, "missing-default-route-v4", "st")
	d := startWatch(t, Options{Netns: []string{env.Server}, Interval: 200 * time.Millisecond, SYNTrace: SYNTraceOn})
	if v, _ := d.value("synscope_syn_trace_up", nil); v != 1 {
		t.Fatalf("synscope_syn_trace_up = %v, want 1", v)
	}
	// Four connection attempts, each cut short after one SYN retransmit:
	// at least four SYNs, all dropped on the SYN-ACK's route lookup.
	for i := 0; i < 4; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		err := env.Dial(ctx, 4, 1200*time.Millisecond)
		cancel()
		if err == nil {
			t.Fatal("client connected without a server default route")
		}
	}
	traced := map[string]string{"netns": env.Server, "cause": "no-route-to-peer", "source": "trace"}
	d.waitValueAtLeast(t, 10*time.Second, "synscope_syn_drops_total", traced, 3)
	d.waitValueAtLeast(t, 5*time.Second, "synscope_syn_drops_total",
		map[string]string{"netns": env.Server, "cause": "no-route-to-peer", "source": "counters"}, 1)
	for _, other := range []string{"firewall-drop", "accept-queue-overflow", "no-listener"} {
		if v, _ := d.value("synscope_syn_drops_total", map[string]string{"netns": env.Server, "cause": other, "source": "trace"}); v != 0 {
			t.Errorf("trace counted %v SYNs as %s in the missing-route lab", v, other)
		}
	}
}

// TestSYNTraceOptions: a bad mode is refused before anything starts.
func TestSYNTraceOptions(t *testing.T) {
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	o := Options{SYNTrace: "sometimes", Logger: lg}
	if err := o.defaults(); err == nil {
		t.Fatal("--syn-trace=sometimes accepted")
	}
	o = Options{Logger: lg}
	if err := o.defaults(); err != nil || o.SYNTrace != SYNTraceAuto {
		t.Fatalf("default: %v %q", err, o.SYNTrace)
	}
}

package watch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func repairOpts(env string, hold string) Options {
	return Options{
		Netns: []string{env}, Interval: 300 * time.Millisecond, Repair: true,
		HoldDown: 150 * time.Millisecond, RSWait: 300 * time.Millisecond, RepairLimit: 6, HoldDir: hold,
	}
}

// TestLabRepair: with --repair a deleted default route (v4, v6) comes back
// with proto synscope, verified, and the client connects; with the
// operator's hold file a removal stays.
func TestLabRepair(t *testing.T) {
	env := labUp(t, "healthy", "rp")
	hold := t.TempDir()
	d := startWatch(t, repairOpts(env.Server, hold))
	h, _ := nsHandle(t, env.Server)

	for _, tc := range []struct {
		fam    int
		family string
		v      int
	}{{unix.AF_INET, "ipv4", 4}, {unix.AF_INET6, "ipv6", 6}} {
		rt := defaultRoute(t, h, tc.fam)
		from := d.log.count()
		if err := h.RouteDel(&rt); err != nil {
			t.Fatal(err)
		}
		res := d.log.wait(t, from, 5*time.Second, "repair result "+tc.family, func(f map[string]any) bool {
			return f["event"] == EventRepair && f["family"] == tc.family && f["action"] == "result"
		})
		if res.f["result"] != RepairReadded {
			t.Fatalf("%s: repair result %v: %s\nlog:\n%s", tc.family, res.f["result"], res.raw, d.log.dump())
		}
		d.log.wait(t, from, time.Second, "gateway check", func(f map[string]any) bool {
			return f["event"] == EventRepair && f["family"] == tc.family && f["action"] == "gateway-reachable"
		})
		back := d.log.wait(t, from, time.Second, "route-restored", eventIs(EventRouteRestored, env.Server, tc.family))
		if back.f["restored_by"] != "synscope" {
			t.Errorf("restored_by %v, want synscope", back.f["restored_by"])
		}
		now := defaultRoute(t, h, tc.fam)
		if now.Protocol != ProtoSynscope || now.Gw.String() != rt.Gw.String() || now.LinkIndex != rt.LinkIndex || now.Priority != rt.Priority {
			t.Errorf("%s: repaired route %+v, want %+v with proto 0x53", tc.family, now, rt)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := env.Dial(ctx, tc.v, 2*time.Second)
		cancel()
		if err != nil {
			t.Fatalf("%s: client cannot connect after the repair: %v", tc.family, err)
		}
		if v, _ := d.value("synscope_route_repairs_total", map[string]string{"netns": env.Server, "family": tc.family, "result": RepairReadded}); v != 1 {
			t.Errorf("%s: repairs_total{readded} = %v, want 1", tc.family, v)
		}
	}

	// The operator says the v4 removal is on purpose: not restored.
	if err := os.WriteFile(filepath.Join(hold, env.Server+"-ipv4"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rt := defaultRoute(t, h, unix.AF_INET)
	from := d.log.count()
	if err := h.RouteDel(&rt); err != nil {
		t.Fatal(err)
	}
	l := d.log.wait(t, from, 2*time.Second, "held", func(f map[string]any) bool {
		return f["event"] == EventRepair && f["family"] == "ipv4" && f["result"] == RepairHeld
	})
	if testing.Verbose() {
		defer func() { t.Logf("log:\n%s", d.log.dump()) }()
	}
	_ = l
	time.Sleep(4 * 150 * time.Millisecond) // several hold-downs and an interval
	if v, _ := d.value("synscope_default_route_present", map[string]string{"netns": env.Server, "family": "ipv4", "table": "main"}); v != 0 {
		t.Fatal("the operator's deliberate removal was undone")
	}
	if n := len(d.log.all(func(f map[string]any) bool {
		return f["event"] == EventRepair && f["family"] == "ipv4" && f["result"] == RepairReadded
	})); n != 1 {
		t.Fatalf("%d v4 re-adds, want only the first one", n)
	}
}

// TestLabRepairFlaps: 1,000 deletions of the default route in a few
// seconds, with repair on: repairs stay within the limit, goroutines and
// memory stay bounded, the endpoint answers, and watch says it backed off.
func TestLabRepairFlaps(t *testing.T) {
	env := labUp(t, "healthy", "fl")
	opts := repairOpts(env.Server, t.TempDir())
	opts.Listen = "127.0.0.1:0"
	opts.HoldDown = 20 * time.Millisecond
	opts.RepairLimit = 5
	d := startWatch(t, opts)
	h, _ := nsHandle(t, env.Server)
	orig := defaultRoute(t, h, unix.AF_INET)

	runtime.GC()
	g0 := runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0 := ms.HeapInuse

	// Ten rounds of 100 flaps, each ending with the route deleted and a
	// pause past the hold-down, so repair acts every round: the rate limit
	// and the back-off (the route it restores keeps being deleted) must
	// bound it.
	start := time.Now()
	deleted := 0
	for round := 0; round < 10; round++ {
		for i := 0; i < 100; i++ {
			if err := h.RouteAdd(&orig); err != nil && !errors.Is(err, unix.EEXIST) {
				t.Fatal(err)
			}
			rs, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if ones, _ := maskOnes(r); ones == 0 {
					if err := h.RouteDel(&r); err != nil {
						t.Fatal(err)
					}
					deleted++
				}
			}
		}
		time.Sleep(150 * time.Millisecond)
	}
	flapTime := time.Since(start)
	if deleted < 1000 {
		t.Fatalf("only %d deletions", deleted)
	}
	if flapTime > 10*time.Second {
		t.Fatalf("1,000 flaps took %s", flapTime)
	}
	time.Sleep(300 * time.Millisecond) // let the last attempt settle
	readded, _ := d.value("synscope_route_repairs_total", map[string]string{"netns": env.Server, "family": "ipv4", "result": RepairReadded})
	if readded < 1 || readded > float64(opts.RepairLimit) {
		t.Errorf("%v repairs after 1,000 flaps, want 1..%d", readded, opts.RepairLimit)
	}
	if len(d.log.all(func(f map[string]any) bool {
		return f["event"] == EventRepair && f["result"] == RepairRefused
	})) == 0 {
		t.Error("watch never backed off although the route it restored kept being deleted")
	}
	losses := 0.0
	for _, r := range Reasons {
		v, _ := d.value("synscope_default_route_losses_total", map[string]string{"netns": env.Server, "family": "ipv4", "reason": string(r)})
		losses += v
	}
	if losses < 100 {
		t.Errorf("only %v losses counted for 1,000 deletions", losses)
	}
	runtime.GC()
	if g := runtime.NumGoroutine(); g > g0+10 {
		t.Errorf("goroutines %d after the flaps, %d before", g, g0)
	}
	runtime.ReadMemStats(&ms)
	if ms.HeapInuse > heap0+32<<20 {
		t.Errorf("heap grew from %d to %d bytes", heap0, ms.HeapInuse)
	}
	resp, err := httpGet("http://" + d.addr.String() + "/healthz")
	if err != nil || resp != 200 {
		t.Fatalf("healthz after the flaps: %d %v", resp, err)
	}
	if v, _ := d.value("synscope_up", nil); v != 1 {
		t.Fatal("synscope_up is not 1")
	}
	t.Logf("1,000 flaps in %s: %v losses counted, %v re-adds, goroutines %d→%d", flapTime, losses, readded, g0, runtime.NumGoroutine())
}

package watch

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// detectBudget is the bound: log line and metric change within
// 100 ms of the deletion.
const detectBudget = 100 * time.Millisecond

// TestLabRouteLost deletes the lab server's default routes (v4, v6) while
// watch runs: each deletion gives a route-lost line naming this process
// and the presence gauge going to 0, both within 100 ms; re-adding gives
// route-restored; setting the device down loses both with reason link-down.
func TestLabRouteLost(t *testing.T) {
	env := labUp(t, "healthy", "rl")
	d := startWatch(t, Options{Netns: []string{env.Server}, Interval: time.Second})
	h, _ := nsHandle(t, env.Server)

	for _, tc := range []struct {
		fam    int
		family string
		gw     string
	}{{unix.AF_INET, "ipv4", "10.77.2.1"}, {unix.AF_INET6, "ipv6", "fd77:2::1"}} {
		labels := map[string]string{"netns": env.Server, "family": tc.family, "table": "main"}
		if v, ok := d.value("synscope_default_route_present", labels); !ok || v != 1 {
			t.Fatalf("%s present = %v (%v) before the deletion, want 1", tc.family, v, ok)
		}
		rt := defaultRoute(t, h, tc.fam)
		from := d.log.count()
		t0 := time.Now()
		if err := h.RouteDel(&rt); err != nil {
			t.Fatal(err)
		}
		metricAt := d.waitValue(t, time.Second, "synscope_default_route_present", labels, 0)
		l := d.log.wait(t, from, time.Second, "route-lost "+tc.family, eventIs(EventRouteLost, env.Server, tc.family))
		if lat := l.at.Sub(t0); lat > detectBudget {
			t.Errorf("%s: route-lost logged %s after the deletion, budget %s", tc.family, lat, detectBudget)
		}
		if lat := metricAt.Sub(t0); lat > detectBudget {
			t.Errorf("%s: present gauge 0 after %s, budget %s", tc.family, lat, detectBudget)
		}
		for _, k := range []string{"time", "level", "msg", "event", "netns", "family", "table", "route", "reason"} {
			if _, ok := l.f[k]; !ok {
				t.Errorf("route-lost line lacks %q: %s", k, l.raw)
			}
		}
		if l.f["reason"] != string(ReasonDeletedByProcess) || !strings.Contains(l.raw, "watch.test[") {
			t.Errorf("%s: want reason deleted-by-process naming watch.test: %s", tc.family, l.raw)
		}
		if field(l.f, "route", "gateway") != tc.gw || field(l.f, "route", "dev") != "s0" || l.f["table"] != "main" {
			t.Errorf("%s: route fields wrong: %s", tc.family, l.raw)
		}
		if v, _ := d.value("synscope_default_route_losses_total", map[string]string{"netns": env.Server, "family": tc.family, "reason": string(ReasonDeletedByProcess)}); v != 1 {
			t.Errorf("%s losses_total{deleted-by-process} = %v, want 1", tc.family, v)
		}
		if tc.fam == unix.AF_INET {
			// SYNs now die on the SYN-ACK route lookup: the interval's
			// counter attribution names no-route-to-peer.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := env.Dial(ctx, 4, 300*time.Millisecond)
			cancel()
			if err == nil {
				t.Fatal("client connected without a server default route")
			}
			d.waitValueAtLeast(t, 3*time.Second, "synscope_syn_drops_total", map[string]string{"netns": env.Server, "cause": "no-route-to-peer", "source": "counters"}, 1)
		}
		// Put it back: restored, present again.
		from = d.log.count()
		if err := h.RouteAdd(&rt); err != nil {
			t.Fatal(err)
		}
		l = d.log.wait(t, from, time.Second, "route-restored", eventIs(EventRouteRestored, env.Server, tc.family))
		if l.f["restored_by"] == "" || l.f["restored_by"] == nil {
			t.Errorf("restored line without restored_by: %s", l.raw)
		}
		d.waitValue(t, time.Second, "synscope_default_route_present", labels, 1)
	}

	// Admin down: both families lost, reason link-down.
	link, err := h.LinkByName("s0")
	if err != nil {
		t.Fatal(err)
	}
	from := d.log.count()
	t0 := time.Now()
	if err := h.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	for _, family := range []string{"ipv4", "ipv6"} {
		l := d.log.wait(t, from, time.Second, "route-lost on link down "+family, eventIs(EventRouteLost, env.Server, family))
		if l.f["reason"] != string(ReasonLinkDown) {
			t.Errorf("%s: reason %v, want link-down: %s", family, l.f["reason"], l.raw)
		}
		if lat := l.at.Sub(t0); lat > detectBudget {
			t.Errorf("%s: link-down loss logged after %s, budget %s", family, lat, detectBudget)
		}
		d.waitValue(t, time.Second, "synscope_default_route_present", map[string]string{"netns": env.Server, "family": family, "table": "main"}, 0)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		t.Logf("log:\n%s", d.log.dump())
	}
}

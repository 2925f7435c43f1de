package watch

import (
	"fmt"
	"testing"

	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/sysctl"
)

// TestApplySysctls: the values watch judges with come from collect's
// sysctl names; a value not read is unknown (-1), never 0, and a device's
// ignore_routes_with_linkdown is per family.
func TestApplySysctls(t *testing.T) {
	vals := map[string]string{
		sysctl.ConfName("ipv4", "all", "ignore_routes_with_linkdown"):      "0",
		sysctl.ConfName("ipv6", "all", "ignore_routes_with_linkdown"):      "1",
		sysctl.ConfName("ipv4", "eth0.100", "ignore_routes_with_linkdown"): "1",
		sysctl.ConfName("ipv6", "eth0.100", "ignore_routes_with_linkdown"): "0",
		sysctl.ConfName("ipv6", "eth0.100", "forwarding"):                  "1",
		sysctl.ConfName("ipv6", "eth0.100", "accept_ra"):                   "1",
		sysctl.ConfName("ipv6", "s1", "accept_ra"):                         "2",
		sysctl.ConfName("ipv6", "s4", "forwarding"):                        "on?",
		sysctl.ConfName("ipv6", "s4", "accept_ra"):                         "0",
	}
	devs := map[int]string{2: "eth0.100", 3: "s1", 4: "s4"}
	var ign [2]bool
	ignDev := map[[2]int]bool{{0, 9}: true} // stale: cleared
	conf := map[int]devConf{9: {}}
	applySysctls(vals, devs, &ign, ignDev, conf)
	if ign != [2]bool{false, true} {
		t.Errorf("all: %v, want v4 false v6 true", ign)
	}
	if len(ignDev) != 1 || !ignDev[[2]int{0, 2}] {
		t.Errorf("per device: %v, want only ipv4 of ifindex 2", ignDev)
	}
	if c := conf[2]; c.Forwarding != 1 || c.AcceptRA != 1 || c.AcceptsRAs() {
		t.Errorf("eth0.100: %+v, want forwarding 1 accept_ra 1 (RAs ignored)", c)
	}
	if c := conf[3]; c.Forwarding != -1 || c.AcceptRA != 2 {
		t.Errorf("s1: %+v, want forwarding unknown (-1), accept_ra 2", c)
	}
	if c := conf[4]; c.Forwarding != -1 || c.AcceptRA != 0 {
		t.Errorf("s4: %+v, want forwarding unknown (unparsable), accept_ra 0", c)
	}
	if _, ok := conf[9]; ok || len(conf) != 3 {
		t.Errorf("conf %v: stale device kept", conf)
	}
}

// TestCollectorMetrics: a check is exported as success 1/0 and its
// duration, per namespace, node_exporter's way.
func TestCollectorMetrics(t *testing.T) {
	m := NewMetrics()
	m.check("a", report.Check{Name: "counters", Status: report.Ran, DurationMS: 1500})
	m.check("a", report.Check{Name: "sysctls", Status: report.Failed, Detail: "setns: EPERM"})
	m.check("a", report.Check{Name: "listeners", Status: report.Skipped})
	d := &daemon{m: m}
	for name, want := range map[string]float64{"counters": 1, "sysctls": 0, "listeners": 0} {
		if v, ok := d.value("synscope_collector_success", map[string]string{"netns": "a", "collector": name}); !ok || v != want {
			t.Errorf("success{%s} = %v (%v), want %v", name, v, ok, want)
		}
	}
	if v, _ := d.value("synscope_collector_duration_seconds", map[string]string{"netns": "a", "collector": "counters"}); v != 1.5 {
		t.Errorf("duration %v, want 1.5", v)
	}
	m.dropNetns("a")
	if _, ok := d.value("synscope_collector_success", map[string]string{"netns": "a"}); ok {
		t.Error("series of a dropped namespace remain")
	}
}

// TestJudgedSysctls: judgedSysctls names exactly what applySysctls reads
// (watch reads only those, in every namespace each interval): with every
// named value at 1 each setting is known and on, and leaving out any one
// name changes what applySysctls concludes.
func TestJudgedSysctls(t *testing.T) {
	devs := map[int]string{2: "eth0", 5: "wan0"}
	names := judgedSysctls([]string{"eth0", "wan0"})
	type out struct {
		ign    [2]bool
		ignDev map[[2]int]bool
		conf   map[int]devConf
	}
	apply := func(skip string) out {
		vals := map[string]string{}
		for _, n := range names {
			if n != skip {
				vals[n] = "1"
			}
		}
		o := out{ignDev: map[[2]int]bool{}, conf: map[int]devConf{}}
		applySysctls(vals, devs, &o.ign, o.ignDev, o.conf)
		return o
	}
	full := apply("")
	if full.ign != [2]bool{true, true} || len(full.ignDev) != 4 || full.conf[2] != (devConf{Forwarding: 1, AcceptRA: 1}) || full.conf[5] != (devConf{Forwarding: 1, AcceptRA: 1}) {
		t.Fatalf("every judged value 1: %+v; something applySysctls reads is not in judgedSysctls %v", full, names)
	}
	if len(names) != 2+4*len(devs) {
		t.Errorf("%d names for %d devices: %v", len(names), len(devs), names)
	}
	for _, n := range names {
		if o := apply(n); fmt.Sprint(o) == fmt.Sprint(full) {
			t.Errorf("%s is read but changes nothing", n)
		}
	}
}

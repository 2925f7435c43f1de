package watch

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/testnet"
)

// TestLabNetworkdFight covers the "deleted again N times" stop with a real
// systemd-networkd in the namespace: networkd runs for other devices (its
// .network file matches none of the lab's), the server's s0 is configured
// by hand, and something keeps deleting the IPv4 default route (a deleter
// loop: `ip route del default` each time watch has put it back). watch
// sees networkd run but not configure s0 and repairs; after the route it
// restored was deleted again 3 times it stops for the family (refused,
// "deleted again 3 times") instead of looping: 3 re-adds for 4 deletions,
// and the route stays gone.
func TestLabNetworkdFight(t *testing.T) {
	env := labUp(t, "healthy", "nf")
	h, tg := nsHandle(t, env.Server)
	testnet.StartNetworkd(t, tg, map[string]string{"10-other.network": "[Match]\nName=other0\n\n[Network]\nDHCP=no\n"})
	opts := repairOpts(env.Server, t.TempDir())
	opts.RepairLimit = 10
	d := startWatch(t, opts)
	d.waitValue(t, 5*time.Second, "synscope_default_route_present", presentLabels(env.Server, "ipv4"), 1)

	isV4Result := func(f map[string]any) bool {
		return f["event"] == EventRepair && f["result"] != nil && f["family"] == "ipv4"
	}
	deletions := 0
	var last logLine
	for deletions < 6 {
		from := d.log.count()
		if out, err := exec.Command("ip", "-n", env.Server, "route", "del", "default").CombinedOutput(); err != nil {
			t.Fatalf("deletion %d: ip route del default: %v: %s", deletions+1, err, out)
		}
		deletions++
		last = d.log.wait(t, from, 5*time.Second, fmt.Sprintf("repair result after deletion %d", deletions), isV4Result)
		if last.f["result"] != RepairReadded {
			break
		}
	}
	if last.f["result"] != RepairRefused || !strings.Contains(fmt.Sprint(last.f["detail"]), "deleted again 3 times") {
		t.Fatalf("after %d deletions the last result is %v, want refused after 3 re-deletions: %s\nlog:\n%s", deletions, last.f["result"], last.raw, d.log.dump())
	}
	readded := len(d.log.all(func(f map[string]any) bool { return isV4Result(f) && f["result"] == RepairReadded }))
	if deletions != 4 || readded != 3 {
		t.Errorf("%d deletions, %d re-adds; want 4 and 3", deletions, readded)
	}
	owner := d.log.all(func(f map[string]any) bool { return f["event"] == EventRepair && f["action"] == "owner" })
	if len(owner) == 0 || !strings.Contains(fmt.Sprint(owner[0].f["detail"]), "systemd-networkd runs in the namespace") ||
		!strings.Contains(fmt.Sprint(owner[0].f["detail"]), "it does not configure the device: watch repairs") {
		t.Errorf("no owner step naming networkd as running but not configuring s0; log:\n%s", d.log.dump())
	}
	time.Sleep(time.Second)
	if n := defaultCount(t, h, unix.AF_INET); n != 0 {
		t.Errorf("%d IPv4 default routes after watch stopped, want 0", n)
	}
}

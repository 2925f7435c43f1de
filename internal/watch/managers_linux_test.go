package watch

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/testnet"
)

// delDefaults removes the lab's own default routes (proto boot): a
// network manager brings its own.
func delDefaults(t *testing.T, h *netlink.Handle) {
	t.Helper()
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		for defaultCount(t, h, fam) > 0 {
			r := defaultRoute(t, h, fam)
			if err := h.RouteDel(&r); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// waitDefaults waits until both families have a default route of
// protocol proto, bounded.
func waitDefaults(t *testing.T, h *netlink.Handle, proto netlink.RouteProtocol, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n := 0
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			if defaultCount(t, h, fam) == 1 && defaultRoute(t, h, fam).Protocol == proto {
				n++
			}
		}
		if n == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no default routes of protocol %d in both families after %s", proto, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bounceLink sets the device down and, gap later, up again: an interface
// reset.
func bounceLink(t *testing.T, h *netlink.Handle, name string, gap time.Duration) {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	time.Sleep(gap)
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
}

// assertOneDefaultEach: exactly one default route per family, none of
// watch's own.
func assertOneDefaultEach(t *testing.T, h *netlink.Handle, what string) {
	t.Helper()
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if n := defaultCount(t, h, fam); n != 1 {
			t.Errorf("%s: %d default routes of family %d, want 1", what, n, fam)
		} else if r := defaultRoute(t, h, fam); r.Protocol == ProtoSynscope {
			t.Errorf("%s: watch added a route of its own: %+v", what, r)
		}
	}
}

// TestLabNetworkdReset: the lab server managed by a real systemd-networkd
// (Debian's, started by the test in the server's namespace). watch
// --repair --hold-down 2s; the server's interface set down and up a
// second later, 3 times: each time both routes are lost (link-down) and
// restored by networkd, and the route-restored line names
// systemd-networkd and its process; watch adds no route of its own, never
// two default routes, and the client connects over both families. Then
// a route deleted by a program while networkd runs and configures the
// device (networkd does not re-add it): watch leaves it to networkd and
// says how to ask it (`networkctl reconfigure s0`), adding nothing. Then
// networkd stopped: a route lost now is watch's to repair.
func TestLabNetworkdReset(t *testing.T) {
	env := labUp(t, "healthy", "nd")
	h, tg := nsHandle(t, env.Server)
	testnet.Sysctl(t, tg, "net/ipv6/conf/s0/accept_dad", "1")
	delDefaults(t, h)
	nd := testnet.StartNetworkd(t, tg, map[string]string{"10-s0.network": testnet.LabServerNetwork(lab.ServerV4, lab.ServerV6, lab.RouterS4, lab.RouterS6)})
	waitDefaults(t, h, unix.RTPROT_STATIC, 15*time.Second)

	opts := repairOpts(env.Server, t.TempDir())
	opts.HoldDown = 2 * time.Second
	opts.Interval = 15 * time.Second
	opts.RSWait = 0
	d := startWatch(t, opts)
	for _, fam := range []string{"ipv4", "ipv6"} {
		d.waitValue(t, 5*time.Second, "synscope_default_route_present", presentLabels(env.Server, fam), 1)
	}
	budget := opts.HoldDown + 10*time.Second
	proc := fmt.Sprintf("systemd-network[%d]", nd.PID())
	for round := 1; round <= 3; round++ {
		from := d.log.count()
		bounceLink(t, h, "s0", time.Second)
		if _, err := connectBoth(t, env, time.Now().Add(budget)); err != nil {
			t.Fatalf("round %d: %v; log:\n%s", round, err, d.log.dump())
		}
		for _, fam := range []string{"ipv4", "ipv6"} {
			l := d.log.wait(t, from, time.Second, "route-lost "+fam, eventIs(EventRouteLost, env.Server, fam))
			if l.f["reason"] != string(ReasonLinkDown) {
				t.Errorf("round %d %s: lost with reason %v, want link-down: %s", round, fam, l.f["reason"], l.raw)
			}
			r := d.log.wait(t, from, 2*time.Second, "route-restored "+fam, eventIs(EventRouteRestored, env.Server, fam))
			rt, _ := r.f["route"].(map[string]any)
			p := fmt.Sprint(r.f["process"]) // the sender, then its parents
			if r.f["restored_by"] != MgrNetworkd || (p != proc && !strings.HasPrefix(p, proc+" ← ")) || rt["protocol"] != "static" {
				t.Errorf("round %d %s: restored_by %v process %v protocol %v, want systemd-networkd, %s, static: %s",
					round, fam, r.f["restored_by"], r.f["process"], rt["protocol"], proc, r.raw)
			}
		}
		time.Sleep(opts.HoldDown + 500*time.Millisecond) // a repair not cancelled would act now
		assertOneDefaultEach(t, h, fmt.Sprintf("round %d", round))
	}
	if n := len(d.log.all(func(f map[string]any) bool { return f["event"] == EventRepair && f["action"] == "readded" })); n != 0 {
		t.Fatalf("watch re-added %d routes networkd restored; log:\n%s", n, d.log.dump())
	}

	// A route networkd does not put back by itself: left to networkd.
	from := d.log.count()
	if out, err := exec.Command("ip", "-n", env.Server, "route", "del", "default").CombinedOutput(); err != nil {
		t.Fatalf("ip route del: %v: %s", err, out)
	}
	l := d.log.wait(t, from, opts.HoldDown+5*time.Second, "repair left to networkd",
		func(f map[string]any) bool { return f["event"] == EventRepair && f["result"] == RepairLeftToOwner })
	for _, want := range []string{"owned by systemd-networkd", "ADMIN_STATE=configured", "run `networkctl reconfigure s0`"} {
		if !strings.Contains(fmt.Sprint(l.f["detail"]), want) {
			t.Errorf("left-to-owner line lacks %q: %s", want, l.raw)
		}
	}
	time.Sleep(time.Second)
	if n := defaultCount(t, h, unix.AF_INET); n != 0 {
		t.Fatalf("%d IPv4 default routes after watch left the repair to networkd, want 0 (watch added one?)", n)
	}

	// networkd stopped: nothing owns the device any more, watch repairs.
	nd.Stop()
	from = d.log.count()
	r := defaultRoute(t, h, unix.AF_INET6)
	if err := h.RouteDel(&r); err != nil {
		t.Fatal(err)
	}
	d.log.wait(t, from, opts.HoldDown+10*time.Second, "IPv6 re-added by watch",
		func(f map[string]any) bool {
			return f["event"] == EventRepair && f["result"] == RepairReadded && f["family"] == "ipv6"
		})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := env.Dial(ctx, 6, 2*time.Second); err != nil {
		t.Fatalf("after watch's repair with networkd stopped: %v", err)
	}
	if n := defaultCount(t, h, unix.AF_INET6); n != 1 {
		t.Errorf("%d IPv6 default routes after the repair, want 1", n)
	}
}

// serverInterfaces is the lab server's configuration as an ifupdown
// interfaces(5) file.
var serverInterfaces = fmt.Sprintf(`iface s0 inet static
	address %s/24
	gateway %s

iface s0 inet6 static
	address %s/64
	gateway %s
	dad-attempts 0
`, lab.ServerV4, lab.RouterS4, lab.ServerV6, lab.RouterS6)

// ifupdown runs Debian's ifup or ifdown in the server's namespace with
// the test's interfaces file and state directory, hook scripts off.
func ifupdown(t *testing.T, ns, cmd, file, state string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, cmd, "-i", file, "--state-dir", state, "--no-scripts", "s0").CombinedOutput()
	if err != nil {
		t.Fatalf("%s s0: %v\n%s", cmd, err, out)
	}
}

// TestLabIfupdown: the lab server configured by Debian's ifupdown
// (ifup/ifdown with an interfaces file of the test's own). watch --repair
// --hold-down 2s; `ifdown s0`, then `ifup s0` a second later, 3 times:
// each loss is logged with its reason, the routes are back (ifup puts
// them back; a repair would do if it did not) with one default route per
// family, and the client connects over both.
func TestLabIfupdown(t *testing.T) {
	if _, err := exec.LookPath("ifup"); err != nil {
		t.Fatal("ifup is not installed (Debian package ifupdown; .ci/run installs it)")
	}
	env := labUp(t, "healthy", "iu")
	h, _ := nsHandle(t, env.Server)
	dir := t.TempDir()
	file, state := filepath.Join(dir, "interfaces"), filepath.Join(dir, "state")
	if err := os.WriteFile(file, []byte(serverInterfaces), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	// ifup configures the device from nothing, as at boot.
	delDefaults(t, h)
	link, err := h.LinkByName("s0")
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		as, err := h.AddrList(link, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.IP.IsGlobalUnicast() {
				if err := h.AddrDel(link, &a); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	ifupdown(t, env.Server, "ifup", file, state)
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "exec", env.Server, "ifdown", "-i", file, "--state-dir", state, "--no-scripts", "s0").Run()
	})
	waitDefaults(t, h, unix.RTPROT_BOOT, 5*time.Second)

	opts := repairOpts(env.Server, t.TempDir())
	opts.HoldDown = 2 * time.Second
	opts.Interval = 15 * time.Second
	d := startWatch(t, opts)
	for _, fam := range []string{"ipv4", "ipv6"} {
		d.waitValue(t, 5*time.Second, "synscope_default_route_present", presentLabels(env.Server, fam), 1)
	}
	budget := opts.HoldDown + 10*time.Second
	for round := 1; round <= 3; round++ {
		from := d.log.count()
		ifupdown(t, env.Server, "ifdown", file, state)
		for _, fam := range []string{"ipv4", "ipv6"} {
			l := d.log.wait(t, from, 3*time.Second, "route-lost "+fam, eventIs(EventRouteLost, env.Server, fam))
			if r := fmt.Sprint(l.f["reason"]); r == "" || r == string(ReasonUnknown) {
				t.Errorf("round %d %s: loss without a reason: %s", round, fam, l.raw)
			}
			if round == 1 {
				t.Logf("ifdown, %s: reason %v, detail %v, process %v", fam, l.f["reason"], l.f["detail"], l.f["process"])
			}
		}
		time.Sleep(time.Second)
		ifupdown(t, env.Server, "ifup", file, state)
		if _, err := connectBoth(t, env, time.Now().Add(budget)); err != nil {
			t.Fatalf("round %d: %v; log:\n%s", round, err, d.log.dump())
		}
		for _, fam := range []string{"ipv4", "ipv6"} {
			r := d.log.wait(t, from, 2*time.Second, "route-restored "+fam, eventIs(EventRouteRestored, env.Server, fam))
			if round == 1 {
				t.Logf("ifup, %s: restored_by %v, process %v", fam, r.f["restored_by"], r.f["process"])
			}
			d.waitValue(t, time.Second, "synscope_default_route_present", presentLabels(env.Server, fam), 1)
		}
		time.Sleep(opts.HoldDown + 500*time.Millisecond)
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			if n := defaultCount(t, h, fam); n != 1 {
				t.Errorf("round %d: %d default routes of family %d, want 1", round, n, fam)
			}
		}
	}
}

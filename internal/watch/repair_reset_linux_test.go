package watch

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// resetRounds is how many interface resets TestLabRepairLinkReset makes
// (issue 18: 20 of 20). SYNSCOPE_RESET_ROUNDS may raise it, never lower it.
func resetRounds(t *testing.T) int {
	n := 20
	if s := os.Getenv("SYNSCOPE_RESET_ROUNDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < n {
			t.Fatalf("SYNSCOPE_RESET_ROUNDS=%q: want a number >= %d", s, n)
		}
		n = v
	}
	return n
}

// resetServer prepares the lab's server for the seed's story: duplicate
// address detection on (the lab turns it off; a real host has it, and it
// is what makes the link-local address tentative for a moment after the
// link comes up) and the addresses kept across link down, as a network
// manager or SLAAC gives them back, so only the static default routes are
// gone after a reset, and nothing puts them back but watch.
func resetServer(t *testing.T, env *lab.Env) (*netlink.Handle, *netns.Target) {
	t.Helper()
	h, tg := nsHandle(t, env.Server)
	for _, p := range []string{"net/ipv6/conf/s0/accept_dad", "net/ipv6/conf/s0/keep_addr_on_down"} {
		testnet.Sysctl(t, tg, p, "1")
	}
	return h, tg
}

// defaultCount counts the main-table default routes of a family.
func defaultCount(t *testing.T, h *netlink.Handle, fam int) int {
	t.Helper()
	rs, err := h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rs {
		if ones, _ := maskOnes(r); ones == 0 {
			n++
		}
	}
	return n
}

// connectBoth dials the server over both families until both connect or
// the deadline passes; it returns when each first connected.
func connectBoth(t *testing.T, env *lab.Env, deadline time.Time) (map[int]time.Time, error) {
	t.Helper()
	ok := map[int]time.Time{}
	var last error
	for len(ok) < 2 && time.Now().Before(deadline) {
		for _, v := range []int{4, 6} {
			if _, done := ok[v]; done {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			err := env.Dial(ctx, v, 500*time.Millisecond)
			cancel()
			if err == nil {
				ok[v] = time.Now()
			} else {
				last = err
			}
		}
		if len(ok) < 2 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(ok) < 2 {
		return ok, fmt.Errorf("connected over %v only: %v", ok, last)
	}
	return ok, nil
}

// TestLabRepairLinkReset is the seed's story, issue 18's headline case:
// `watch --repair --hold-down 2s`, the server's interface set down and up
// a second later (both static default routes flushed, nothing puts them
// back; the IPv6 addresses are tentative for a moment after the link comes
// up). Both default routes must be restored by watch and the client
// connect over IPv4 and IPv6 within hold-down + 10 s, in every one of 20
// resets.
func TestLabRepairLinkReset(t *testing.T) {
	env := labUp(t, "healthy", "lr")
	h, _ := resetServer(t, env)
	opts := repairOpts(env.Server, t.TempDir())
	opts.HoldDown = 2 * time.Second
	opts.Interval = 15 * time.Second // the default: retries must not wait for it
	opts.RSWait = 0
	rounds := resetRounds(t)
	opts.RepairLimit = 2 * rounds
	d := startWatch(t, opts)
	budget := opts.HoldDown + 10*time.Second
	pass := 0
	var slowest time.Duration
	for round := 1; round <= rounds; round++ {
		link, err := h.LinkByName("s0")
		if err != nil {
			t.Fatal(err)
		}
		from := d.log.count()
		if err := h.LinkSetDown(link); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if err := h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		at, err := connectBoth(t, env, up.Add(budget))
		if err != nil {
			t.Errorf("round %d: %v; log:\n%s", round, err, d.log.dump())
			break
		}
		for _, fam := range []string{"ipv4", "ipv6"} {
			d.log.wait(t, from, time.Second, "route-restored "+fam, eventIs(EventRouteRestored, env.Server, fam))
			d.waitValue(t, time.Second, "synscope_default_route_present", presentLabels(env.Server, fam), 1)
		}
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			if n := defaultCount(t, h, fam); n != 1 {
				t.Errorf("round %d: %d default routes of family %d, want 1", round, n, fam)
			}
		}
		for _, v := range []int{4, 6} {
			if lat := at[v].Sub(up); lat > slowest {
				slowest = lat
			}
		}
		pass++
	}
	t.Logf("%d/%d resets: both default routes restored and the client connected over IPv4 and IPv6; slowest %s after link up (budget %s)",
		pass, rounds, slowest.Round(time.Millisecond), budget)
	if pass != rounds {
		t.Fatalf("%d/%d passes", pass, rounds)
	}
	// The case of the seed: an IPv6 try met a tentative address and was
	// retried (without it the test would not test the headline case).
	retries := d.log.all(func(f map[string]any) bool {
		return f["event"] == EventRepair && f["action"] == "retry" && f["family"] == "ipv6" &&
			strings.Contains(fmt.Sprint(f["detail"]), "tentative")
	})
	if len(retries) == 0 {
		t.Fatalf("no IPv6 try met a tentative address in %d resets: the seed's case was not exercised; log:\n%s", rounds, d.log.dump())
	}
	t.Logf("%d IPv6 tries retried for a tentative address, e.g. %s", len(retries), retries[0].f["detail"])
}

// TestLabRepairCarrierReturn: the router's end of the server's veth goes
// down and comes back a second later (carrier loss and return). With
// ignore_routes_with_linkdown=1 lookups skip the link-down routes, so both
// are lost (carrier-lost) and a repair is pending; the kernel keeps them
// and they work again when the carrier returns: watch must see them back,
// write nothing (no second default route), and the client connects over
// both families within hold-down + 10 s.
func TestLabRepairCarrierReturn(t *testing.T) {
	env := labUp(t, "healthy", "cr")
	h, tg := resetServer(t, env)
	testnet.Sysctl(t, tg, "net/ipv4/conf/s0/ignore_routes_with_linkdown", "1")
	testnet.Sysctl(t, tg, "net/ipv6/conf/all/ignore_routes_with_linkdown", "1")
	hr, rt := nsHandle(t, env.Router)
	// The router keeps its IPv6 address across its end going down, so
	// what is tested is the server's side.
	testnet.Sysctl(t, rt, "net/ipv6/conf/rs0/keep_addr_on_down", "1")
	opts := repairOpts(env.Server, t.TempDir())
	opts.HoldDown = 2 * time.Second
	opts.Interval = 15 * time.Second
	d := startWatch(t, opts)
	time.Sleep(200 * time.Millisecond)
	budget := opts.HoldDown + 10*time.Second
	for round := 1; round <= 3; round++ {
		peer, err := hr.LinkByName("rs0")
		if err != nil {
			t.Fatal(err)
		}
		from := d.log.count()
		if err := hr.LinkSetDown(peer); err != nil {
			t.Fatal(err)
		}
		for _, fam := range []string{"ipv4", "ipv6"} {
			l := d.log.wait(t, from, 3*time.Second, "route-lost "+fam, eventIs(EventRouteLost, env.Server, fam))
			if l.f["reason"] != string(ReasonCarrierLost) {
				t.Errorf("round %d %s: reason %v, want carrier-lost", round, fam, l.f["reason"])
			}
		}
		time.Sleep(time.Second)
		if err := hr.LinkSetUp(peer); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		if _, err := connectBoth(t, env, up.Add(budget)); err != nil {
			t.Fatalf("round %d: %v; log:\n%s", round, err, d.log.dump())
		}
		for _, fam := range []string{"ipv4", "ipv6"} {
			d.log.wait(t, from, time.Second, "route-restored "+fam, eventIs(EventRouteRestored, env.Server, fam))
			d.waitValue(t, time.Second, "synscope_default_route_present", presentLabels(env.Server, fam), 1)
		}
		time.Sleep(opts.HoldDown) // a repair that was not cancelled would act now
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			if n := defaultCount(t, h, fam); n != 1 {
				t.Errorf("round %d: %d default routes of family %d, want 1", round, n, fam)
			}
			if r := defaultRoute(t, h, fam); r.Protocol == ProtoSynscope {
				t.Errorf("round %d: watch wrote a route the kernel kept: %+v", round, r)
			}
		}
	}
	if n := len(d.log.all(func(f map[string]any) bool { return f["event"] == EventRepair && f["action"] == "readded" })); n != 0 {
		t.Errorf("%d re-adds for routes the kernel kept", n)
	}
}

// TestLabRepairAddressReturn: the server's addresses of both families are
// removed and given back a second later, as a DHCP client or a network
// manager does on renewal. The kernel flushes the IPv4 default route with
// its address and nothing puts it back: watch re-adds it once the address
// is back (a try before that finds no source address to ask the gateway
// from, and is retried); the client connects over both families within
// hold-down + 10 s.
func TestLabRepairAddressReturn(t *testing.T) {
	env := labUp(t, "healthy", "ar")
	h, _ := resetServer(t, env)
	opts := repairOpts(env.Server, t.TempDir())
	opts.HoldDown = 2 * time.Second
	opts.Interval = 15 * time.Second
	opts.RepairLimit = 10
	d := startWatch(t, opts)
	budget := opts.HoldDown + 10*time.Second
	// The last gap outlasts the hold-down: the first try finds no address
	// to ask the gateway from and must be retried, not given up.
	gaps := []time.Duration{time.Second, time.Second, opts.HoldDown + 1500*time.Millisecond}
	for i, gap := range gaps {
		round := i + 1
		link, err := h.LinkByName("s0")
		if err != nil {
			t.Fatal(err)
		}
		var addrs []netlink.Addr
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			as, err := h.AddrList(link, fam)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				if a.IP.IsGlobalUnicast() {
					addrs = append(addrs, a)
				}
			}
		}
		if len(addrs) != 2 {
			t.Fatalf("server addresses %v, want one of each family", addrs)
		}
		from := d.log.count()
		for _, a := range addrs {
			if err := h.AddrDel(link, &a); err != nil {
				t.Fatal(err)
			}
		}
		l := d.log.wait(t, from, 3*time.Second, "route-lost ipv4", eventIs(EventRouteLost, env.Server, "ipv4"))
		if l.f["reason"] != string(ReasonAddressRemoved) {
			t.Errorf("round %d: reason %v, want address-removed", round, l.f["reason"])
		}
		time.Sleep(gap)
		for _, a := range addrs {
			a := a
			a.Flags, a.Scope = 0, 0
			if err := h.AddrAdd(link, &a); err != nil {
				t.Fatal(err)
			}
		}
		back := time.Now()
		if _, err := connectBoth(t, env, back.Add(budget)); err != nil {
			t.Fatalf("round %d: %v; log:\n%s", round, err, d.log.dump())
		}
		rl := d.log.wait(t, from, time.Second, "route-restored ipv4", eventIs(EventRouteRestored, env.Server, "ipv4"))
		if rl.f["restored_by"] != "synscope" {
			t.Errorf("round %d: restored by %v, want synscope: %s", round, rl.f["restored_by"], rl.raw)
		}
		if gap > opts.HoldDown && len(d.log.all(func(f map[string]any) bool {
			return f["event"] == EventRepair && f["action"] == "retry" && strings.Contains(fmt.Sprint(f["detail"]), "no IPv4 address")
		})) == 0 {
			t.Errorf("round %d: no retry logged while the address was away; log:\n%s", round, d.log.dump())
		}
		for _, fam := range []string{"ipv4", "ipv6"} {
			d.waitValue(t, time.Second, "synscope_default_route_present", presentLabels(env.Server, fam), 1)
		}
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			if n := defaultCount(t, h, fam); n != 1 {
				t.Errorf("round %d: %d default routes of family %d, want 1", round, n, fam)
			}
		}
	}
	if testing.Verbose() {
		t.Logf("log:\n%s", d.log.dump())
	}
}

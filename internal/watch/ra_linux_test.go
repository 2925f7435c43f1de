package watch

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/testnet"
)

// labRadvd is radvd's configuration for the lab router: advertise on rs0
// (towards the server) with a 30s router lifetime every 3-4s.
const labRadvd = `interface rs0 {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	AdvDefaultLifetime 30;
	prefix fd77:2::/64 { AdvOnLink on; AdvAutonomous off; };
};
`

// TestLabRAForwarding: the server learns its IPv6 default route from a
// real radvd (accept_ra=1); with forwarding on while the route is still
// there (accept_ra=2, then 1) watch warns route-at-risk; switching
// forwarding on with accept_ra=1 purges the route and watch logs route-lost
// with reason forwarding-enabled within 100 ms.
func TestLabRAForwarding(t *testing.T) {
	env := labUp(t, "healthy", "ra")
	srv, err := netns.Open(env.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rtr, err := netns.Open(env.Router)
	if err != nil {
		t.Fatal(err)
	}
	defer rtr.Close()
	h, _ := nsHandle(t, env.Server)
	// The lab's static IPv6 default goes; the RA will bring one.
	rt := defaultRoute(t, h, unix.AF_INET6)
	if err := h.RouteDel(&rt); err != nil {
		t.Fatal(err)
	}
	testnet.Sysctl(t, srv, "net/ipv6/conf/all/forwarding", "0")
	testnet.Sysctl(t, srv, "net/ipv6/conf/s0/accept_ra", "1")

	d := startWatch(t, Options{Netns: []string{env.Server}, Interval: 200 * time.Millisecond, RiskLifetime: time.Second})
	from := d.log.count()
	testnet.StartRadvd(t, rtr, labRadvd)
	added := d.log.wait(t, from, 15*time.Second, "RA-learned route", func(f map[string]any) bool {
		return f["event"] == EventRouteAdded && f["family"] == "ipv6" && field(f, "route", "protocol") == "ra"
	})
	if e, _ := field(added.f, "route", "expires_seconds").(float64); e <= 0 || e > 30 {
		t.Errorf("RA route expires_seconds %v, want within the 30s lifetime", field(added.f, "route", "expires_seconds"))
	}
	ex := map[string]string{"netns": env.Server, "family": "ipv6"}
	d.waitValueAtLeast(t, time.Second, "synscope_default_route_expiry_seconds", ex, 1)

	// The switch: forwarding on while accept_ra=1 purges the RA route.
	from = d.log.count()
	t0 := time.Now()
	testnet.Sysctl(t, srv, "net/ipv6/conf/all/forwarding", "1")
	l := d.log.wait(t, from, time.Second, "route-lost forwarding-enabled", eventIs(EventRouteLost, env.Server, "ipv6"))
	if l.f["reason"] != string(ReasonForwardingEnabled) || field(l.f, "route", "protocol") != "ra" {
		t.Fatalf("want reason forwarding-enabled for the RA route: %s", l.raw)
	}
	if lat := l.at.Sub(t0); lat > detectBudget {
		t.Errorf("forwarding-enabled loss logged after %s, budget %s", lat, detectBudget)
	}
	d.waitValue(t, time.Second, "synscope_default_route_present", map[string]string{"netns": env.Server, "family": "ipv6", "table": "main"}, 0)
	if v, _ := d.value("synscope_default_route_losses_total", map[string]string{"netns": env.Server, "family": "ipv6", "reason": string(ReasonForwardingEnabled)}); v != 1 {
		t.Errorf("losses_total{forwarding-enabled} = %v, want 1", v)
	}

	// accept_ra=2 accepts RAs with forwarding on: the next RA restores the
	// route (watch says who). Then accept_ra=1 with forwarding on: the
	// route is still there but at risk, and watch warns.
	from = d.log.count()
	testnet.Sysctl(t, srv, "net/ipv6/conf/s0/accept_ra", "2")
	back := d.log.wait(t, from, 10*time.Second, "route-restored by ra", eventIs(EventRouteRestored, env.Server, "ipv6"))
	if back.f["restored_by"] != "ra" {
		t.Errorf("restored_by %v, want ra: %s", back.f["restored_by"], back.raw)
	}
	from = d.log.count()
	testnet.Sysctl(t, srv, "net/ipv6/conf/s0/accept_ra", "1")
	risk := d.log.wait(t, from, 2*time.Second, "route-at-risk", func(f map[string]any) bool {
		return f["event"] == EventRouteAtRisk && f["risk"] == RiskForwardingAcceptRA
	})
	if field(risk.f, "route", "protocol") != "ra" || risk.f["detail"] == nil {
		t.Errorf("at-risk line: %s", risk.raw)
	}
	d.waitValue(t, time.Second, "synscope_default_route_at_risk", map[string]string{"netns": env.Server, "family": "ipv6", "risk": RiskForwardingAcceptRA}, 1)
	if n := len(d.log.all(eventIs(EventRouteLost, env.Server, "ipv6"))); n != 1 {
		t.Errorf("%d IPv6 losses, want only the purge", n)
	}
	if testing.Verbose() {
		t.Logf("log:\n%s", d.log.dump())
	}
}

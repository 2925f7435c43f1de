package watch

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl/rtnl"
)

// routeOf keeps default routes only (dst_len 0 and src_len 0: a
// source-specific default route is not the namespace's default), takes the
// first hop of a multipath route with its flags, and turns the lifetime
// left into an instant.
func TestRouteOf(t *testing.T) {
	now := time.Unix(1000, 0)
	gw := netip.MustParseAddr("fe80::1")
	base := rtnl.Route{Family: unix.AF_INET6, Table: 254, Protocol: unix.RTPROT_RA, Type: unix.RTN_UNICAST,
		Gateway: gw, Oif: 3, Priority: 1024, HasExpiry: true, Expires: 30 * time.Second}
	r, ok := routeOf(base, now)
	if !ok || r.Family != 6 || r.Gateway != gw || r.Ifindex != 3 || r.Metric != 1024 || !r.HasExpiry || !r.ExpiresAt.Equal(now.Add(30*time.Second)) {
		t.Errorf("RA default: ok=%v %+v", ok, r)
	}
	for name, m := range map[string]rtnl.Route{
		"prefix route":       func() rtnl.Route { x := base; x.DstLen = 64; return x }(),
		"source-specific":    func() rtnl.Route { x := base; x.SrcLen = 64; return x }(),
		"not an inet family": func() rtnl.Route { x := base; x.Family = unix.AF_BRIDGE; return x }(),
	} {
		if _, ok := routeOf(m, now); ok {
			t.Errorf("%s kept as a default route", name)
		}
	}
	mp := rtnl.Route{Family: unix.AF_INET, Table: 254, Type: unix.RTN_UNICAST, Hops: []rtnl.Hop{
		{Gateway: netip.MustParseAddr("10.0.0.1"), Ifindex: 4, Flags: unix.RTNH_F_LINKDOWN},
		{Gateway: netip.MustParseAddr("10.0.0.2"), Ifindex: 5},
	}}
	r, ok = routeOf(mp, now)
	if !ok || !r.Multipath || r.Gateway != netip.MustParseAddr("10.0.0.1") || r.Ifindex != 4 || r.Flags&rtnhLinkdown == 0 {
		t.Errorf("multipath: %+v", r)
	}
	if r.Usable(now, true) || !r.Usable(now, false) {
		t.Error("a link-down first hop must be unusable exactly where link-down routes are ignored")
	}
}

package watch

import (
	"time"

	"github.com/synscope/synscope/internal/routeloss"
)

// Risk kinds (label "risk" of synscope_default_route_at_risk): routeloss's,
// which doctor reports too.
const (
	RiskForwardingAcceptRA = routeloss.RiskForwardingAcceptRA
	RiskLifetimeLow        = routeloss.RiskLifetimeLow
	RiskGatewayFailed      = routeloss.RiskGatewayFailed
	// RiskCarrierLost is watch's own: the route's device has no carrier
	// (the kernel flagged the route link-down, in place, with no route
	// news) but ignore_routes_with_linkdown=0, so route lookups still
	// choose it and what it carries is dropped at the device. Where
	// ignore_routes_with_linkdown=1 lookups skip it: that is a loss
	// (reason carrier-lost), not a risk.
	RiskCarrierLost = "carrier-lost"
)

var riskKinds = append(append([]string(nil), routeloss.RiskKinds...), RiskCarrierLost)

// devConf is a device's IPv6 forwarding and accept_ra (-1 when unread).
type devConf = routeloss.Conf

// nudFailed is NUD_FAILED.
const nudFailed = 0x20

// risk is one route at risk.
type risk struct {
	Kind   string
	Route  Route
	Detail string
}

// assessRisks finds the usable default routes at risk (routeloss.Risks,
// then carrier-lost). ignoreLinkdown says where the kernel skips link-down
// routes. Pure.
func assessRisks(rs []Route, now time.Time, threshold time.Duration, conf map[int]devConf, neigh map[neighKey]uint16, ignoreLinkdown func(fam, ifindex int) bool) []risk {
	var in []routeloss.Route
	back := map[int]Route{}
	var out []risk
	for _, r := range rs {
		if !r.Usable(now, ignoreLinkdown(r.Family, r.Ifindex)) {
			continue
		}
		if r.Flags&rtnhLinkdown != 0 {
			out = append(out, risk{RiskCarrierLost, r, "the route's device has no carrier: route lookups still choose this route (ignore_routes_with_linkdown=0) and what is sent through it is dropped at the device"})
		}
		back[len(in)] = r
		in = append(in, routeloss.Route{Family: r.Family, RA: r.Protocol == protoRA, Gateway: r.Gateway,
			Ifindex: r.Ifindex, HasExpiry: r.HasExpiry, Remaining: r.Remaining(now)})
	}
	failed := func(r routeloss.Route) bool {
		st, ok := neigh[neighKey{r.Ifindex, r.Gateway}]
		return ok && st&nudFailed != 0
	}
	for _, k := range routeloss.Risks(in, conf, failed, threshold) {
		for i, x := range in {
			if x == k.Route {
				out = append(out, risk{k.Kind, back[i], k.Detail})
				break
			}
		}
	}
	return out
}

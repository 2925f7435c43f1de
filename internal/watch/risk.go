package watch

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/routeloss"
)

// Risk kinds (label "risk" of synscope_default_route_at_risk): routeloss's,
// which doctor reports too.
const (
	RiskForwardingAcceptRA = routeloss.RiskForwardingAcceptRA
	RiskLifetimeLow        = routeloss.RiskLifetimeLow
	RiskGatewayFailed      = routeloss.RiskGatewayFailed
	RiskCarrierLost        = routeloss.RiskCarrierLost
)

var riskKinds = routeloss.RiskKinds

// devConf is a device's IPv6 forwarding and accept_ra (-1 when unread).
type devConf = routeloss.Conf

// nudFailed is NUD_FAILED.
const nudFailed = unix.NUD_FAILED

// risk is one route at risk.
type risk struct {
	Kind   string
	Route  Route
	Detail string
}

// assessRisks finds the usable default routes at risk (routeloss.Risks).
// ignoreLinkdown says where the kernel skips link-down routes. Pure.
func assessRisks(rs []Route, now time.Time, threshold time.Duration, conf map[int]devConf, neigh map[neighKey]uint16, ignoreLinkdown func(fam, ifindex int) bool) []risk {
	var in []routeloss.Route
	back := map[int]Route{}
	var out []risk
	for _, r := range rs {
		if !r.Usable(now, ignoreLinkdown(r.Family, r.Ifindex)) {
			continue
		}
		back[len(in)] = r
		in = append(in, routeloss.Route{Family: r.Family, RA: r.Protocol == protoRA, Gateway: r.Gateway,
			Ifindex: r.Ifindex, HasExpiry: r.HasExpiry, Remaining: r.Remaining(now), Linkdown: r.Flags&rtnhLinkdown != 0})
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

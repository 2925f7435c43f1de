package watch

import (
	"fmt"
	"time"
)

// Risk kinds (label "risk" of synscope_default_route_at_risk).
const (
	RiskForwardingAcceptRA = "forwarding-accept-ra"
	RiskLifetimeLow        = "lifetime-low"
	RiskGatewayFailed      = "gateway-failed"
)

var riskKinds = []string{RiskForwardingAcceptRA, RiskLifetimeLow, RiskGatewayFailed}

// devConf is a device's IPv6 forwarding and accept_ra (-1 when unread).
type devConf struct {
	Forwarding int
	AcceptRA   int
}

// nudFailed is NUD_FAILED.
const nudFailed = 0x20

// risk is one route at risk.
type risk struct {
	Kind   string
	Route  Route
	Detail string
}

// assessRisks finds the usable default routes at risk. Pure.
//   - forwarding-accept-ra: an RA-learned IPv6 default route on a device
//     with forwarding=1 and accept_ra=1: RAs are ignored now, so the route
//     expires, and the next write of forwarding=1 purges it at once.
//   - lifetime-low: a route with a lifetime below threshold.
//   - gateway-failed: the gateway's neighbour entry on the device is FAILED.
func assessRisks(rs []Route, now time.Time, threshold time.Duration, conf map[int]devConf, neigh map[neighKey]uint16) []risk {
	var out []risk
	for _, r := range rs {
		if !r.Usable(now, false) {
			continue
		}
		if r.Family == 6 && r.Protocol == protoRA {
			if c, ok := conf[r.Ifindex]; ok && c.Forwarding == 1 && c.AcceptRA == 1 {
				d := "IPv6 forwarding is on and accept_ra=1 on the route's device: router advertisements are ignored, so this RA-learned route will not be refreshed, and switching forwarding on again purges it (set accept_ra=2 to keep it)"
				if r.HasExpiry {
					d += fmt.Sprintf("; it expires in %.0fs", r.Remaining(now).Seconds())
				}
				out = append(out, risk{RiskForwardingAcceptRA, r, d})
			}
		}
		if r.HasExpiry && threshold > 0 && r.Remaining(now) < threshold {
			out = append(out, risk{RiskLifetimeLow, r, fmt.Sprintf("the route expires in %.1fs (threshold %s) and no refresh has been seen", r.Remaining(now).Seconds(), threshold)})
		}
		if r.Gateway.IsValid() {
			if st, ok := neigh[neighKey{r.Ifindex, r.Gateway}]; ok && st&nudFailed != 0 {
				out = append(out, risk{RiskGatewayFailed, r, "the gateway's neighbour entry is FAILED: it does not answer " + arpOrND(r.Family)})
			}
		}
	}
	return out
}

func arpOrND(fam int) string {
	if fam == 6 {
		return "neighbour discovery"
	}
	return "ARP"
}

// Package routeloss knows how a default route disappears and how to see it
// coming (shared/reference/route-loss.md): the names of the reasons, the
// configurations that put a route at risk, and what a host still shows
// after the loss. watch applies it to the kernel's notifications as they
// arrive; doctor to one snapshot, to say why the route a SYN-ACK needed is
// missing. Pure functions: callers read the kernel.
package routeloss

import (
	"fmt"
	"net/netip"
	"time"
)

// Reason says why a default route was lost. The values are stable: they
// are log fields, metric label values and doctor's evidence.
type Reason string

// The reasons.
const (
	DeletedByProcess  Reason = "deleted-by-process"
	DeletedByProgram  Reason = "deleted-by-program"
	ForwardingEnabled Reason = "forwarding-enabled"
	LinkDeleted       Reason = "link-deleted"
	LinkDown          Reason = "link-down"
	CarrierLost       Reason = "carrier-lost"
	AddressRemoved    Reason = "address-removed"
	RAExpired         Reason = "ra-expired"
	Unknown           Reason = "unknown"
)

// Reasons lists every reason.
var Reasons = []Reason{
	DeletedByProcess, DeletedByProgram, ForwardingEnabled, LinkDeleted, LinkDown,
	CarrierLost, AddressRemoved, RAExpired, Unknown,
}

// Risk kinds.
const (
	RiskForwardingAcceptRA = "forwarding-accept-ra"
	RiskLifetimeLow        = "lifetime-low"
	RiskGatewayFailed      = "gateway-failed"
	// RiskCarrierLost: the route's device has no carrier (the kernel flags
	// the route link-down in place, with no route news) while
	// ignore_routes_with_linkdown=0, so lookups still choose it and what
	// it carries is dropped at the device. Where the setting is 1 lookups
	// skip the route: that is a loss (reason carrier-lost), not a risk.
	RiskCarrierLost = "carrier-lost"
)

// RiskKinds lists every risk kind.
var RiskKinds = []string{RiskForwardingAcceptRA, RiskLifetimeLow, RiskGatewayFailed, RiskCarrierLost}

// Conf is a device's IPv6 forwarding and accept_ra; -1 when unread.
type Conf struct {
	Forwarding int
	AcceptRA   int
}

// AcceptsRAs reports whether the kernel takes router advertisements on a
// device with this configuration (accept_ra=1 only while forwarding is
// off; accept_ra=2 always), and false when unknown.
func (c Conf) AcceptsRAs() bool {
	return c.AcceptRA == 2 || (c.AcceptRA == 1 && c.Forwarding == 0)
}

// Route is a default route as either caller knows it.
type Route struct {
	Family  int // 4 or 6
	RA      bool
	Gateway netip.Addr
	Ifindex int
	// HasExpiry: the route has a lifetime; Remaining is what is left of
	// it (<= 0: expired, still listed, no longer used).
	HasExpiry bool
	Remaining time.Duration
	// Linkdown: the kernel flagged the route's next hop link-down (no
	// carrier); the caller passes only routes lookups still use.
	Linkdown bool
}

// Risk is one usable default route that is about to go.
type Risk struct {
	Kind   string
	Route  Route
	Detail string
}

// Risks finds the usable default routes at risk:
//   - forwarding-accept-ra: an RA-learned IPv6 default route on a device
//     with forwarding=1 and accept_ra=1: RAs are ignored now, so the route
//     expires, and a write of forwarding=1 purges it at once;
//   - lifetime-low: a route whose lifetime is below threshold;
//   - gateway-failed: the gateway's neighbour entry is FAILED;
//   - carrier-lost: the device has no carrier, lookups still use the route.
func Risks(rs []Route, conf map[int]Conf, gatewayFailed func(Route) bool, threshold time.Duration) []Risk {
	var out []Risk
	for _, r := range rs {
		if r.HasExpiry && r.Remaining <= 0 {
			continue
		}
		if r.Family == 6 && r.RA {
			if c, ok := conf[r.Ifindex]; ok && c.Forwarding == 1 && c.AcceptRA == 1 {
				// Whether a forwarding write purges it depends on the table's
				// has-default-router flag (set when an RA adds a router,
				// cleared by a purge), which no dump shows: say "may".
				d := "IPv6 forwarding is on and accept_ra=1 on the route's device: router advertisements are ignored, so this RA-learned route will not be refreshed, and a write of forwarding=1 may purge it sooner (set accept_ra=2 to keep it)"
				if r.HasExpiry {
					d += fmt.Sprintf("; it expires in %.0fs", r.Remaining.Seconds())
				}
				out = append(out, Risk{RiskForwardingAcceptRA, r, d})
			}
		}
		if r.HasExpiry && threshold > 0 && r.Remaining < threshold {
			out = append(out, Risk{RiskLifetimeLow, r, fmt.Sprintf("the route expires in %.1fs (threshold %s) and no refresh has been seen", r.Remaining.Seconds(), threshold)})
		}
		if r.Linkdown {
			out = append(out, Risk{RiskCarrierLost, r, "the route's device has no carrier: route lookups still choose this route (ignore_routes_with_linkdown=0) and what is sent through it is dropped at the device"})
		}
		if r.Gateway.IsValid() && gatewayFailed != nil && gatewayFailed(r) {
			out = append(out, Risk{RiskGatewayFailed, r, "the gateway's neighbour entry is FAILED: it does not answer " + arpOrND(r.Family)})
		}
	}
	return out
}

// Resolution names how a gateway of the family is resolved: "ARP" or
// "neighbour discovery".
func Resolution(fam int) string { return arpOrND(fam) }

func arpOrND(fam int) string {
	if fam == 6 {
		return "neighbour discovery"
	}
	return "ARP"
}

// Snapshot is what a host shows, after the loss, about why a default route
// of one family is missing on one device.
type Snapshot struct {
	Family int
	Dev    string
	// Conf is the device's IPv6 configuration (IPv6 only), with the "all"
	// forwarding folded in (forwarding is on if either is).
	Conf Conf
	// Expired lists RA default routes the kernel still lists after their
	// lifetime ended.
	Expired []Route
	// RAPrefix: an on-link prefix route learned from router advertisements
	// is present (the RA that brought it also brought the default route).
	RAPrefix bool
	// ResetAgo is how long ago the device was last reset, zero when
	// unknown or never: see ResetAge.
	ResetAgo time.Duration
}

// ResetAge dates a device's last reset from its addresses' ages: a
// down/up removes and re-creates the IPv6 link-local address while IPv4
// addresses stay, so a link-local address clearly younger than an address
// that survived says when the reset was. Zero when the addresses do not
// show one (a device brought up once has addresses of one age).
func ResetAge(linkLocalAge, oldestOtherAge time.Duration) time.Duration {
	const margin = 2 * time.Second
	if linkLocalAge <= 0 || oldestOtherAge <= linkLocalAge+margin {
		return 0
	}
	return linkLocalAge
}

// RecentReset is how recent an address re-creation must be to blame a
// device reset for a missing route.
const RecentReset = time.Hour

// Explanation is one reason a snapshot shows, with the evidence and what
// to do.
type Explanation struct {
	Reason Reason
	Text   string
	// AcceptRA2 is set when accepting RAs again (accept_ra=2 with
	// forwarding on) is part of the fix.
	AcceptRA2 bool
}

// Explain says why a default route is missing, from what the host shows
// now, most telling first. It may return several (an expired route on a
// device that ignores RAs: both) or none.
func Explain(s Snapshot) []Explanation {
	var out []Explanation
	if s.Family == 6 && s.Conf.Forwarding == 1 && s.Conf.AcceptRA == 1 {
		out = append(out, Explanation{Reason: ForwardingEnabled, AcceptRA2: true,
			Text: fmt.Sprintf("IPv6 forwarding is on and %s has accept_ra=1: the kernel ignores router advertisements there, and switching forwarding on purged the RA-learned default route (rt6_purge_dflt_routers); it will not come back until accept_ra=2", s.Dev)})
	}
	for _, r := range s.Expired {
		out = append(out, Explanation{Reason: RAExpired,
			Text: fmt.Sprintf("the RA-learned default route via %s expired %.0fs ago without a refresh: the kernel still lists it, lookups skip it", r.Gateway, -r.Remaining.Seconds())})
	}
	if s.Family == 6 && s.RAPrefix && len(s.Expired) == 0 && !(s.Conf.Forwarding == 1 && s.Conf.AcceptRA == 1) {
		out = append(out, Explanation{Reason: Unknown,
			Text: fmt.Sprintf("%s has an on-link prefix learned from router advertisements but no default route: the RA default route was removed (a router lifetime of 0, or deleted)", s.Dev)})
	}
	if s.ResetAgo > 0 && s.ResetAgo < RecentReset {
		out = append(out, Explanation{Reason: LinkDown,
			Text: fmt.Sprintf("%s's addresses were re-created %s ago: the device was reset (down/up) then, which flushes its routes; a static default route comes back only when whatever configured it runs again", s.Dev, s.ResetAgo.Round(time.Second))})
	}
	return out
}

package doctor

import (
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routeloss"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sysctl"
)

// usableDefaults lists the default routes of a family in table tbl that a
// lookup can use: an expired RA route is still listed, and skipped.
func (e *Evidence) usableDefaults(fam, tbl int) (usable, expired []routes.Route) {
	for _, r := range e.Routes.DefaultRoutes(af(fam), tbl) {
		if !r.Expired() {
			usable = append(usable, r)
		} else {
			expired = append(expired, r)
		}
	}
	return usable, expired
}

// v6Conf reads a device's IPv6 forwarding and accept_ra from the sysctls
// doctor collected; forwarding is on if "all" or the device says so.
func (e *Evidence) v6Conf(dev string) routeloss.Conf {
	num := func(name string) int {
		v, err := strconv.Atoi(e.sysctl(name))
		if err != nil {
			return -1
		}
		return v
	}
	c := routeloss.Conf{Forwarding: num(sysctl.ConfName("ipv6", dev, "forwarding")), AcceptRA: num(sysctl.ConfName("ipv6", dev, "accept_ra"))}
	if num("net.ipv6.conf.all.forwarding") == 1 {
		c.Forwarding = 1
	}
	return c
}

// ignoresLinkdown: whether lookups skip link-down routes on dev (the
// device's ignore_routes_with_linkdown or "all"'s, either set).
func (e *Evidence) ignoresLinkdown(fam int, dev string) bool {
	f := "ipv4"
	if fam == 6 {
		f = "ipv6"
	}
	return e.sysctl(sysctl.ConfName(f, "all", "ignore_routes_with_linkdown")) == "1" ||
		e.sysctl(sysctl.ConfName(f, dev, "ignore_routes_with_linkdown")) == "1"
}

// resetAgo dates the last reset of a device from its addresses.
func (e *Evidence) resetAgo(ifindex int) time.Duration {
	var ll, other time.Duration
	for _, a := range e.Routes.Addrs {
		if a.Ifindex != ifindex {
			continue
		}
		if a.Prefix.Addr().Is6() && a.Prefix.Addr().IsLinkLocalUnicast() {
			ll = a.Age
		} else if a.Age > other {
			other = a.Age
		}
	}
	return routeloss.ResetAge(ll, other)
}

// whyNoDefault says why the default route of fam is missing in table tbl,
// from what the host still shows (routeloss), as evidence; acceptRA2 is
// set when the fix must let the device accept RAs again.
func (e *Evidence) whyNoDefault(fam, tbl int, dev string, expired []routes.Route) (ev []report.Evidence, reason string, acceptRA2 bool) {
	s := routeloss.Snapshot{Family: fam, Dev: dev, Conf: routeloss.Conf{Forwarding: -1, AcceptRA: -1}}
	ifindex := 0
	for _, l := range e.Routes.Links {
		if l.Name == dev {
			ifindex = l.Index
		}
	}
	if fam == 6 && dev != "" {
		s.Conf = e.v6Conf(dev)
	}
	for _, r := range expired {
		if r.Protocol == "ra" {
			s.Expired = append(s.Expired, routeloss.Route{Family: fam, RA: true, Gateway: r.Gateway, Ifindex: r.Ifindex, HasExpiry: true, Remaining: r.Expires})
		}
	}
	for _, r := range e.Routes.Routes {
		if r.Family == unix.AF_INET6 && fam == 6 && r.Protocol == "ra" && !r.IsDefault() && (ifindex == 0 || r.Ifindex == ifindex) {
			s.RAPrefix = true
		}
	}
	if ifindex != 0 {
		s.ResetAgo = e.resetAgo(ifindex)
	}
	for _, x := range routeloss.Explain(s) {
		src := "routes"
		if x.Reason == routeloss.ForwardingEnabled {
			src = "sysctl"
		}
		ev = append(ev, report.Evidence{Source: src, Text: "why the default route is missing: " + x.Text,
			Data: map[string]any{"reason": string(x.Reason)}})
		if reason == "" {
			reason = string(x.Reason)
		}
		acceptRA2 = acceptRA2 || x.AcceptRA2
	}
	return ev, reason, acceptRA2
}

// ruleDefaultRouteAtRisk warns about a default route that works now and
// is about to go (routeloss.Risks): an RA-learned IPv6 default on a device
// that ignores RAs, or one whose gateway does not answer.
func ruleDefaultRouteAtRisk(e *Evidence) []report.Finding {
	if e.Routes == nil {
		return nil
	}
	conf := map[int]routeloss.Conf{}
	var rs []routeloss.Route
	byRoute := map[routeloss.Route]routes.Route{}
	for _, fam := range []int{4, 6} {
		usable, _ := e.usableDefaults(fam, unix.RT_TABLE_MAIN)
		for _, r := range usable {
			if r.Type != "unicast" && r.Type != "" {
				continue
			}
			if r.Linkdown && e.ignoresLinkdown(fam, r.Dev) {
				continue // lookups skip it: not at risk, gone (no-route-to-peer says so)
			}
			lr := routeloss.Route{Family: fam, RA: r.Protocol == "ra", Gateway: r.Gateway, Ifindex: r.Ifindex,
				HasExpiry: r.HasExpiry, Remaining: r.Expires, Linkdown: r.Linkdown}
			rs = append(rs, lr)
			byRoute[lr] = r
			if fam == 6 {
				conf[r.Ifindex] = e.v6Conf(r.Dev)
			}
		}
	}
	failed := func(r routeloss.Route) bool {
		for _, n := range e.Routes.Neighbors {
			if n.IP == r.Gateway && n.State == "FAILED" {
				return true
			}
		}
		return false
	}
	var out []report.Finding
	for _, k := range routeloss.Risks(rs, conf, failed, 0) {
		r := byRoute[k.Route]
		famName := "IPv4"
		if k.Route.Family == 6 {
			famName = "IPv6"
		}
		f := report.Finding{
			Cause: causes.DefaultRouteAtRisk, Severity: report.Warning, Confidence: report.Likely,
			Why:     "the route works now; the configuration read in the namespace removes it: " + k.Detail,
			Summary: fmt.Sprintf("the %s default route %s is at risk (%s)", famName, r.String(), k.Kind),
			Evidence: []report.Evidence{{Source: "routes", Text: fmt.Sprintf("%s: %s", r.String(), k.Detail),
				Data: map[string]any{"risk": k.Kind, "family": famName, "expires_seconds": r.Expires.Seconds()}}},
		}
		fix := &fixcmd.Script{}
		switch k.Kind {
		case routeloss.RiskForwardingAcceptRA:
			f.Evidence = append(f.Evidence, report.Evidence{Source: "sysctl",
				Text: fmt.Sprintf("%s = %d, %s = %d", sysctl.ConfName("ipv6", r.Dev, "forwarding"), conf[r.Ifindex].Forwarding, sysctl.ConfName("ipv6", r.Dev, "accept_ra"), conf[r.Ifindex].AcceptRA)})
			fix.Run(e.sysctlCmd(sysctl.ConfName("ipv6", r.Dev, "accept_ra"), 2))
			fix.Note("accept RAs with forwarding on, so the route is refreshed and not purged")
		case routeloss.RiskCarrierLost:
			fix.Note(fmt.Sprintf("bring the link on %s back (cable, peer, VF), or move the default route to a device with carrier", r.Dev))
		case routeloss.RiskGatewayFailed:
			fix.Note(fmt.Sprintf("check the link to %s, or point the default route at a working gateway", r.Gateway))
		default:
			fix.Note("check that the router still advertises")
		}
		fix.Alt("then watch for the loss as it happens", e.synscopeCmd("watch"))
		f.Fix = fix.String()
		out = append(out, f)
	}
	return out
}

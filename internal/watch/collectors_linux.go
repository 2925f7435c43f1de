package watch

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/synscope/synscope/internal/collect"
	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sockets"
	"github.com/synscope/synscope/internal/sysctl"
)

// collectDeadline bounds one collect source's read in the loop.
const collectDeadline = 5 * time.Second

// Names of watch's own reads, exported beside collect's sources in
// synscope_collector_success{collector}: the route and neighbour dumps
// carry collect's names for the same facts.
const (
	checkRoutes     = collect.Routes
	checkNeighbours = collect.Neighbours
	checkLinks      = "links"
	checkMonitor    = "monitor"
)

// collectSources runs internal/collect's sources in the namespace — the
// code doctor reads the kernel with — and records each as a check. The
// sysctls source reads the settings watch judges the default routes'
// devices with (judgedSysctls).
func (l *nsLoop) collectSources(ctx context.Context, names ...string) *collect.Sample {
	s := &collect.Sample{Routes: &routes.State{}}
	devs := l.routeDevs()
	for _, name := range devs {
		s.Routes.Links = append(s.Routes.Links, routes.Link{Name: name})
	}
	// Only what applySysctls judges with: every namespace, every interval.
	s.SysctlNames = judgedSysctls(devs)
	_ = collect.Run(ctx, l.t, s, collectDeadline, names...)
	for _, c := range s.Checks {
		l.record(c)
	}
	return s
}

// routeDevs names the devices of the default routes, by ifindex.
func (l *nsLoop) routeDevNames() map[int]string {
	devs := map[int]string{}
	for _, r := range l.routes {
		if n := l.links[r.Ifindex].Name; n != "" {
			devs[r.Ifindex] = n
		}
	}
	return devs
}

func (l *nsLoop) routeDevs() []string {
	var out []string
	for _, n := range l.routeDevNames() {
		out = append(out, n)
	}
	return out
}

// record exports a check and logs a change of its status: a read that
// starts failing says why once, and once when it works again.
func (l *nsLoop) record(c report.Check) {
	l.m.check(l.name, c)
	prev, seen := l.checks[c.Name]
	l.checks[c.Name] = c.Status
	switch {
	case c.Status != report.Ran && (!seen || prev == report.Ran):
		l.lg.Warn("collector failed", slog.String("event", EventError), slog.String("netns", l.name),
			slog.String("collector", c.Name), slog.String("status", string(c.Status)), slog.String("detail", c.Detail))
	case c.Status == report.Ran && seen && prev != report.Ran:
		l.lg.Info("collector works again", slog.String("event", EventError), slog.String("netns", l.name),
			slog.String("collector", c.Name))
	}
}

// recordRead records one of watch's own reads as a check.
func (l *nsLoop) recordRead(name string, began time.Time, err error) {
	c := report.Check{Name: name, Status: report.Ran, DurationMS: float64(time.Since(began).Microseconds()) / 1000}
	if err != nil {
		c.Status, c.Detail = report.Failed, err.Error()
	}
	l.record(c)
}

// readSysctls reads, through collect's sysctls source, what watch judges
// with: ignore_routes_with_linkdown (all and the route devices, both
// families) and IPv6 forwarding / accept_ra of the route devices. A value
// not read stays unknown (-1 in devConf); when the source failed as a
// whole the last values are kept, and its check says so.
func (l *nsLoop) readSysctls(ctx context.Context) {
	s := l.collectSources(ctx, collect.Sysctls)
	if s.Sysctl == nil {
		return
	}
	before := make(map[int]devConf, len(l.conf))
	for i, c := range l.conf {
		before[i] = c
	}
	applySysctls(s.Sysctl, l.routeDevNames(), &l.ignLD, l.ignDev, l.conf)
	// Forwarding seen switched on is news, as its netconf message is: a
	// dump can see the RA routes the kernel purged for it before that
	// message is read (the kernel queues the message first).
	noteForwardingOn(&l.hist, before, l.conf, time.Now())
}

// judgedSysctls names the settings applySysctls reads for route devices
// devs: ignore_routes_with_linkdown (all and each device, both families),
// IPv6 forwarding and accept_ra of each device.
func judgedSysctls(devs []string) []string {
	out := make([]string, 0, 2+4*len(devs))
	for _, fam := range [2]string{"ipv4", "ipv6"} {
		out = append(out, sysctl.ConfName(fam, "all", "ignore_routes_with_linkdown"))
		for _, d := range devs {
			out = append(out, sysctl.ConfName(fam, d, "ignore_routes_with_linkdown"))
		}
	}
	for _, d := range devs {
		out = append(out, sysctl.ConfName("ipv6", d, "forwarding"), sysctl.ConfName("ipv6", d, "accept_ra"))
	}
	return out
}

// applySysctls fills the link-down settings and the device configurations
// from sysctl values (keys as sysctl.ConfName). Pure.
func applySysctls(vals map[string]string, devs map[int]string, ignLD *[2]bool, ignDev map[[2]int]bool, conf map[int]devConf) {
	get := func(name string) int {
		v, ok := vals[name]
		if !ok {
			return -1
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return -1
		}
		return n
	}
	fams := [2]string{"ipv4", "ipv6"}
	for fi, fam := range fams {
		ignLD[fi] = get(sysctl.ConfName(fam, "all", "ignore_routes_with_linkdown")) == 1
	}
	clear(ignDev)
	clear(conf)
	for idx, name := range devs {
		for fi, fam := range fams {
			if get(sysctl.ConfName(fam, name, "ignore_routes_with_linkdown")) == 1 {
				ignDev[[2]int{fi, idx}] = true
			}
		}
		conf[idx] = devConf{Forwarding: get(sysctl.ConfName("ipv6", name, "forwarding")),
			AcceptRA: get(sysctl.ConfName("ipv6", name, "accept_ra"))}
	}
}

// readCountersListeners reads the counters and listeners through collect:
// SYN drops attributed by the catalog each interval, listener gauges.
func (l *nsLoop) readCountersListeners(ctx context.Context) {
	s := l.collectSources(ctx, collect.Counters, collect.Listeners)
	if s.Counters != nil {
		if l.prev != nil {
			l.m.addSynDrops(l.name, attributeDrops(counters.Diff(l.prev, s.Counters)))
		}
		l.prev = s.Counters
	}
	if s.Listeners != nil {
		l.m.setListeners(l.name, listenerSamples(s.Listeners))
	}
}

// listenerSamples turns sock_diag listeners into metric samples.
func listenerSamples(ls []sockets.Socket) []listenerSample {
	out := make([]listenerSample, 0, len(ls))
	for _, x := range ls {
		out = append(out, listenerSample{name: x.Local.String(), accept: float64(x.RecvQ), limit: float64(x.SendQ), drops: float64(x.Drops)})
	}
	return out
}

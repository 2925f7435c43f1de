package doctor

import (
	"fmt"
	"sort"
	"strings"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/sysctl"
)

// Causes one counter or setting names: rp_filter, TCP checks, IPv6 disabled, PAWS, conntrack.

func ruleRPFilter(e *Evidence) []report.Finding {
	d := int64(e.attributed().ByCause[causes.RPFilterDrop])
	if d <= 0 {
		return nil
	}
	ev := counterEv(e, "TcpExtIPReversePathFilter")
	if !e.checked(sourceSysctls) {
		ev = append(ev, report.Evidence{Source: "doctor", Text: "not checked: sysctls (" + e.whyUnchecked(sourceSysctls) + "): which rp_filter setting is strict is not known"})
	}
	var strict []string
	for k, v := range e.Sysctl {
		if strings.HasSuffix(k, ".rp_filter") && v == "1" {
			strict = append(strict, k)
			ev = append(ev, report.Evidence{Source: "sysctl", Text: k + " = 1 (strict)"})
		}
	}
	sort.Strings(strict)
	fix := &fixcmd.Script{}
	for _, k := range strict {
		if strings.Contains(k, ".default.") {
			continue
		}
		fix.Run(e.sysctlCmd(k, 2))
	}
	if fix.Empty() {
		fix.Run(e.sysctlCmd("net.ipv4.conf.all.rp_filter", 2))
	}
	fix.Note("or make the route back to the clients leave through the interface their packets arrive on")
	return []report.Finding{{
		Cause: causes.RPFilterDrop, Severity: report.Critical, Confidence: report.Confirmed,
		Why:      "IPReversePathFilter counts packets dropped by the reverse-path check, and it rose in the window",
		Summary:  fmt.Sprintf("%d packets dropped by strict reverse-path filtering: the route back to the sender leaves through another interface", d),
		Evidence: ev, Fix: fix.String(), Drops: d,
	}}
}

func ruleTCPReject(e *Evidence) []report.Finding {
	att := e.attributed()
	var out []report.Finding
	for _, dc := range causes.MustLookup(causes.TCPReject).DropCounters {
		d := int64(att.ByCounter[dc.Name])
		if d <= 0 {
			continue
		}
		what := "SYNs dropped by TCP before reaching the listener"
		if dc.Shared {
			// TcpInCsumErrors counts every bad segment, not only SYNs.
			what = "TCP segments (SYNs among them) dropped before reaching a socket"
		}
		f := report.Finding{
			Cause: causes.TCPReject, Severity: report.Critical, Confidence: report.Confirmed,
			Why:      dc.Name + " counts exactly this drop, and it rose in the window",
			Summary:  fmt.Sprintf("%d %s: %s", d, what, dc.What),
			Evidence: counterEv(e, dc.Name),
			Fix:      fixcmd.Notes(dc.Fix).String(), Drops: d,
		}
		for i := range e.Listeners {
			l := &e.Listeners[i]
			if dd := e.listenerDropsDelta(l); dd > 0 {
				f.Listeners = append(f.Listeners, e.listenerName(l))
				f.Evidence = append(f.Evidence, report.Evidence{Source: "sockets", Text: fmt.Sprintf("%s: listener drops +%d", l.Local, dd)})
			}
		}
		if e.Capture != nil && dc.Name == "TcpExtTCPMinTTLDrop" {
			for _, fl := range e.Capture.Flows {
				if fl.Dir == capture.Inbound && !fl.Answered() && fl.TTL != 0 {
					f.Evidence = append(f.Evidence, report.Evidence{Source: "capture", Text: fmt.Sprintf("SYN from %s arrived with TTL %d", fl.Client, fl.TTL)})
					break
				}
			}
		}
		out = append(out, f)
	}
	return out
}

func ruleIPv6Disabled(e *Evidence) []report.Finding {
	if e.Routes == nil {
		return nil
	}
	disc := e.delta("Ip6InDiscards")
	var out []report.Finding
	for _, l := range e.Routes.Links {
		if l.Name == "lo" || !l.Up {
			continue
		}
		if e.sysctl(sysctl.ConfName("ipv6", l.Name, "disable_ipv6")) != "1" && e.sysctl("net.ipv6.conf.all.disable_ipv6") != "1" {
			continue
		}
		var v6syn int
		if e.Capture != nil {
			for _, f := range e.Capture.Flows {
				if f.Dir == capture.Inbound && f.Ifindex == l.Index && f.Client.Addr().Is6() && !f.Client.Addr().Is4In6() && !f.Answered() {
					v6syn += f.SYNs
				}
			}
		}
		f := report.Finding{
			Cause: causes.IPv6Disabled,
			Evidence: append([]report.Evidence{{Source: "sysctl", Text: sysctl.ConfName("ipv6", l.Name, "disable_ipv6") + " = 1"}},
				counterEv(e, "Ip6InDiscards")...),
			Fix: fixcmd.Of(e.sysctlCmd(sysctl.ConfName("ipv6", l.Name, "disable_ipv6"), 0)).
				Note("then re-add the interface's IPv6 addresses and routes (disabling IPv6 removed them)").String(),
		}
		switch {
		case v6syn > 0:
			f.Severity, f.Confidence = report.Critical, report.Confirmed
			f.Why = "IPv6 SYNs arrived on the interface and were discarded"
			f.Summary = fmt.Sprintf("IPv6 is disabled on %s: %d IPv6 SYNs arriving there were discarded", l.Name, v6syn)
			f.Drops = int64(v6syn)
		case disc > 0:
			f.Severity, f.Confidence = report.Critical, report.Likely
			f.Why = "Ip6InDiscards rose while IPv6 is disabled on the interface"
			f.Summary = fmt.Sprintf("IPv6 is disabled on %s and IPv6 packets are being discarded", l.Name)
			f.Drops = disc
		default:
			f.Severity, f.Confidence = report.Info, report.Possible
			f.Summary = fmt.Sprintf("IPv6 is disabled on %s: IPv6 clients cannot connect through it", l.Name)
		}
		out = append(out, f)
	}
	return out
}

// ipv6DisabledFor: a v6 SYN arriving on an interface with IPv6 disabled
// cannot be answered; ipv6-disabled reports it, not no-route-to-peer.
func (e *Evidence) ipv6DisabledFor(p Peer) bool {
	if famOf(p.Addr) != 6 || p.Flow == nil || e.Routes == nil {
		return false
	}
	return e.sysctl(sysctl.ConfName("ipv6", e.linkName(p.Flow.Ifindex), "disable_ipv6")) == "1" || e.sysctl("net.ipv6.conf.all.disable_ipv6") == "1"
}

func rulePAWS(e *Evidence) []report.Finding {
	d := int64(e.attributed().ByCause[causes.PAWSReject])
	if d <= 0 {
		return nil
	}
	return []report.Finding{{
		Cause: causes.PAWSReject, Severity: report.Warning, Confidence: report.Likely,
		Why:      "PAWSTimewait counts SYNs rejected against a TIME_WAIT socket",
		Summary:  fmt.Sprintf("%d SYNs hit TIME_WAIT sockets with older timestamps (typically clients behind NAT)", d),
		Evidence: counterEv(e, "TcpExtPAWSTimewait"),
		Fix:      fixcmd.Notes("avoid NAT port reuse across hosts with different timestamp clocks, or let clients close first").String(),
		Drops:    d,
	}}
}

func ruleConntrack(e *Evidence) []report.Finding {
	ct := e.Conntrack
	if ct == nil || !ct.Available || ct.Max == 0 {
		return nil
	}
	var drop uint64
	if e.ConntrackStart != nil {
		drop = (ct.Drop + ct.EarlyDrop + ct.InsertFailed) - (e.ConntrackStart.Drop + e.ConntrackStart.EarlyDrop + e.ConntrackStart.InsertFailed)
	}
	fill := float64(ct.Count) / float64(ct.Max)
	if drop == 0 && fill < 0.9 {
		return nil
	}
	f := report.Finding{
		Cause:    causes.ConntrackFull,
		Evidence: []report.Evidence{{Source: "conntrack", Text: fmt.Sprintf("%d of %d entries in use (%.0f%%), %d drops in the window", ct.Count, ct.Max, fill*100, drop)}},
		Fix: fixcmd.Of(e.sysctlCmd("net.netfilter.nf_conntrack_max", ct.Max*2)).
			Note("nf_conntrack_max is global: it applies to every namespace").String(),
		Drops: int64(drop),
	}
	if drop > 0 {
		f.Severity, f.Confidence = report.Critical, report.Confirmed
		f.Why = "conntrack's drop counters rose while the table is full"
		f.Summary = fmt.Sprintf("the conntrack table is full (%d/%d): new connections are dropped", ct.Count, ct.Max)
	} else {
		f.Severity, f.Confidence = report.Warning, report.Likely
		f.Why = "the table is above 90%; drops start when it is full"
		f.Summary = fmt.Sprintf("the conntrack table is %.0f%% full (%d/%d)", fill*100, ct.Count, ct.Max)
	}
	return []report.Finding{f}
}

package doctor

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/report"
)

func interestingDeltas(d map[string]int64) map[string]int64 {
	out := map[string]int64{}
	// The catalog names the counters an investigation reads; the report
	// keeps only these so the JSON stays readable.
	for _, k := range causes.Counters() {
		if v := d[k]; v != 0 {
			out[k] = v
		}
	}
	return out
}

func summariseListeners(e *Evidence) []report.Listener {
	out := []report.Listener{}
	for i := range e.Listeners {
		l := &e.Listeners[i]
		rl := report.Listener{
			Local: l.Local.String(), AcceptQ: l.RecvQ, Backlog: l.SendQ, Drops: uint64(l.Drops),
			DropsDelta: e.listenerDropsDelta(l), SynRecv: e.synRecvFor(l), Mark: l.Mark,
		}
		if l.Ifindex != 0 {
			rl.Device = e.linkName(int(l.Ifindex))
		}
		if ps := e.Owners[l.Inode]; len(ps) > 0 {
			var names []string
			for _, p := range ps {
				names = append(names, fmt.Sprintf("%s[%d]", p.Comm, p.PID))
			}
			rl.Process = strings.Join(names, ",")
		}
		out = append(out, rl)
	}
	return out
}

func summarisePeers(e *Evidence) []report.Peer {
	out := []report.Peer{}
	idx := map[string]int{}
	for _, r := range e.Replays {
		k := r.Peer.Addr.String()
		p := report.Peer{Addr: k, Source: string(r.Peer.Source), Route: r.Result.String()}
		if !r.Result.OK {
			p.RouteErr = r.Result.Err
		}
		if f := r.Peer.Flow; f != nil {
			p.Server = f.Server.String()
			p.SYNs, p.SYNACKs, p.RSTs = f.SYNs, f.SYNACKs, f.RSTs
		}
		if i, ok := idx[k]; ok {
			if p.RouteErr != "" && out[i].RouteErr == "" {
				out[i] = p
			}
			continue
		}
		idx[k] = len(out)
		out = append(out, p)
	}
	return out
}

func summariseDefaults(e *Evidence) []report.DefaultRoute {
	out := []report.DefaultRoute{}
	if e.Routes == nil {
		return out
	}
	for _, rt := range e.Routes.Routes {
		if !rt.IsDefault() || rt.Table == unix.RT_TABLE_LOCAL {
			continue
		}
		d := report.DefaultRoute{Family: "ipv4", Table: rt.Table, Type: rt.Type, Dev: rt.Dev}
		if rt.Family == unix.AF_INET6 {
			d.Family = "ipv6"
		}
		if rt.Gateway.IsValid() {
			d.Via = rt.Gateway.String()
		}
		d.Manager = e.Managers[rt.Ifindex].Describe(rt.Dev)
		out = append(out, d)
	}
	return out
}

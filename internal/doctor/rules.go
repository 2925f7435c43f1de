package doctor

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/collect"
	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sockets"
)

// rule turns evidence into zero or more findings for one cause.
type rule func(e *Evidence) []report.Finding

// The evidence sources rules name as needs: collect's sources, and the two
// doctor runs itself.
const (
	sourceCounters   = collect.Counters
	sourceListeners  = collect.Listeners
	sourceSynRecv    = collect.SynRecv
	sourceRoutes     = collect.Routes
	sourceManagers   = collect.Managers
	sourceSysctls    = collect.Sysctls
	sourceTC         = collect.TC
	sourceFirewall   = collect.Firewall
	sourceConntrack  = collect.Conntrack
	sourceNeighbours = collect.Neighbours
	sourceXTables    = collect.XTables
	sourceDataplane  = collect.Dataplane
	sourceCapture    = "capture"
	sourceReplay     = "route-replay"
	sourceTrace      = "trace"
)

// check is one rule and the evidence sources its findings rest on: when
// one of them was not checked, a finding of the rule may rest on a zero
// that only means "not read", so Diagnose keeps it at "possible" and says
// which source is missing.
type check struct {
	rule  rule
	needs []string
}

// rules lists every detection, in no particular order: findings are ranked
// after. Each rule reads evidence only; none does I/O.
var rules = []check{
	{ruleNoRoute, []string{sourceCounters}},
	{ruleAcceptQueue, []string{sourceCounters, sourceListeners}},
	{ruleSynQueue, []string{sourceCounters}},
	{ruleSynCookies, []string{sourceCounters}},
	{ruleBacklogCapped, []string{sourceSysctls, sourceListeners}},
	{ruleFirewall, []string{sourceFirewall}},
	{ruleRPFilter, []string{sourceCounters}},
	{ruleNoListener, []string{sourceCapture}},
	{rulePortScan, []string{sourceCapture}},
	{ruleNeighbor, []string{sourceRoutes, sourceReplay, sourceNeighbours}},
	{ruleConntrack, []string{sourceConntrack}},
	{ruleIPv6Disabled, []string{sourceRoutes, sourceSysctls}},
	{ruleTCPReject, []string{sourceCounters}},
	{ruleDefaultRouteAtRisk, []string{sourceRoutes, sourceSysctls}},
	{ruleSynackUnanswered, []string{sourceCounters, sourceSynRecv}},
	{ruleSynackEgress, []string{sourceCounters, sourceSynRecv}},
	{rulePAWS, []string{sourceCounters}},
	{ruleXTables, []string{sourceXTables}},
	{ruleBPFDrop, []string{sourceDataplane}},
}

// needsOfUnexplained: ruleUnexplained's and ruleUnanswered's findings
// list what was not checked themselves.
var needsOfUnexplained = []string{sourceCounters}

// Diagnose turns the evidence into findings (unsorted). It is a pure
// function so every rule can be tested on recorded evidence.
func Diagnose(e *Evidence) []report.Finding {
	var out []report.Finding
	for _, c := range rules {
		out = append(out, e.honest(c.rule(e), c.needs)...)
	}
	out = append(out, e.honest(ruleUnexplained(e, out), needsOfUnexplained)...)
	out = append(out, ruleUnanswered(e, out)...)
	confirmByKernel(e, out)
	for i := range out {
		if c, ok := causes.Lookup(out[i].Cause); ok && out[i].Title == "" {
			out[i].Title = c.Title
		}
		if out[i].Evidence == nil {
			out[i].Evidence = []report.Evidence{}
		}
	}
	return out
}

// honest keeps findings whose needed evidence was not checked at
// "possible", and says in each which source was not read and why.
func (e *Evidence) honest(fs []report.Finding, needs []string) []report.Finding {
	var missing []string
	for _, n := range needs {
		if !e.checked(n) {
			missing = append(missing, n+" ("+e.whyUnchecked(n)+")")
		}
	}
	if len(missing) == 0 {
		return fs
	}
	for i := range fs {
		f := &fs[i]
		if f.Confidence != report.Possible {
			f.Confidence = report.Possible
		}
		note := "not checked: " + strings.Join(missing, "; ")
		f.Why = strings.TrimSpace(f.Why + " — but " + note + ", so this rests on part of the evidence")
		f.Evidence = append(f.Evidence, report.Evidence{Source: "doctor", Text: note})
	}
	return fs
}

// --- helpers -------------------------------------------------------------

func counterEv(e *Evidence, names ...string) []report.Evidence {
	var out []report.Evidence
	for _, n := range names {
		d := e.delta(n)
		if d == 0 {
			continue
		}
		out = append(out, report.Evidence{
			Source: "counters",
			Text:   fmt.Sprintf("%s +%d in %s (total %d)", n, d, e.Window, e.total(n)),
			Data:   map[string]any{"counter": n, "delta": d, "total": e.total(n)},
		})
	}
	return out
}

// tool is the command that runs a program in the inspected namespace.
func (e *Evidence) tool(name string) fixcmd.Cmd {
	if e.Target == nil {
		return fixcmd.New(name)
	}
	return e.Target.Command(name)
}

// ip is "ip" (with -6 for IPv6) in the inspected namespace.
func (e *Evidence) ip(fam int) fixcmd.Cmd {
	if fam == 6 {
		return e.tool("ip").Append("-6")
	}
	return e.tool("ip")
}

// sysctlCmd sets one sysctl in the inspected namespace.
func (e *Evidence) sysctlCmd(key string, value any) fixcmd.Cmd {
	return e.tool("sysctl").Append("-w", fmt.Sprintf("%s=%v", key, value))
}

// synscopeCmd is a synscope command aimed at the inspected namespace.
func (e *Evidence) synscopeCmd(args ...any) fixcmd.Cmd {
	c := fixcmd.New("synscope")
	if len(args) > 0 {
		c = c.Append(args[0])
		args = args[1:]
	}
	if t := e.Target; t != nil && !t.Current {
		switch {
		case t.Name != "":
			c = c.Append("--netns", t.Name)
		case t.PID != 0:
			c = c.Append("--netns", fmt.Sprintf("pid:%d", t.PID))
		default:
			c = c.Append("--netns", t.Path)
		}
	}
	return c.Append(args...)
}

// af converts our 4/6 family numbers to the AF_* constants routes uses.
func af(fam int) int {
	if fam == 6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

func famOf(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

func (e *Evidence) listenerDropsDelta(l *sockets.Socket) int64 {
	if e.startDrops == nil {
		e.startDrops = make(map[uint32]uint32, len(e.ListenersStart))
		for _, s := range e.ListenersStart {
			e.startDrops[s.Inode] = s.Drops
		}
	}
	if d, ok := e.startDrops[l.Inode]; ok {
		return int64(l.Drops) - int64(d)
	}
	return int64(l.Drops)
}

func (e *Evidence) listenerName(l *sockets.Socket) string {
	s := l.Local.String()
	if ps := e.Owners[l.Inode]; len(ps) > 0 {
		s += fmt.Sprintf(" (%s pid %d)", ps[0].Comm, ps[0].PID)
	}
	return s
}

func (e *Evidence) linkName(idx int) string {
	if e.Routes == nil {
		return fmt.Sprintf("if%d", idx)
	}
	if n := e.Routes.LinkName(idx); n != "" {
		return n
	}
	return fmt.Sprintf("if%d", idx)
}

func (e *Evidence) sysctl(name string) string {
	if e.Sysctl == nil {
		return ""
	}
	return e.Sysctl[name]
}

// unansweredTo lists captured inbound flows to port (0 = any) that got
// neither a SYN-ACK nor a RST. A SYN that arrived in the last moments of the
// window may simply not have been answered yet, so only flows with a
// retransmission count.
func (e *Evidence) unansweredTo(port uint16) []capture.Flow {
	if e.Capture == nil {
		return nil
	}
	var out []capture.Flow
	for _, f := range e.Capture.Unanswered(capture.Inbound) {
		if port != 0 && f.Server.Port() != port {
			continue
		}
		if f.SYNs < 2 {
			continue
		}
		out = append(out, f)
	}
	return out
}

func flowText(f capture.Flow) string {
	return fmt.Sprintf("%s -> %s: %d SYN, %d SYN-ACK, %d RST", f.Client, f.Server, f.SYNs, f.SYNACKs, f.RSTs)
}

func uniq(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// byHand is the iproute2 command that repeats a replayed lookup in the
// target namespace, for a human to confirm.
func (e *Evidence) byHand(q routes.Query) string {
	return q.Command(e.tool("ip")).String()
}

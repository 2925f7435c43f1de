// Package doctor inspects one network namespace and names the reasons its
// TCP handshakes die. It runs the collectors (counters, sockets, capture,
// routes, sysctls, firewall, conntrack) around a sampling window, replays
// the kernel's SYN-ACK route lookup for every peer it learns of, and turns
// the evidence into ranked findings from the cause catalog.
package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/capture"
	"github.com/synscope/synscope/internal/collect"
	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sockets"
)

// Options configure one run.
type Options struct {
	// Netns is the namespace spec ("" = the caller's own).
	Netns string
	// Window is how long to sample counters and packets.
	Window time.Duration
	// Peers are clients the user named (--peer); Port 0 = unknown.
	Peers []netip.AddrPort
	// Ports restricts the check to these listening ports (empty = all).
	Ports []uint16
	// NoCapture skips the packet capture.
	NoCapture bool
	// NoTrace skips the trace engine (the kernel's own fate of each SYN).
	NoTrace bool

	// disabled names collect sources not to run (a test seam: a fault
	// whose evidence source is off must still not read as healthy).
	disabled []string
}

// MaxWindow bounds --window: the doctor is a snapshot, not a monitor.
const MaxWindow = 10 * time.Minute

// Run inspects the namespace and returns the report. An error means the
// run could not happen at all (bad namespace, no access to it); collectors
// that fail only mark their check.
func Run(ctx context.Context, opts Options) (*report.Report, error) {
	if opts.Window < 0 || opts.Window > MaxWindow {
		return nil, fmt.Errorf("window %v out of range (0 to %v)", opts.Window, MaxWindow)
	}
	t, err := netns.Open(opts.Netns)
	if err != nil {
		return nil, err
	}
	defer t.Close()

	r := &run{opts: opts, ev: &Evidence{Target: t, Window: opts.Window}}
	r.start(ctx)
	select {
	case <-ctx.Done():
		r.abort()
		return nil, ctx.Err()
	case <-time.After(opts.Window):
	}
	windowEnd := time.Now()
	r.finish(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	rep := &report.Report{
		Schema:        report.Schema,
		Time:          time.Now().UTC(),
		Target:        report.Target{Netns: t.Label(), NetnsInode: t.Inode, Kernel: kernelRelease()},
		WindowSeconds: opts.Window.Seconds(),
		Checks:        r.checks,
	}
	rep.Target.Hostname, _ = os.Hostname()
	rep.Findings = Diagnose(r.ev)
	rep.Counters = interestingDeltas(r.ev.CounterDeltas)
	rep.Listeners = summariseListeners(r.ev)
	rep.Peers = summarisePeers(r.ev)
	rep.DefaultRoutes = summariseDefaults(r.ev)
	rep.Sysctls = r.ev.Sysctl
	rep.Dataplane = summariseDataplane(r.ev)
	rep.Sort()
	rep.OverheadMS = float64(time.Since(windowEnd).Microseconds()) / 1000
	return rep, nil
}

// run holds one doctor run's collection state.
type run struct {
	opts Options
	ev   *Evidence

	checks []report.Check
	// window is read while the window runs (routes, sysctls, tc, owners).
	window *collect.Sample
	wg     sync.WaitGroup
	cap    *capture.Session
	capErr error
	trace  *kernelTrace
}

// add records a sample's checks (renamed with suffix) and marks what did
// not run as not checked in the evidence.
func (r *run) add(cs []report.Check, suffix string) {
	for _, c := range cs {
		if c.Status != report.Ran {
			r.ev.unchecked(c.Name, c.Detail)
		}
		c.Name += suffix
		r.checks = append(r.checks, c)
	}
}

// sources drops the disabled sources from names, recording each as a
// skipped check once.
func (r *run) sources(names ...string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(r.opts.disabled, n) {
			out = append(out, n)
			continue
		}
		if _, done := r.ev.Unchecked[n]; !done {
			r.skip(n, "disabled")
		}
	}
	return out
}

func (r *run) skip(name, why string) {
	r.checks = append(r.checks, report.Check{Name: name, Status: report.Skipped, Detail: why})
	r.ev.unchecked(name, why)
}

// start takes the first samples and starts what runs through the window.
// Routes, sysctls, tc filters and socket owners do not need the window's
// end, so they are read during it: that keeps the time beyond the window
// small.
func (r *run) start(ctx context.Context) {
	t := r.ev.Target
	first := &collect.Sample{}
	if names := r.sources(collect.Counters, collect.Listeners, collect.Firewall, collect.Conntrack, collect.XTables); len(names) > 0 {
		_ = collect.Run(ctx, t, first, 0, names...)
	}
	r.add(first.Checks, "-start")
	r.ev.XTablesStart = first.XTables
	r.ev.Counters, r.ev.ListenersStart = first.Counters, first.Listeners
	r.ev.FirewallStart, r.ev.ConntrackStart = first.Firewall, first.Conntrack

	r.startTrace(ctx)
	if r.opts.NoCapture {
		r.skip("capture", "disabled by --no-capture")
	} else if err := t.Do(func() error {
		var err error
		r.cap, err = capture.Start(capture.Options{Ports: r.opts.Ports})
		return err
	}); err != nil {
		r.cap, r.capErr = nil, err
	}

	// The window's sources run beside it; owners are those of the
	// listeners present now.
	r.window = &collect.Sample{Listeners: first.Listeners}
	names := r.sources(collect.Routes, collect.Managers, collect.Sysctls, collect.TC, collect.Owners)
	if len(names) == 0 {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = collect.Run(ctx, t, r.window, 0, names...)
	}()
}

func (r *run) abort() {
	if r.trace != nil {
		r.trace.cancel()
		<-r.trace.open
		<-r.trace.done
	}
	if r.cap != nil {
		_, _ = r.cap.Stop()
	}
	r.wg.Wait()
}

// finish takes the end samples and replays the route lookups.
func (r *run) finish(ctx context.Context) {
	t := r.ev.Target
	var capRes *capture.Result
	capBegan := time.Now()
	if r.cap != nil {
		capRes, r.capErr = r.cap.Stop()
	}
	capDur := time.Since(capBegan)
	if r.trace != nil {
		// The engine drains what the kernel produced, waiting (at most
		// trace.DrainMax) for handshakes still under way, while the end
		// sample is read; stopTrace joins it after.
		r.trace.cancel()
	}

	r.wg.Wait()
	end := &collect.Sample{Routes: r.window.Routes, Owners: r.window.Owners, Peers: r.dataplanePeers(capRes), FirewallBase: r.ev.FirewallStart}
	names := []string{collect.Counters, collect.Listeners, collect.SynRecv, collect.Firewall, collect.Conntrack, collect.XTables, collect.Dataplane}
	if r.window.Routes != nil {
		names = append(names, collect.Neighbours)
	}
	if names = r.sources(names...); len(names) > 0 {
		_ = collect.Run(ctx, t, end, 0, names...)
	}
	if r.ev.FirewallStart == nil {
		// The start's check says why; one failure, one line.
		end.Checks = slices.DeleteFunc(end.Checks, func(c report.Check) bool { return c.Name == collect.Firewall && c.Status != report.Ran })
	}
	r.add(r.window.Checks, "")
	r.add(end.Checks, "")
	r.stopTrace()

	ev := r.ev
	if end.Counters != nil && ev.Counters != nil {
		ev.CounterDeltas = counters.Diff(ev.Counters, end.Counters)
	}
	if end.Counters != nil {
		ev.Counters = end.Counters
	}
	ev.Listeners, ev.SynRecv = end.Listeners, end.SynRecv
	ev.Routes, ev.Sysctl, ev.TC, ev.Owners = end.Routes, r.window.Sysctl, r.window.TC, r.window.Owners
	ev.Managers = r.window.Managers
	if ev.FirewallStart != nil && end.Firewall != nil {
		ev.Firewall = end.Firewall
		ev.FirewallDeltas = firewall.Diff(ev.FirewallStart, end.Firewall)
	}
	ev.Conntrack = end.Conntrack
	ev.XTables, ev.Dataplane = end.XTables, end.Dataplane

	switch {
	case r.opts.NoCapture:
	case r.capErr != nil && collect.IsPermission(r.capErr):
		r.skip("capture", "needs CAP_NET_RAW: "+r.capErr.Error())
	case r.capErr != nil:
		r.checks = append(r.checks, report.Check{Name: "capture", Status: report.Failed, Detail: r.capErr.Error()})
		r.ev.unchecked("capture", r.capErr.Error())
	case capRes != nil:
		ev.Capture = capRes
		r.checks = append(r.checks, report.Check{Name: "capture", Status: report.Ran,
			DurationMS: float64(capDur.Microseconds()) / 1000,
			Detail:     fmt.Sprintf("%d handshake packets, %d flows, %d kernel drops", capRes.Packets, len(capRes.Flows), capRes.KernelDrops)})
	}

	r.ownersOfNew(ctx)
	began := time.Now()
	var replayErr error
	ev.Replays, replayErr = r.replay()
	switch {
	case ev.Routes == nil:
		r.skip("route-replay", "no routes were read")
	case replayErr != nil:
		r.checks = append(r.checks, report.Check{Name: "route-replay", Status: report.Failed, Detail: replayErr.Error()})
		r.ev.unchecked("route-replay", replayErr.Error())
	default:
		r.checks = append(r.checks, report.Check{Name: "route-replay", Status: report.Ran,
			DurationMS: float64(time.Since(began).Microseconds()) / 1000,
			Detail:     fmt.Sprintf("%d SYN-ACK route lookups replayed", len(ev.Replays))})
	}
}

// ownersOfNew resolves the owners of listeners that appeared during the
// window (rare: the scan ran on the ones present at its start).
func (r *run) ownersOfNew(ctx context.Context) {
	var fresh []sockets.Socket
	for _, l := range r.ev.Listeners {
		if _, ok := r.ev.Owners[l.Inode]; !ok && l.Inode != 0 && !r.hadAtStart(l.Inode) {
			fresh = append(fresh, l)
		}
	}
	if len(fresh) == 0 {
		return
	}
	more := &collect.Sample{Listeners: fresh}
	_ = collect.Run(ctx, r.ev.Target, more, 0, collect.Owners)
	r.add(more.Checks, "-new")
	if r.ev.Owners == nil {
		r.ev.Owners = map[uint32][]sockets.Proc{}
	}
	for k, v := range more.Owners {
		r.ev.Owners[k] = v
	}
}

func (r *run) hadAtStart(inode uint32) bool {
	for _, s := range r.ev.ListenersStart {
		if s.Inode == inode {
			return true
		}
	}
	return false
}

// peers gathers the clients to replay: named ones, unanswered SYNs seen in
// the window, and the SYN-RECV request sockets.
func (r *run) peers() []Peer {
	var out []Peer
	seen := map[netip.AddrPort]bool{}
	add := func(p Peer) {
		k := netip.AddrPortFrom(p.Addr, p.Port)
		if seen[k] {
			return
		}
		seen[k] = true
		out = append(out, p)
	}
	for _, ap := range r.opts.Peers {
		add(Peer{Addr: ap.Addr().Unmap(), Port: ap.Port(), Source: FromFlag})
	}
	if r.ev.Capture != nil {
		// One replay per client and server address: the client port does
		// not change the route unless a rule matches on ports, which the
		// first flow's lookup would show anyway.
		byClient := map[[2]netip.Addr]int{}
		for i := range r.ev.Capture.Flows {
			f := &r.ev.Capture.Flows[i]
			if f.Dir != capture.Inbound || f.Answered() || f.Refused() {
				continue
			}
			k := [2]netip.Addr{f.Client.Addr().Unmap(), f.Server.Addr().Unmap()}
			if j, ok := byClient[k]; ok {
				out[j].Flows++
				out[j].SYNs += f.SYNs
				continue
			}
			byClient[k] = len(out)
			add(Peer{Addr: k[0], Port: f.Client.Port(), Source: FromCapture, Flow: f, Flows: 1, SYNs: f.SYNs})
		}
	}
	for _, s := range r.ev.SynRecv {
		add(Peer{Addr: s.Remote.Addr().Unmap(), Port: s.Remote.Port(), Source: FromSockets})
	}
	const maxPeers = 64
	if len(out) > maxPeers {
		out = out[:maxPeers]
	}
	return out
}

// replay asks the kernel, for each peer, the route lookup that
// inet_csk_route_req would make for the SYN-ACK.
func (r *run) replay() ([]Replay, error) {
	if r.ev.Routes == nil {
		return nil, nil
	}
	var out []Replay
	var qs []Replay
	for _, p := range r.peers() {
		qs = append(qs, r.queriesFor(p)...)
	}
	if len(qs) == 0 {
		return nil, nil
	}
	err := r.ev.Target.Do(func() error {
		for _, q := range qs {
			q.Result = routes.Replay(q.Result.Query)
			out = append(out, q)
		}
		return nil
	})
	return out, err
}

// queriesFor builds the lookups for one peer: from the address its SYN was
// sent to (when captured) or from each local address of the family, with
// the matching listener's mark, uid and bound device.
func (r *run) queriesFor(p Peer) []Replay {
	fam := 4
	if p.Addr.Is6() {
		fam = 6
	}
	var out []Replay
	mk := func(src netip.Addr, l *sockets.Socket) {
		q := routes.Query{Src: src, Dst: p.Addr, Dport: p.Port}
		if l != nil {
			q.Sport = l.Local.Port()
			q.Mark = l.Mark
			q.UID = l.UID
			q.HasUID = true
			q.Oif = int(l.Ifindex)
		}
		out = append(out, Replay{Peer: p, Listener: l, Result: routes.Result{Query: q}})
	}
	if p.Flow != nil {
		srv := p.Flow.Server
		mk(srv.Addr().Unmap(), r.listenerFor(srv))
		return out
	}
	ls := r.listenersOfFamily(fam)
	if len(ls) == 0 {
		for _, a := range r.localAddrs(fam) {
			mk(a, nil)
		}
		return out
	}
	for _, l := range ls {
		la := l.Local.Addr().Unmap()
		if !la.IsUnspecified() {
			if la.Is4() == (fam == 4) {
				mk(la, l)
			}
			continue
		}
		for _, a := range r.localAddrs(fam) {
			mk(a, l)
		}
	}
	const maxQueries = 16
	if len(out) > maxQueries {
		out = out[:maxQueries]
	}
	return out
}

// listenerFor finds the listener a SYN to srv lands on: an exact address
// match first, then a wildcard of the same family or a dual-stack [::].
func (r *run) listenerFor(srv netip.AddrPort) *sockets.Socket {
	var wild *sockets.Socket
	a := srv.Addr().Unmap()
	for i := range r.ev.Listeners {
		l := &r.ev.Listeners[i]
		if l.Local.Port() != srv.Port() {
			continue
		}
		la := l.Local.Addr().Unmap()
		if la == a {
			return l
		}
		if la.IsUnspecified() && (la.Is4() == a.Is4() || (a.Is4() && l.Family == unix.AF_INET6)) && wild == nil {
			wild = l
		}
	}
	return wild
}

func (r *run) listenersOfFamily(fam int) []*sockets.Socket {
	var out []*sockets.Socket
	dedup := map[string]bool{}
	for i := range r.ev.Listeners {
		l := &r.ev.Listeners[i]
		if len(r.opts.Ports) > 0 && !containsPort(r.opts.Ports, l.Local.Port()) {
			continue
		}
		la := l.Local.Addr().Unmap()
		if la.IsLoopback() {
			continue
		}
		ok := (fam == 4 && (la.Is4() || (la.IsUnspecified() && l.Family == unix.AF_INET6))) || (fam == 6 && l.Family == unix.AF_INET6 && !la.Is4())
		if !ok {
			continue
		}
		// One lookup per distinct (address, mark, uid, device): ports do
		// not change the route unless rules match on them, which is rare.
		k := fmt.Sprintf("%s|%d|%d|%d", la, l.Mark, l.UID, l.Ifindex)
		if dedup[k] {
			continue
		}
		dedup[k] = true
		out = append(out, l)
	}
	return out
}

func containsPort(ps []uint16, p uint16) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// localAddrs lists the namespace's global addresses of a family.
func (r *run) localAddrs(fam int) []netip.Addr {
	var out []netip.Addr
	for _, a := range r.ev.Routes.Addrs {
		ip := a.Prefix.Addr()
		if ip.Is4() != (fam == 4) || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, ip)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	if len(out) > 4 {
		out = out[:4]
	}
	return out
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return strings.TrimRight(string(u.Release[:]), "\x00")
}

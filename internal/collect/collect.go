// Package collect reads a network namespace's handshake-relevant state
// through one set of sources — counters, sockets, socket owners, routes,
// sysctls, tc filters, nftables, conntrack, neighbours — each with a name
// and one read under a deadline, the way node_exporter's collectors are.
// doctor runs them around its sampling window and watch on its interval:
// both read the kernel with the same code, and a source that fails or
// runs out of time is a check that says why, never a dead run and never a
// silent gap.
package collect

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/dataplane"
	"github.com/synscope/synscope/internal/firewall"
	"github.com/synscope/synscope/internal/netmgr"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/routes"
	"github.com/synscope/synscope/internal/sockets"
	"github.com/synscope/synscope/internal/sysctl"
)

// Sample is what the sources read in one run. A field whose source did
// not run, failed or ran out of time stays nil: "not checked", with the
// reason in Checks. An empty non-nil field is "checked, nothing there".
type Sample struct {
	Counters  *counters.Snapshot
	Listeners []sockets.Socket
	SynRecv   []sockets.Socket
	Owners    map[uint32][]sockets.Proc
	Routes    *routes.State
	// Managers: the network manager owning each device, by ifindex (no
	// entry: no manager runs for it).
	Managers map[int]netmgr.Owner
	Sysctl   map[string]string
	TC       []firewall.TCFilter
	Firewall *firewall.Ruleset
	// FirewallBase, set by the caller, is an earlier read of the same
	// namespace's ruleset: the firewall source then re-reads only what
	// can have changed since (firewall.Refresh). It is never a result.
	FirewallBase *firewall.Ruleset
	Conntrack    *counters.Conntrack
	// XTables: legacy iptables rules with counters; Dataplane: BPF
	// programs and socket filters, tested against the listeners' SYNs
	// from Peers (clients seen unanswered or named; set by the caller).
	XTables   []dataplane.XTRule
	Dataplane *dataplane.Inventory
	Peers     []netip.Addr
	// SysctlNames, set by the caller, is what the sysctls source reads
	// (watch: the few settings it judges routes with, in every namespace
	// each interval); unset, every name sysctl.RelevantNames gives for
	// the route devices.
	SysctlNames []string
	// Checks has one entry per source asked for, in order.
	Checks []report.Check
}

// Checked reports whether source name ran and succeeded in this sample.
func (s *Sample) Checked(name string) bool {
	for _, c := range s.Checks {
		if c.Name == name {
			return c.Status == report.Ran
		}
	}
	return false
}

// A Source reads one kind of state. Read runs on the caller's goroutine
// with ctx carrying the source's deadline; it may use what earlier sources
// of the same run put in in (read-only) and returns a function that stores
// its result, applied only if it finished in time, plus a detail line.
type Source struct {
	Name string
	Read func(ctx context.Context, t *netns.Target, in *Sample) (apply func(*Sample), detail string, err error)
}

// The source names.
const (
	Counters   = "counters"
	Listeners  = "listeners"
	SynRecv    = "syn-recv"
	Owners     = "owners"
	Routes     = "routes"
	Managers   = "network-managers"
	Sysctls    = "sysctls"
	TC         = "tc"
	Firewall   = "firewall"
	Conntrack  = "conntrack"
	Neighbours = "neighbours"
	XTables    = "xtables-legacy"
	Dataplane  = "dataplane"
)

// ErrNotAvailable marks a source with nothing to read on this host (a
// module not loaded): a skipped check, not a failure.
var ErrNotAvailable = errors.New("not available")

// Sources lists every source, in an order where each comes after those
// whose results it uses.
func Sources() []Source {
	return []Source{
		{Counters, readCounters},
		{Listeners, readListeners},
		{SynRecv, readSynRecv},
		{Owners, readOwners},
		{Routes, readRoutes},
		{Managers, readManagers},
		{Sysctls, readSysctls},
		{TC, readTC},
		{Firewall, readFirewall},
		{Conntrack, readConntrack},
		{Neighbours, readNeighbours},
		{XTables, readXTables},
		{Dataplane, readDataplane},
	}
}

// DefaultDeadline bounds one source's read.
const DefaultDeadline = 10 * time.Second

// Run reads the named sources (all when names is empty) into s, in the
// order Sources gives, each under its own deadline within ctx. s may carry
// results of an earlier run that later sources use (neighbours refreshes
// s.Routes). A source that does not finish in time is recorded as failed
// and its late result dropped. Run returns ctx's error if ctx ended.
func Run(ctx context.Context, t *netns.Target, s *Sample, deadline time.Duration, names ...string) error {
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, src := range Sources() {
		if len(names) > 0 && !want[src.Name] {
			continue
		}
		if err := ctx.Err(); err != nil {
			s.Checks = append(s.Checks, report.Check{Name: src.Name, Status: report.Skipped, Detail: "not run: " + err.Error()})
			continue
		}
		s.Checks = append(s.Checks, runOne(ctx, t, s, src, deadline))
	}
	return ctx.Err()
}

type result struct {
	apply  func(*Sample)
	detail string
	err    error
}

func runOne(ctx context.Context, t *netns.Target, s *Sample, src Source, deadline time.Duration) report.Check {
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	// The read gets a copy of what earlier sources stored, so that a read
	// abandoned at its deadline cannot race with later ones.
	in := *s
	done := make(chan result, 1)
	go func() {
		apply, detail, err := src.Read(ctx, t, &in)
		done <- result{apply, detail, err}
	}()
	c := report.Check{Name: src.Name}
	select {
	case r := <-done:
		c.Status, c.Detail = status(r.err, r.detail)
		if r.err == nil && r.apply != nil {
			r.apply(s)
		}
	case <-ctx.Done():
		c.Status, c.Detail = report.Failed, fmt.Sprintf("no answer within %v: %v", deadline, ctx.Err())
	}
	c.DurationMS = float64(time.Since(began).Microseconds()) / 1000
	return c
}

func status(err error, detail string) (report.CheckStatus, string) {
	switch {
	case err == nil:
		return report.Ran, detail
	case errors.Is(err, ErrNotAvailable):
		return report.Skipped, err.Error()
	case IsPermission(err):
		return report.Skipped, "needs privileges: " + err.Error()
	}
	return report.Failed, err.Error()
}

// IsPermission reports whether err is a refusal for lack of privilege.
func IsPermission(err error) bool {
	return errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

func readCounters(_ context.Context, t *netns.Target, _ *Sample) (func(*Sample), string, error) {
	var snap *counters.Snapshot
	err := t.Do(func() error {
		var err error
		snap, err = counters.Read(netns.ProcNet)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return func(s *Sample) { s.Counters = snap }, fmt.Sprintf("%d counters", len(snap.Values)), nil
}

func readListeners(_ context.Context, t *netns.Target, _ *Sample) (func(*Sample), string, error) {
	var ls []sockets.Socket
	err := t.Do(func() error {
		var err error
		ls, err = sockets.Listeners()
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if ls == nil {
		ls = []sockets.Socket{}
	}
	return func(s *Sample) { s.Listeners = ls }, fmt.Sprintf("%d listeners", len(ls)), nil
}

func readSynRecv(_ context.Context, t *netns.Target, _ *Sample) (func(*Sample), string, error) {
	var rs []sockets.Socket
	err := t.Do(func() error {
		var err error
		rs, err = sockets.SynRecv()
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if rs == nil {
		rs = []sockets.Socket{}
	}
	return func(s *Sample) { s.SynRecv = rs }, fmt.Sprintf("%d SYN-RECV", len(rs)), nil
}

// readOwners maps the listeners of this run (or of the sample it extends)
// to processes. It walks every process's fds from the host's /proc:
// inodes are unique across namespaces.
func readOwners(_ context.Context, _ *netns.Target, in *Sample) (func(*Sample), string, error) {
	if in.Listeners == nil {
		return nil, "", fmt.Errorf("%w: no listeners were read", ErrNotAvailable)
	}
	inodes := make([]uint32, 0, len(in.Listeners))
	for _, l := range in.Listeners {
		inodes = append(inodes, l.Inode)
	}
	owners, err := sockets.Owners("/proc", inodes)
	if err != nil {
		return nil, "", err
	}
	return func(s *Sample) { s.Owners = owners }, fmt.Sprintf("%d of %d listeners' owners found", len(owners), len(inodes)), nil
}

func readRoutes(_ context.Context, t *netns.Target, _ *Sample) (func(*Sample), string, error) {
	var st *routes.State
	err := t.Do(func() error {
		var err error
		st, err = routes.Collect()
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return func(s *Sample) { s.Routes = st },
		fmt.Sprintf("%d routes, %d rules, %d neighbours", len(st.Routes), len(st.Rules), len(st.Neighbors)), nil
}

// readManagers finds the network managers running in the namespace
// (netmgr, the detector watch uses) and the owner of every device the
// routes source saw.
func readManagers(_ context.Context, t *netns.Target, in *Sample) (func(*Sample), string, error) {
	if in.Routes == nil {
		return nil, "", errors.New("needs the devices, and the routes source did not read them")
	}
	procs, err := netmgr.Running("/proc", t.Inode)
	if err != nil {
		return nil, "", err
	}
	owners := map[int]netmgr.Owner{}
	managed := 0
	for _, l := range in.Routes.Links {
		if o := netmgr.OwnerOf(procs, l.Index); o.Name != "" {
			owners[l.Index] = o
			managed += btoi(o.Manages)
		}
	}
	var names []string
	for _, p := range procs {
		names = append(names, fmt.Sprintf("%s[%d]", p.Name, p.PID))
	}
	detail := "no network manager runs in the namespace"
	if len(names) > 0 {
		detail = fmt.Sprintf("%s; %d devices managed", strings.Join(names, ", "), managed)
	}
	return func(s *Sample) { s.Managers = owners }, detail, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readSysctls reads the global settings and those of every device the
// routes source saw.
func readSysctls(_ context.Context, t *netns.Target, in *Sample) (func(*Sample), string, error) {
	var ifaces []string
	if in.Routes != nil {
		for _, l := range in.Routes.Links {
			ifaces = append(ifaces, l.Name)
		}
	}
	var vals map[string]string
	// Entering the namespace can fail: then nothing was read, and the
	// check says why instead of reporting an empty (healthy) sample.
	if err := t.Do(func() error {
		if in.SysctlNames != nil {
			vals = sysctl.Values(in.SysctlNames)
		} else {
			vals = sysctl.Relevant(ifaces)
		}
		return nil
	}); err != nil {
		return nil, "", fmt.Errorf("entering the namespace: %w", err)
	}
	return func(s *Sample) { s.Sysctl = vals }, fmt.Sprintf("%d values", len(vals)), nil
}

func readTC(_ context.Context, t *netns.Target, _ *Sample) (func(*Sample), string, error) {
	var fs []firewall.TCFilter
	err := t.Do(func() error {
		var err error
		fs, err = firewall.TCFilters()
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if fs == nil {
		fs = []firewall.TCFilter{}
	}
	return func(s *Sample) { s.TC = fs }, fmt.Sprintf("%d filters", len(fs)), nil
}

func readFirewall(_ context.Context, t *netns.Target, in *Sample) (func(*Sample), string, error) {
	var rs *firewall.Ruleset
	var err error
	if in.FirewallBase != nil {
		rs, err = firewall.Refresh(t.FD(), in.FirewallBase)
	} else {
		rs, err = firewall.Inspect(t.FD())
	}
	if err != nil {
		return nil, "", err
	}
	detail := fmt.Sprintf("%d rules in %d tables", len(rs.Rules), rs.Tables)
	switch partial, n := rs.Partial(); {
	case partial && n == 0:
		detail += " (unchanged since the first read, and no rule that can drop has a counter: nothing to re-read)"
	case partial:
		detail += fmt.Sprintf(" (unchanged since the first read: counters of the %d rules that can drop re-read)", n)
	}
	return func(s *Sample) { s.Firewall = rs }, detail, nil
}

func readConntrack(_ context.Context, t *netns.Target, _ *Sample) (func(*Sample), string, error) {
	var ct counters.Conntrack
	err := t.Do(func() error {
		var err error
		ct, err = counters.ReadConntrack(netns.ProcNet, "/proc/sys")
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if !ct.Available {
		return nil, "", fmt.Errorf("%w: nf_conntrack not loaded", ErrNotAvailable)
	}
	return func(s *Sample) { s.Conntrack = &ct }, fmt.Sprintf("%d/%d entries", ct.Count, ct.Max), nil
}

// readNeighbours re-reads the neighbour table into a copy of the routes
// the sample carries: a next hop failing to resolve shows only while the
// kernel tries it, so doctor reads it again at its window's end.
func readNeighbours(_ context.Context, t *netns.Target, in *Sample) (func(*Sample), string, error) {
	if in.Routes == nil {
		return nil, "", fmt.Errorf("%w: no routes were read", ErrNotAvailable)
	}
	st := *in.Routes
	if err := t.Do(st.RefreshNeighbors); err != nil {
		return nil, "", err
	}
	return func(s *Sample) { s.Routes = &st }, fmt.Sprintf("%d neighbours", len(st.Neighbors)), nil
}

// readXTables reads the legacy (xtables) rules with their counters.
func readXTables(_ context.Context, t *netns.Target, _ *Sample) (func(*Sample), string, error) {
	var rs []dataplane.XTRule
	err := t.Do(func() error {
		var err error
		rs, err = dataplane.ReadXTables(netns.ProcNet)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if rs == nil {
		rs = []dataplane.XTRule{} // read, nothing there: not "not checked"
	}
	n := map[int]int{}
	for _, r := range rs {
		n[r.Family]++
	}
	return func(s *Sample) { s.XTables = rs }, fmt.Sprintf("%d IPv4 and %d IPv6 rules and policies", n[4], n[6]), nil
}

// readDataplane lists the XDP, tc, tcx and cgroup programs and the
// listeners' socket filters, testing each with SYNs for the listeners
// this sample (or the one it extends) read. The detail counts them and
// names what could not be read; the items are in Sample.Dataplane.
func readDataplane(_ context.Context, t *netns.Target, in *Sample) (func(*Sample), string, error) {
	di := dataplane.Input{Listeners: in.Listeners, Owners: in.Owners, Peers: in.Peers}
	if in.Routes != nil {
		for _, a := range in.Routes.Addrs {
			di.Addrs = append(di.Addrs, a.Prefix.Addr())
		}
	}
	var inv *dataplane.Inventory
	err := t.Do(func() error {
		var err error
		inv, err = dataplane.Read(di)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	detail := fmt.Sprintf("%d programs, %d socket filters", len(inv.Programs), len(inv.SocketFilters))
	if len(inv.NotChecked) > 0 {
		detail += "; not checked: " + strings.Join(inv.NotChecked, "; ")
	}
	return func(s *Sample) { s.Dataplane = inv }, detail, nil
}

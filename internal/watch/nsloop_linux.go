package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/collect"
	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/netmgr"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
)

// batch is what the receiver hands the loop: the messages drained from the
// socket in one go, or a resync request after ENOBUFS, or a fatal error.
type batch struct {
	msgs   []nlMsg
	resync bool
	err    error
}

// neighKey identifies a neighbour entry.
type neighKey struct {
	ifindex int
	addr    netip.Addr
}

// nsLoop follows one namespace. All its state is owned by its goroutine.
type nsLoop struct {
	opts   *Options
	m      *Metrics
	lg     *slog.Logger
	t      *netns.Target
	name   string
	mon    *nlSock
	dump   *nlSock
	links  map[int]Link
	routes routeSet
	judged judged
	hist   history
	neigh  map[neighKey]uint16
	ignLD  [2]bool // ipv4, ipv6 conf.all.ignore_routes_with_linkdown
	// ignDev holds conf.<dev>.ignore_routes_with_linkdown per family
	// index and ifindex: the kernel ignores a link-down route when the
	// device's value or all's is 1 (IN_DEV_ORCONF, fib6_ignore_linkdown).
	ignDev  map[[2]int]bool
	known   map[famTable]bool
	lastErr map[famTable]Route // last lost route per family/table
	// unnamed holds routes a dump showed back before their RTM_NEWROUTE
	// (which names the sender) was read: their route-restored line waits
	// for it, at most unnamedWait.
	unnamed map[key]unnamedRestore
	// lostAt is when the last route was lost: fast re-checks run for
	// fastRecheckFor after it while a family/table has none.
	lostAt time.Time
	risks  map[riskKey]bool
	// conf is IPv6 forwarding / accept_ra of the route devices (-1:
	// not read), from the last sysctls read.
	conf map[int]devConf
	// checks is each collector's last status, to log changes.
	checks map[string]report.CheckStatus
	// procCache maps netlink port ids to process names (bounded).
	procCache map[uint32]procEntry
	// procs names deleters that already exited (nil: not loaded).
	procs  *procHistory
	prev   *counters.Snapshot
	repair *repairer
	expiry *time.Timer
	// mgrs are the network managers running in the namespace, from the
	// process scan at mgrsAt (each interval; zero: not scanned yet), or
	// why the scan failed: route-lost names the owner without a /proc
	// scan on the loss's path.
	mgrs    []netmgr.Proc
	mgrsErr error
	mgrsAt  time.Time
	// mgrScan is the process scan shared by every loop of the watcher.
	mgrScan *managerScan
}

type riskKey struct {
	kind string
	k    key
}

// newNSLoop opens the namespace's sockets and reads its initial state.
func newNSLoop(opts *Options, m *Metrics, mgrScan *managerScan, t *netns.Target, name string) (*nsLoop, error) {
	l := &nsLoop{
		opts: opts, m: m, lg: opts.Logger, t: t, name: name, mgrScan: mgrScan,
		links: map[int]Link{}, routes: routeSet{}, judged: judged{},
		neigh: map[neighKey]uint16{}, known: map[famTable]bool{}, ignDev: map[[2]int]bool{},
		lastErr: map[famTable]Route{}, unnamed: map[key]unnamedRestore{}, risks: map[riskKey]bool{}, procCache: map[uint32]procEntry{},
		conf: map[int]devConf{}, checks: map[string]report.CheckStatus{},
	}
	err := t.Do(func() error {
		var err error
		if l.mon, err = openSock(monitorGroups, opts.deps.monitorRcvBuf, opts.deps.monitorWait); err != nil {
			return err
		}
		if l.dump, err = openSock(nil, 0, time.Second); err != nil {
			l.mon.close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", l.name, err)
	}
	for _, fam := range []int{4, 6} {
		l.known[famTable{fam, unix.RT_TABLE_MAIN}] = true
	}
	m.initNetns(l.name, opts.Repair)
	l.record(report.Check{Name: checkMonitor, Status: report.Ran})
	if opts.Repair {
		l.repair = newRepairer(l)
	}
	now := time.Now()
	if err := l.refreshLinks(); err != nil {
		l.close()
		return nil, err
	}
	if err := l.resync(now, false); err != nil {
		l.close()
		return nil, err
	}
	l.readSysctls(context.Background())
	l.judged.reconcile(l.routes, now, l.ignore)
	l.publish(now)
	if s := l.collectSources(context.Background(), collect.Counters); s.Counters != nil {
		l.prev = s.Counters
	}
	return l, nil
}

func (l *nsLoop) close() {
	l.mon.close()
	l.dump.close()
}

// ignore reports whether the kernel skips link-down routes of family fam
// through device ifindex.
func (l *nsLoop) ignore(fam, ifindex int) bool {
	fi := btoi(fam == 6)
	return l.ignLD[fi] || l.ignDev[[2]int{fi, ifindex}]
}

// refreshLinks re-reads the link table.
func (l *nsLoop) refreshLinks() error {
	began := time.Now()
	links, err := l.dump.dumpLinks()
	l.recordRead(checkLinks, began, err)
	if err != nil {
		return fmt.Errorf("watch %s: %w", l.name, err)
	}
	l.links = links
	return nil
}

// resync replaces the route set with a fresh dump; log says whether to
// announce it (after ENOBUFS).
func (l *nsLoop) resync(now time.Time, announce bool) error {
	began := time.Now()
	rs, err := l.dump.dumpRoutes(now)
	l.recordRead(checkRoutes, began, err)
	if err != nil {
		return fmt.Errorf("watch %s: %w", l.name, err)
	}
	set := routeSet{}
	for _, r := range rs {
		l.linkState(&r)
		l.keepExpiry(&r, now)
		set[r.key()] = r
		l.known[famTable{r.Family, r.Table}] = true
	}
	l.routes = set
	if announce {
		l.lg.Warn("netlink socket overran (ENOBUFS): state rebuilt from a full dump",
			slog.String("event", EventResync), slog.String("netns", l.name), slog.Int("default_routes", len(set)))
	}
	return nil
}

// run is the namespace's loop; it returns when ctx ends or the namespace
// goes away.
func (l *nsLoop) run(ctx context.Context) error {
	defer l.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan batch, 16)
	// The receiver ends before the sockets close (deferred above, so run
	// after this): it must never read a closed, or reused, descriptor.
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		l.receive(ctx, ch)
	}()
	defer func() {
		cancel()
		l.mon.wake() // its receive waits up to monitorWait otherwise
		<-recvDone
	}()
	tick := time.NewTicker(l.opts.Interval)
	defer tick.Stop()
	// The fast re-check ticks only while something waits for it (a lost
	// route within fastRecheckFor, a restored line waiting for its
	// sender): idle, a loop wakes only for its interval.
	var fast *time.Ticker
	var fastC <-chan time.Time
	defer func() {
		if fast != nil {
			fast.Stop()
		}
	}()
	l.expiry = time.NewTimer(time.Hour)
	defer l.expiry.Stop()
	defer func() { l.flushUnnamed(ctx, time.Now(), true) }()
	l.armExpiry(time.Now())
	var repairCh <-chan repairMsg
	if l.repair != nil {
		repairCh = l.repair.done
		defer l.repair.stop()
	}
	for {
		switch need := l.needsFastRecheck(time.Now()); {
		case need && fast == nil:
			fast = time.NewTicker(fastRecheck)
			fastC = fast.C
		case !need && fast != nil:
			fast.Stop()
			fast, fastC = nil, nil
		}
		select {
		case <-ctx.Done():
			return nil
		case b := <-ch:
			if b.err != nil {
				l.record(report.Check{Name: checkMonitor, Status: report.Failed, Detail: b.err.Error()})
				return b.err
			}
			l.handle(ctx, b)
		case <-l.expiry.C:
			now := time.Now()
			if err := l.resync(now, false); err == nil {
				l.settle(ctx, now, nil)
			}
		case <-tick.C:
			if gone := l.interval(ctx); gone {
				return errNetnsGone
			}
		case <-fastC:
			l.flushUnnamed(ctx, time.Now(), false)
			if now := time.Now(); l.awaitingReturn(now) {
				if err := l.resync(now, false); err == nil {
					l.settle(ctx, now, nil)
				}
			}
		case msg := <-repairCh:
			l.repair.handle(ctx, msg)
		}
	}
}

var errNetnsGone = errors.New("namespace gone")

// monitorWait bounds one wait of the monitor's receive. The loop wakes
// the receiver when it stops (nlSock.wake), so this is only how often an
// idle receiver looks at its context by itself: hundreds of namespaces'
// receivers waking four times a second cost more CPU than all their
// interval checks.
const monitorWait = 10 * time.Second

// fastRecheck is how often the routes are re-read while a family/table
// has lost its default route, for at most fastRecheckFor after the loss.
// A route can come back with no netlink news: an RA that refreshes a route
// which expired in place (still listed) renews it silently, and so does
// the kernel clearing link-down flags. Without this, the return would be
// seen only at the next interval (15 s by default), with the presence
// gauge at 0 and alerts firing for a host that works.
const (
	fastRecheck    = 500 * time.Millisecond
	fastRecheckFor = 10 * time.Minute
)

// needsFastRecheck reports whether the fast re-check has work: a
// route-restored line waiting for its sender, or a loss within
// fastRecheckFor whose family/table may still be empty (awaitingReturn
// says which). When it has none, its tick would do nothing.
func (l *nsLoop) needsFastRecheck(now time.Time) bool {
	return len(l.unnamed) > 0 || (len(l.lastErr) > 0 && now.Sub(l.lostAt) <= fastRecheckFor)
}

// awaitingReturn reports whether some family/table that lost its default
// route has none usable now, within fastRecheckFor of the last loss.
func (l *nsLoop) awaitingReturn(now time.Time) bool {
	if now.Sub(l.lostAt) > fastRecheckFor {
		return false
	}
	for ft := range l.lastErr {
		if !l.presentNow(ft, now) {
			return true
		}
	}
	return false
}

// lostGateway reports whether k is the gateway of a route lost and not
// back: its neighbour news can announce the way back.
func (l *nsLoop) lostGateway(k neighKey) bool {
	for _, r := range l.lastErr {
		if r.Ifindex == k.ifindex && r.Gateway == k.addr {
			return true
		}
	}
	return false
}

// receive drains the monitor socket in batches. A full channel blocks it,
// the socket then overruns and ENOBUFS leads to a resync: memory stays
// bounded whatever the event rate.
func (l *nsLoop) receive(ctx context.Context, ch chan<- batch) {
	send := func(b batch) bool {
		select {
		case ch <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		if l.opts.deps.beforeRecv != nil {
			l.opts.deps.beforeRecv(ctx)
		}
		msgs, err := l.mon.recv(false)
		if errors.Is(err, errRecvTimeout) {
			continue
		}
		if errors.Is(err, unix.ENOBUFS) {
			l.drainStale()
			if !send(batch{resync: true}) {
				return
			}
			continue
		}
		if err != nil {
			send(batch{err: fmt.Errorf("watch %s: monitor: %w", l.name, err)})
			return
		}
		// Drain what is queued now: news of one kernel operation arrive
		// together, and the loop wants them in one batch. Bounded.
		for i := 0; i < 256; i++ {
			more, err := l.mon.recv(true)
			if err != nil {
				if errors.Is(err, unix.ENOBUFS) {
					l.drainStale()
					msgs = append(msgs, nlMsg{Type: unix.NLMSG_OVERRUN})
				}
				break
			}
			msgs = append(msgs, more...)
		}
		if !send(batch{msgs: msgs}) {
			return
		}
	}
}

// drainStale empties the monitor socket after ENOBUFS, discarding what it
// holds. Once a netlink socket has overrun, the kernel drops every further
// notification for it silently (NETLINK_S_CONGESTED: no second ENOBUFS)
// until its queue has been emptied; a dump taken before that could miss
// a change whose notification was dropped after it. The dump that follows
// supersedes what is discarded. Bounded: the queue holds at most the
// receive buffer.
func (l *nsLoop) drainStale() {
	for i := 0; i < 1<<16; i++ {
		if _, err := l.mon.recv(true); err != nil && !errors.Is(err, unix.ENOBUFS) {
			return // errRecvTimeout: empty, the kernel delivers again
		}
	}
}

// handle applies one batch: link, address, netconf and neighbour news
// first (they explain route news), then route news, then a re-dump when
// something happened that IPv4 answers with a silent flush.
func (l *nsLoop) handle(ctx context.Context, b batch) {
	now := time.Now()
	needDump := b.resync
	carrierChanged := false
	var cameUp []int // devices that came up or got their carrier back
	for _, m := range b.msgs {
		switch m.Type {
		case unix.NLMSG_OVERRUN:
			needDump, b.resync = true, true
		case unix.RTM_NEWLINK:
			nl, ok := parseLink(m.Data)
			if !ok {
				continue
			}
			old, had := l.links[nl.Index]
			if had && old.Up && !nl.Up {
				l.hist.add(happening{At: now, Kind: hapLinkDown, Ifindex: nl.Index})
			}
			if had && old.Carrier && !nl.Carrier && nl.Up {
				l.hist.add(happening{At: now, Kind: hapCarrierLost, Ifindex: nl.Index})
			}
			if !had || old.Up != nl.Up || old.Carrier != nl.Carrier || old.Name != nl.Name {
				needDump = true
			}
			if had && old.Carrier != nl.Carrier {
				carrierChanged = true
			}
			if had && nl.Up && nl.Carrier && (!old.Up || !old.Carrier) {
				cameUp = append(cameUp, nl.Index)
			}
			l.links[nl.Index] = nl
		case unix.RTM_DELLINK:
			if dl, ok := parseLink(m.Data); ok {
				l.hist.add(happening{At: now, Kind: hapLinkDeleted, Ifindex: dl.Index})
				delete(l.links, dl.Index)
				needDump = true
			}
		case unix.RTM_NEWADDR:
			// An address back can bring a route back (a network manager
			// re-adds both): re-read while one is lost.
			if len(l.lastErr) > 0 {
				needDump = true
			}
		case unix.RTM_DELADDR:
			if a, ok := parseAddr(m.Data); ok {
				l.hist.add(happening{At: now, Kind: hapAddrRemoved, Ifindex: a.Ifindex, Family: a.Family})
				needDump = true
			}
		case unix.RTM_NEWNETCONF:
			if n, ok := parseNetconf(m.Data); ok {
				if n.Forwarding == 1 {
					l.hist.add(happening{At: now, Kind: hapForwardingOn, Ifindex: n.Ifindex, Family: n.Family})
				}
				if n.IgnoreLinkdown >= 0 {
					fi := btoi(n.Family == 6)
					switch {
					case n.Ifindex == netconfIfindexAll:
						l.ignLD[fi] = n.IgnoreLinkdown == 1
					case n.Ifindex > 0 && n.IgnoreLinkdown == 1:
						l.ignDev[[2]int{fi, n.Ifindex}] = true
					case n.Ifindex > 0:
						delete(l.ignDev, [2]int{fi, n.Ifindex})
					}
				}
				needDump = true
			}
		case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
			if n, ok := parseNeigh(m.Data); ok {
				k := neighKey{n.Ifindex, n.Addr}
				if l.lostGateway(k) && l.awaitingReturn(now) {
					needDump = true // the router answers again: re-read
				}
				if !l.isGateway(k) {
					continue
				}
				if m.Type == unix.RTM_DELNEIGH {
					delete(l.neigh, k)
				} else {
					l.neigh[k] = n.State
				}
			}
		}
	}
	// Route news one at a time, in order: a deletion and a re-add in one
	// batch are a flap, a loss and a return, not "nothing happened".
	for _, m := range b.msgs {
		switch m.Type {
		case unix.RTM_NEWROUTE:
			r, ok := parseRoute(m.Data, now)
			if !ok {
				continue
			}
			if m.Flags&unix.NLM_F_REPLACE != 0 {
				needDump = true
			}
			l.linkState(&r)
			l.keepExpiry(&r, now)
			l.routes[r.key()] = r
			l.known[famTable{r.Family, r.Table}] = true
			if u, ok := l.unnamed[r.key()]; ok {
				delete(l.unnamed, r.key())
				l.logRestored(ctx, u.route, u.sameAsLost, u.at, m.PID)
			}
			l.settle(ctx, now, map[key]uint32{r.key(): m.PID})
		case unix.RTM_DELROUTE:
			r, ok := parseRoute(m.Data, now)
			if !ok {
				continue
			}
			delete(l.routes, r.key())
			l.settle(ctx, now, map[key]uint32{r.key(): m.PID})
		}
	}
	if needDump {
		if err := l.resync(now, b.resync); err != nil {
			l.lg.Error("route dump failed", slog.String("event", EventError), slog.String("netns", l.name), slog.String("error", err.Error()))
		}
		l.settle(ctx, now, nil)
	}
	if carrierChanged {
		// A carrier change flags routes link-down in place (no route
		// news): with link-down routes in use it is a risk, said now.
		l.readSysctls(ctx)
		l.checkRisks(ctx, now)
	}
	if l.repair != nil {
		// A repair waiting for its device tries now (after the settle
		// above, so a route the kernel kept is seen back first).
		for _, idx := range cameUp {
			l.repair.linkChanged(ctx, idx, now)
		}
	}
}

// linkState names the route's device and sets its link-down flag from the
// device's carrier. The kernel flags routes link-down (and clears the flag)
// from its link watch, which can run after the link notification that
// announced the carrier change and sends no route news of its own: a dump
// made on that notification may still show the old flag. The device's
// carrier is what the flag is about to say, so it decides.
func (l *nsLoop) linkState(r *Route) {
	lk, ok := l.links[r.Ifindex]
	r.Dev = lk.Name
	if !ok || !lk.Up {
		return
	}
	if lk.Carrier {
		r.Flags &^= rtnhLinkdown
	} else {
		r.Flags |= rtnhLinkdown
	}
}

// expiryTick is the resolution of rta_expires (clock ticks, 10 ms).
const expiryTick = time.Second / userHZ

// keepExpiry resolves an ambiguity of the kernel's report: rta_expires is
// the time left in 10 ms ticks, truncated, and 0 means "no lifetime", so a
// route read within a tick of its expiry looks permanent. A route that had
// a lifetime ending within two ticks of now keeps it; one that becomes
// permanent any other time (an RA with an infinite lifetime, a route
// replaced by hand) is taken as permanent.
func (l *nsLoop) keepExpiry(r *Route, now time.Time) {
	if r.HasExpiry {
		return
	}
	old, ok := l.routes[r.key()]
	if !ok || !old.HasExpiry {
		return
	}
	if d := now.Sub(old.ExpiresAt); d > -2*expiryTick && d < 2*expiryTick {
		r.HasExpiry, r.ExpiresAt = true, old.ExpiresAt
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (l *nsLoop) isGateway(k neighKey) bool {
	for _, r := range l.routes {
		if r.Ifindex == k.ifindex && r.Gateway == k.addr {
			return true
		}
	}
	return false
}

// settle reconciles the route set with what was judged usable, logs and
// counts losses and returns, and republishes the gauges. senders holds the
// netlink port id of the message being settled, by route: who deleted a
// lost route, who added a restored one.
func (l *nsLoop) settle(ctx context.Context, now time.Time, senders map[key]uint32) {
	dels := senders
	lost, added := l.judged.reconcile(l.routes, now, l.ignore)
	linksFresh, confFresh := false, false
	for _, r := range lost {
		pid := dels[r.key()]
		in := lossInput{Route: r, Now: now, PortID: pid, Recent: l.hist.since(now.Add(-correlationWindow))}
		if pid != 0 {
			in.Process = l.processOf(pid)
		} else if !linksFresh {
			// The link news may still be on its way: ask the kernel.
			_ = l.refreshLinks()
			linksFresh = true
		}
		if pid == 0 && r.Family == 6 && r.Protocol == protoRA && !confFresh {
			// So may the netconf news of forwarding switched on, which
			// the kernel sends before it purges RA routes: a dump can see
			// the purge first. Ask the kernel too.
			confFresh = true
			l.readSysctls(ctx)
			in.Recent = l.hist.since(now.Add(-correlationWindow))
		}
		in.Link, in.LinkKnown = l.links[r.Ifindex]
		reason, detail := attribute(in)
		ft := famTable{r.Family, r.Table}
		l.lastErr[ft] = r
		l.lostAt = now
		l.m.loss(l.name, r.Family, reason)
		l.publish(now)
		args := []any{slog.String("reason", string(reason)), slog.String("detail", detail)}
		if in.Process != "" {
			args = append(args, slog.String("process", in.Process))
		}
		if pid != 0 {
			args = append(args, slog.Uint64("portid", uint64(pid)))
		}
		args = append(args, l.ownerArgs(r)...)
		if !l.presentNow(ft, now) {
			args = append(args, slog.Bool("family_table_empty", true))
		}
		logRoute(ctx, l.lg, slog.LevelError, EventRouteLost, "default route lost", l.name, r, now, args...)
		if l.repair != nil {
			l.repair.lost(ctx, r, reason, now)
		}
	}
	for _, r := range added {
		ft := famTable{r.Family, r.Table}
		if prev, ok := l.lastErr[ft]; ok {
			delete(l.lastErr, ft)
			pid, sent := senders[r.key()]
			who := ProtoName(r.Protocol)
			conf, read := l.conf[r.Ifindex]
			if !read {
				conf = devConf{Forwarding: -1, AcceptRA: -1}
			}
			if !sent && sentByProcess(r.Protocol, conf) {
				// Found by a dump: the route news naming its sender is
				// still on its way.
				l.unnamed[r.key()] = unnamedRestore{route: r, sameAsLost: prev.key() == r.key(), at: now}
			} else {
				who = l.logRestored(ctx, r, prev.key() == r.key(), now, pid)
			}
			if l.repair != nil {
				l.repair.restored(r, who)
			}
		} else {
			logRoute(ctx, l.lg, slog.LevelInfo, EventRouteAdded, "default route added", l.name, r, now)
		}
	}
	if len(lost) == 0 {
		l.publish(now)
	}
	l.armExpiry(now)
}

// noteForwardingOn adds a forwarding-on happening for every device whose
// IPv6 forwarding was read 0 before and 1 now (pure; a device not read
// before tells nothing).
func noteForwardingOn(h *history, before, after map[int]devConf, now time.Time) bool {
	found := false
	for i, c := range after {
		if b, ok := before[i]; ok && b.Forwarding == 0 && c.Forwarding == 1 {
			h.add(happening{At: now, Kind: hapForwardingOn, Ifindex: i, Family: 6})
			found = true
		}
	}
	return found
}

// unnamedRestore is a route-restored line waiting for its sender.
type unnamedRestore struct {
	route      Route
	sameAsLost bool
	at         time.Time
}

// unnamedWait bounds the wait of a route-restored line for its sender.
const unnamedWait = 500 * time.Millisecond

// sentByProcess reports whether routes of proto reach the kernel from a
// process through netlink (kernel and redirect routes are the kernel's
// own, port id 0; RA routes too, unless the device's accept_ra is 0).
func sentByProcess(proto uint8, conf devConf) bool {
	switch proto {
	case protoRA:
		// The kernel learns RA routes itself only on a device that takes
		// RAs; with accept_ra=0 (read, not unknown) a network manager's
		// own RA client (systemd-networkd, NetworkManager) installed it.
		return conf.AcceptRA == 0
	case unix.RTPROT_KERNEL, unix.RTPROT_REDIRECT:
		return false
	}
	return true
}

// logRestored logs a route-restored line naming who sent the route (pid:
// its netlink port id, 0 when unknown) and returns that name.
func (l *nsLoop) logRestored(ctx context.Context, r Route, sameAsLost bool, at time.Time, pid uint32) string {
	var process string
	if pid != 0 && r.Protocol != ProtoSynscope {
		process = l.processOf(pid)
	}
	who := restorerName(r.Protocol, process)
	args := []any{slog.String("restored_by", who), slog.Bool("same_as_lost", sameAsLost)}
	if process == "" && r.Protocol == protoRA {
		// A refresh of a listed route sends no news naming its sender;
		// on a device whose kernel takes no RAs, the RA client is the
		// network manager running for it.
		if c, read := l.conf[r.Ifindex]; read && c.AcceptRA == 0 {
			if l.mgrsAt.IsZero() {
				l.scanManagers(time.Now())
			}
			if o := netmgr.OwnerOf(l.mgrs, r.Ifindex); o.Acts() {
				who = o.Name
				args[0] = slog.String("restored_by", who)
				args = append(args, slog.String("restored_by_detail", "the device's accept_ra is 0, so the kernel learns no RA routes there; its RA client is "+o.Name+": "+o.How))
			}
		}
	}
	if process != "" {
		args = append(args, slog.String("process", process))
	}
	logRoute(ctx, l.lg, slog.LevelInfo, EventRouteRestored, "default route restored", l.name, r, at, args...)
	return who
}

// flushUnnamed logs the route-restored lines whose sender did not show
// within unnamedWait (or all of them: the loop ends), without a process.
func (l *nsLoop) flushUnnamed(ctx context.Context, now time.Time, all bool) {
	for k, u := range l.unnamed {
		if all || now.Sub(u.at) >= unnamedWait {
			delete(l.unnamed, k)
			l.logRestored(ctx, u.route, u.sameAsLost, u.at, 0)
		}
	}
}

// presentNow reports whether (family, table) has a usable route.
func (l *nsLoop) presentNow(ft famTable, now time.Time) bool {
	return l.routes.present(now, l.ignore)[ft]
}

// publish sets the presence and expiry gauges.
func (l *nsLoop) publish(now time.Time) {
	pres := l.routes.present(now, l.ignore)
	for ft := range l.known {
		l.m.setPresent(l.name, ft, pres[ft])
	}
	for _, fam := range []int{4, 6} {
		var min time.Duration
		found := false
		for _, r := range l.routes {
			if r.Family != fam || !r.HasExpiry || !r.Usable(now, l.ignore(fam, r.Ifindex)) {
				continue
			}
			if d := r.Remaining(now); !found || d < min {
				min, found = d, true
			}
		}
		l.m.setExpiry(l.name, fam, min.Seconds(), found)
	}
}

// armExpiry sets the timer to the earliest expiry of a usable route.
func (l *nsLoop) armExpiry(now time.Time) {
	var next time.Time
	for _, r := range l.routes {
		if !r.HasExpiry || !r.Usable(now, l.ignore(r.Family, r.Ifindex)) {
			continue
		}
		if next.IsZero() || r.ExpiresAt.Before(next) {
			next = r.ExpiresAt
		}
	}
	if !l.expiry.Stop() {
		select {
		case <-l.expiry.C:
		default:
		}
	}
	if next.IsZero() {
		l.expiry.Reset(time.Hour)
		return
	}
	// A millisecond after the instant, so the route is expired when judged.
	l.expiry.Reset(next.Sub(now) + time.Millisecond)
}

// processOf names the process owning netlink port id pid, "" if none.
// Answers are cached for a few seconds (bounded), so a burst of deletions
// by one program costs one /proc scan.
func (l *nsLoop) processOf(pid uint32) string {
	now := time.Now()
	if c, ok := l.procCache[pid]; ok && now.Sub(c.at) < 5*time.Second {
		return c.name
	}
	name := l.lookupProcess(pid)
	if name != "" {
		// Live: name its parents too.
		if i := strings.LastIndexByte(name, '['); i > 0 {
			if p, err := strconv.ParseUint(strings.TrimSuffix(name[i+1:], "]"), 10, 32); err == nil {
				if _, ppid, ok := procParent("/proc", uint32(p)); ok {
					if chain := l.procs.parents(ppid, "", "/proc"); len(chain) > 0 {
						name += " ← " + strings.Join(chain, " ← ")
					}
				}
			}
		}
	} else if l.procs != nil {
		// Exited before /proc could be read: the eBPF history knows it
		// by its id, which netlink's autobind made the port id.
		name = l.procs.exitedSender(pid, monotonic())
	}
	if len(l.procCache) >= 64 {
		clear(l.procCache)
	}
	l.procCache[pid] = procEntry{name, now}
	return name
}

type procEntry struct {
	name string
	at   time.Time
}

func (l *nsLoop) lookupProcess(pid uint32) string {
	var ino uint32
	var ok bool
	_ = l.t.Do(func() error {
		ino, ok = netlinkInode(netns.ProcNet, pid)
		return nil
	})
	if !ok {
		return ""
	}
	return ownerOf("/proc", ino, pid)
}

// interval runs the periodic checks; it reports whether the namespace is
// gone.
func (l *nsLoop) interval(ctx context.Context) bool {
	if !l.stillThere() {
		return true
	}
	now := time.Now()
	l.scanManagers(now)
	l.readSysctls(ctx)
	if err := l.refreshLinks(); err == nil {
		if err := l.resync(now, false); err == nil {
			l.settle(ctx, now, nil)
		}
	}
	l.checkRisks(ctx, now)
	l.readCountersListeners(ctx)
	if l.repair != nil {
		l.repair.tick(ctx, time.Now())
	}
	l.m.lastCheck.Set(float64(time.Now().UnixNano()) / 1e9)
	return false
}

// stillThere checks that the namespace file still names the namespace we
// hold (our handle keeps a deleted namespace alive, so ask the file).
func (l *nsLoop) stillThere() bool {
	if l.t.Current {
		return true
	}
	var st unix.Stat_t
	if err := unix.Stat(l.t.Path, &st); err != nil {
		return false
	}
	return st.Ino == l.t.Inode
}

// checkRisks evaluates route-at-risk and logs each risk when it starts.
func (l *nsLoop) checkRisks(ctx context.Context, now time.Time) {
	var rs []Route
	gwFams := map[int]bool{}
	for _, r := range l.routes {
		rs = append(rs, r)
		if r.Gateway.IsValid() {
			gwFams[r.Family] = true
		}
	}
	sortRoutes(rs)
	for fam := range gwFams {
		began := time.Now()
		ns, err := l.dump.dumpNeighbors(fam)
		l.recordRead(checkNeighbours, began, err)
		if err != nil {
			continue
		}
		for _, n := range ns {
			k := neighKey{n.Ifindex, n.Addr}
			if l.isGateway(k) {
				l.neigh[k] = n.State
			}
		}
	}
	found := assessRisks(rs, now, l.opts.RiskLifetime, l.conf, l.neigh, l.ignore)
	cur := map[riskKey]bool{}
	on := map[[2]string]bool{}
	for _, x := range found {
		rk := riskKey{x.Kind, x.Route.key()}
		cur[rk] = true
		on[[2]string{FamilyName(x.Route.Family), x.Kind}] = true
		if !l.risks[rk] {
			logRoute(ctx, l.lg, slog.LevelWarn, EventRouteAtRisk, "default route at risk", l.name, x.Route, now,
				slog.String("risk", x.Kind), slog.String("detail", x.Detail))
		}
	}
	l.risks = cur
	for _, fam := range []int{4, 6} {
		for _, k := range riskKinds {
			l.m.setRisk(l.name, fam, k, on[[2]string{FamilyName(fam), k}])
		}
	}
}

// scanManagers lists the network managers running in the namespace,
// from the process scan the loops share (managerScan).
func (l *nsLoop) scanManagers(now time.Time) {
	l.mgrs, l.mgrsAt, l.mgrsErr = l.mgrScan.running(l.t.Inode, now)
}

// ownerArgs names the network manager that owns a lost route's device,
// for the route-lost line: owner and owner_detail (what was read, and the
// time of the process scan it comes from), or owner "not checked" with
// the reason when /proc could not be read; no field when no manager runs
// in the namespace.
func (l *nsLoop) ownerArgs(r Route) []any {
	if l.mgrsAt.IsZero() {
		l.scanManagers(time.Now())
	}
	if l.mgrsErr != nil {
		return []any{slog.String("owner", "not checked"), slog.String("owner_detail", l.mgrsErr.Error())}
	}
	o := netmgr.OwnerOf(l.mgrs, r.Ifindex)
	if o.Name == "" {
		return nil
	}
	return []any{slog.String("owner", o.Name), slog.String("owner_detail", o.How+" (process scan at "+l.mgrsAt.UTC().Format("15:04:05")+")")}
}

package watch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Repair guards, in the order they are checked (docs/watch.md). 1-4 run
// here, on the loop; 5-10 are repair_guards.go's guardChain, off the loop.
//  1. only a default route watch saw usable before (it comes from the
//     judged set) and only in the family and table it was lost from;
//  2. an operator hold file <HoldDir>/<netns>-<family> means the removal is
//     on purpose: never repaired while it exists;
//  3. hold-down: RA, DHCP or the network manager get HoldDown first, and
//     the hold-down doubles each time a process deletes a route watch
//     restored (a fight; countsAsFight); after maxFights watch stops
//     repairing that family for an hour and says so;
//  4. rate limit: RepairLimit per hour per namespace and family;
//  5. the device is there, admin up, with carrier (else the repair waits
//     for it);
//  6. an RA route: a Router Solicitation first; an RA restores it the normal
//     way. The route is re-added only if none comes and the kernel would
//     not accept RAs anyway (forwarding on with accept_ra=1, or accept_ra=0);
//     a configuration that cannot be read refuses;
//  7. the gateway answers ARP / neighbour discovery (a reachable entry, or
//     watch's own request answered);
//  8. right before writing, links and routes are re-read: if the device
//     changed or a default route is back, nothing is written;
//  9. the route is re-added through netlink with its exact attributes,
//     protocol ProtoSynscope (0x53), NLM_F_EXCL (never replaces anything);
//  10. verified by a route lookup through the new route.
//
// An attempt that fails for a transient reason (a tentative address, a
// gateway not answering yet, ...) is retried with back-off (retryDelay, at
// most maxTransientTries), each try logged. Dry-run walks every guard and
// logs what it would do, sending nothing (no solicitation, no neighbour
// probe) and writing nothing.

// maxFights is how many re-deletions of a restored route watch accepts
// before it stops repairing the family for fightPause.
// maxPending is how long a repair waiting for its device keeps being
// retried. maxTransientTries bounds the tries of a repair that keeps
// failing for a transient reason (retryDelay apart).
const (
	maxFights         = 3
	fightPause        = time.Hour
	maxPending        = time.Hour
	maxTransientTries = 12
)

// retryDelay is the back-off before transient try n+1 (n >= 1): 250 ms,
// doubling, at most 5 s; the 12 tries span about 45 s plus their own
// probes, longer than duplicate address detection, a gateway's ARP after
// a reset or an RA interval of a busy router.
func retryDelay(n int) time.Duration {
	const first, most = 250 * time.Millisecond, 5 * time.Second
	if n < 1 {
		n = 1
	}
	if n > 6 {
		return most
	}
	return min(first<<(n-1), most)
}

// countsAsFight reports whether the loss of a route watch restored means
// someone removed it on purpose (a fight): a deletion a process sent. An
// interface reset, carrier loss, address removal or expiry takes every
// route with it, watch's too: that is the next loss to repair, not a
// fight.
func countsAsFight(reason Reason) bool {
	return reason == ReasonDeletedByProcess || reason == ReasonDeletedByProgram
}

// repairMsg reaches the namespace loop: a hold-down ended, or an attempt
// finished.
type repairMsg struct {
	ft    famTable
	due   bool
	gen   uint64
	out   outcome
	route Route
}

type pendingRepair struct {
	route  Route
	reason Reason
	lostAt time.Time
	gen    uint64
	timer  *time.Timer
	// tries counts attempts that failed for a transient reason since the
	// loss or the device's last change; retryAt is when the next may run
	// (zero: at the next tick or link news).
	tries   int
	retryAt time.Time
	// waiting is the last "not now" said, logged once per change.
	waiting string
}

// repairer is one namespace's guarded repair. Its maps belong to the loop
// goroutine; only attempt runs elsewhere, at most one per family/table.
type repairer struct {
	l        *nsLoop
	done     chan repairMsg
	pending  map[famTable]*pendingRepair
	inFlight map[famTable]bool
	history  map[int][]time.Time // family → repair times in the last hour
	ours     map[key]time.Time   // routes watch added, when
	fights   map[int]int
	paused   map[int]time.Time
	gen      uint64
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

func newRepairer(l *nsLoop) *repairer {
	ctx, cancel := context.WithCancel(context.Background())
	return &repairer{
		l: l, done: make(chan repairMsg, 16),
		pending: map[famTable]*pendingRepair{}, inFlight: map[famTable]bool{},
		history: map[int][]time.Time{}, ours: map[key]time.Time{},
		fights: map[int]int{}, paused: map[int]time.Time{},
		ctx: ctx, cancel: cancel,
	}
}

// holdFile is the operator opt-out file for a namespace and family.
func (p *repairer) holdFile(fam int) string {
	name := strings.NewReplacer("/", "_", "\x00", "_").Replace(p.l.name)
	return filepath.Join(p.l.opts.HoldDir, name+"-"+FamilyName(fam))
}

func (p *repairer) held(fam int) bool {
	_, err := os.Stat(p.holdFile(fam))
	return err == nil
}

func (p *repairer) log(ctx context.Context, lvl slog.Level, msg string, r Route, action, result, detail string) {
	args := []any{slog.String("action", action)}
	if result != "" {
		args = append(args, slog.String("result", result))
	}
	if detail != "" {
		args = append(args, slog.String("detail", detail))
	}
	if p.l.opts.DryRun {
		args = append(args, slog.Bool("dry_run", true))
	}
	logRoute(ctx, p.l.lg, lvl, EventRepair, msg, p.l.name, r, time.Now(), args...)
}

// finish records a final result: one log line and one metric.
func (p *repairer) finish(ctx context.Context, r Route, result, detail string) {
	p.l.m.repair(p.l.name, r.Family, result)
	lvl := slog.LevelInfo
	switch result {
	case RepairFailed, RepairVerifyFailed, RepairRefused:
		lvl = slog.LevelError
	case RepairRateLimited, RepairHeld:
		lvl = slog.LevelWarn
	}
	p.log(ctx, lvl, "repair "+result, r, "result", result, detail)
}

// lost is called by the loop for every lost route.
func (p *repairer) lost(ctx context.Context, r Route, reason Reason, now time.Time) {
	ft := famTable{r.Family, r.Table}
	if at, ok := p.ours[r.key()]; ok || r.Protocol == ProtoSynscope {
		delete(p.ours, r.key())
		if ok && now.Sub(at) < fightPause && countsAsFight(reason) {
			p.fights[r.Family]++
		}
	}
	if p.fights[r.Family] >= maxFights {
		p.fights[r.Family] = 0
		p.paused[r.Family] = now.Add(fightPause)
		p.finish(ctx, r, RepairRefused, fmt.Sprintf("the route watch restored was deleted again %d times (an operator, or a network manager that removes foreign routes): not repairing %s for %s", maxFights, FamilyName(r.Family), fightPause))
		return
	}
	if until, ok := p.paused[r.Family]; ok && now.Before(until) {
		p.finish(ctx, r, RepairRefused, "repair of this family is paused after repeated re-deletions until "+until.UTC().Format(time.RFC3339))
		return
	}
	if p.held(r.Family) {
		p.finish(ctx, r, RepairHeld, "operator hold file "+p.holdFile(r.Family)+" exists: the removal is on purpose")
		return
	}
	hold := p.l.opts.HoldDown << p.fights[r.Family]
	if old := p.pending[ft]; old != nil {
		old.timer.Stop()
	}
	pr := &pendingRepair{route: r, reason: reason, lostAt: now, retryAt: now.Add(hold)}
	p.arm(ft, pr, hold)
	p.pending[ft] = pr
	p.log(ctx, slog.LevelInfo, "repair scheduled after hold-down", r, "scheduled", "", fmt.Sprintf("hold-down %s (lost: %s)", hold, reason))
}

// restored is called when a default route of a family/table is back.
func (p *repairer) restored(r Route, who string) {
	ft := famTable{r.Family, r.Table}
	if pr := p.pending[ft]; pr != nil && !p.inFlight[ft] {
		pr.timer.Stop()
		delete(p.pending, ft)
		p.l.m.repair(p.l.name, r.Family, RepairNotNeeded)
		p.log(context.Background(), slog.LevelInfo, "repair not needed: the route came back", r, "cancelled", RepairNotNeeded, "restored by "+who)
	}
}

// arm (re)starts pr's timer: after d the loop gets a due message. Each
// arming has its own generation, so a message of an older timer that is
// already on its way is ignored.
func (p *repairer) arm(ft famTable, pr *pendingRepair, d time.Duration) {
	if pr.timer != nil {
		pr.timer.Stop()
	}
	p.gen++
	pr.gen = p.gen
	gen := p.gen
	pr.timer = time.AfterFunc(d, func() {
		select {
		case p.done <- repairMsg{ft: ft, due: true, gen: gen}:
		case <-p.ctx.Done():
		}
	})
}

// tick retries pending repairs that wait for their device (down, no
// carrier, gone), and gives up on those pending for maxPending.
func (p *repairer) tick(ctx context.Context, now time.Time) {
	for ft, pr := range p.pending {
		if !p.inFlight[ft] && now.Sub(pr.lostAt) > maxPending {
			pr.timer.Stop()
			delete(p.pending, ft)
			p.finish(ctx, pr.route, RepairFailed, "gave up: the guards refused for "+maxPending.String())
			continue
		}
		if !p.inFlight[ft] && !now.Before(pr.retryAt) {
			p.try(ctx, ft, pr)
		}
	}
}

// linkChanged is called by the loop when a device came up or got its
// carrier back: a repair waiting for it is tried now (the hold-down
// permitting), with a fresh budget of transient tries.
func (p *repairer) linkChanged(ctx context.Context, ifindex int, now time.Time) {
	for ft, pr := range p.pending {
		if pr.route.Ifindex != ifindex || p.inFlight[ft] {
			continue
		}
		pr.tries = 0
		if now.Before(pr.retryAt) {
			if now.Sub(pr.lostAt) >= p.l.opts.HoldDown<<p.fights[pr.route.Family] {
				pr.retryAt = now
				p.arm(ft, pr, 0)
			}
			continue
		}
		p.try(ctx, ft, pr)
	}
}

func (p *repairer) handle(ctx context.Context, m repairMsg) {
	if m.due {
		pr := p.pending[m.ft]
		if pr == nil || pr.gen != m.gen || p.inFlight[m.ft] {
			return
		}
		p.try(ctx, m.ft, pr)
		return
	}
	// An attempt finished.
	delete(p.inFlight, m.ft)
	pr := p.pending[m.ft]
	now := time.Now()
	switch m.out.Kind {
	case outcomeWait:
		if pr == nil {
			return
		}
		pr.retryAt = time.Time{} // at the next tick or link news
		if pr.waiting != m.out.Detail {
			pr.waiting = m.out.Detail
			p.log(ctx, slog.LevelWarn, "repair waits for the device, will retry", m.route, "waiting", "", m.out.Detail)
		}
		return
	case outcomeTransient:
		if pr == nil {
			return
		}
		pr.tries++
		pr.waiting = ""
		if pr.tries >= maxTransientTries {
			pr.timer.Stop()
			delete(p.pending, m.ft)
			p.finish(ctx, m.route, RepairFailed, fmt.Sprintf("gave up after %d tries over %s; last: %s",
				pr.tries, now.Sub(pr.lostAt).Round(time.Millisecond), m.out.Detail))
			return
		}
		d := retryDelay(pr.tries)
		pr.retryAt = now.Add(d)
		p.arm(m.ft, pr, d)
		p.log(ctx, slog.LevelWarn, "repair try failed for a transient reason, will retry", m.route, "retry", "",
			fmt.Sprintf("try %d of %d: %s; next try in %s", pr.tries, maxTransientTries, m.out.Detail, d))
		return
	}
	switch m.out.Result {
	case RepairReadded:
		p.ours[m.route.key()] = now
		p.history[m.route.Family] = append(p.history[m.route.Family], now)
	}
	if pr != nil {
		pr.timer.Stop()
		delete(p.pending, m.ft)
	}
	p.finish(ctx, m.route, m.out.Result, m.out.Detail)
}

// try checks the loop-side guards and starts an attempt.
func (p *repairer) try(ctx context.Context, ft famTable, pr *pendingRepair) {
	now := time.Now()
	r := pr.route
	if p.l.presentNow(ft, now) {
		pr.timer.Stop()
		delete(p.pending, ft)
		p.finish(ctx, r, RepairNotNeeded, "a default route is present again")
		return
	}
	if p.held(r.Family) {
		pr.timer.Stop()
		delete(p.pending, ft)
		p.finish(ctx, r, RepairHeld, "operator hold file "+p.holdFile(r.Family)+" exists: the removal is on purpose")
		return
	}
	hist := p.history[r.Family][:0]
	for _, t := range p.history[r.Family] {
		if now.Sub(t) < time.Hour {
			hist = append(hist, t)
		}
	}
	p.history[r.Family] = hist
	if len(hist) >= p.l.opts.RepairLimit {
		pr.timer.Stop()
		delete(p.pending, ft)
		p.finish(ctx, r, RepairRateLimited, fmt.Sprintf("%d repairs of %s in the last hour (limit %d)", len(hist), FamilyName(r.Family), p.l.opts.RepairLimit))
		return
	}
	p.inFlight[ft] = true
	g := guardChain{route: r, dryRun: p.l.opts.DryRun, rsWait: p.l.opts.RSWait, beforeReread: p.l.opts.deps.beforeReread,
		logf: func(action, detail string) { p.log(ctx, slog.LevelInfo, "repair step", r, action, "", detail) }}
	if pr.tries > 0 {
		p.log(ctx, slog.LevelInfo, "repair try", r, "try", "", fmt.Sprintf("try %d of %d", pr.tries+1, maxTransientTries))
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var out outcome
		if k, err := openKernel(p.l.t); err != nil {
			out = failure(RepairFailed, "opening a netlink socket in the namespace", err)
		} else {
			out = g.run(p.ctx, k)
			k.close()
		}
		select {
		case p.done <- repairMsg{ft: ft, route: r, out: out}:
		case <-p.ctx.Done():
		}
	}()
}

func (p *repairer) stop() {
	p.cancel()
	for _, pr := range p.pending {
		pr.timer.Stop()
	}
	p.wg.Wait()
}

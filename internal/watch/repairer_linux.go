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

// Repair guards, in the order they are checked (README "watch"):
//  1. only a default route watch saw usable before (it comes from the
//     judged set) and only in the family and table it was lost from;
//  2. an operator hold file <HoldDir>/<netns>-<family> means the removal is
//     on purpose: never repaired while it exists;
//  3. hold-down: RA, DHCP or the network manager get HoldDown first, and
//     the hold-down doubles each time a route watch restored is deleted
//     again (a fight); after maxFights watch stops repairing that family
//     for an hour and says so;
//  4. rate limit: RepairLimit per hour per namespace and family;
//  5. the device is there, admin up, with carrier;
//  6. the gateway answers ARP / neighbour discovery (the kernel is asked to
//     resolve it and the entry must become reachable);
//  7. an RA route: a Router Solicitation first; an RA restores it the normal
//     way. The route is re-added only if none comes and the kernel would
//     not accept RAs anyway (forwarding on with accept_ra=1, or accept_ra=0);
//  8. right before writing, links and routes are re-read: if the device
//     changed or a default route is back, nothing is written;
//  9. the route is re-added through netlink with its exact attributes,
//     protocol ProtoSynscope (0x53), NLM_F_EXCL (never replaces anything);
//  10. verified by a route lookup through the new route.
//
// Dry-run walks every guard and logs what it would do, sending nothing
// (no solicitation, no neighbour probe) and writing nothing.

// maxFights is how many re-deletions of a restored route watch accepts
// before it stops repairing the family for fightPause.
// maxPending is how long a refused repair keeps being retried.
const (
	maxFights  = 3
	fightPause = time.Hour
	maxPending = time.Hour
)

// repairMsg reaches the namespace loop: a hold-down ended, or an attempt
// finished.
type repairMsg struct {
	ft     famTable
	due    bool
	gen    uint64
	result string
	detail string
	route  Route
}

type pendingRepair struct {
	route  Route
	reason Reason
	lostAt time.Time
	gen    uint64
	timer  *time.Timer
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
		if ok && now.Sub(at) < fightPause {
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
	p.gen++
	pr := &pendingRepair{route: r, reason: reason, lostAt: now, gen: p.gen}
	gen := p.gen
	pr.timer = time.AfterFunc(hold, func() {
		select {
		case p.done <- repairMsg{ft: ft, due: true, gen: gen}:
		case <-p.ctx.Done():
		}
	})
	p.pending[ft] = pr
	p.log(ctx, slog.LevelInfo, "repair scheduled after hold-down", r, "scheduled", "", fmt.Sprintf("hold-down %s (lost: %s)", hold, reason))
}

// restored is called when a default route of a family/table is back.
func (p *repairer) restored(r Route) {
	ft := famTable{r.Family, r.Table}
	if pr := p.pending[ft]; pr != nil && !p.inFlight[ft] {
		pr.timer.Stop()
		delete(p.pending, ft)
		p.l.m.repair(p.l.name, r.Family, RepairNotNeeded)
		p.log(context.Background(), slog.LevelInfo, "repair not needed: the route came back", r, "cancelled", RepairNotNeeded, "restored by "+ProtoName(r.Protocol))
	}
}

// tick retries pending repairs that a guard refused (device down, ...).
func (p *repairer) tick(ctx context.Context, now time.Time) {
	for ft, pr := range p.pending {
		if !p.inFlight[ft] && now.Sub(pr.lostAt) > maxPending {
			pr.timer.Stop()
			delete(p.pending, ft)
			p.finish(ctx, pr.route, RepairFailed, "gave up: the guards refused for "+maxPending.String())
			continue
		}
		if !p.inFlight[ft] && now.Sub(pr.lostAt) >= p.l.opts.HoldDown {
			p.try(ctx, ft, pr)
		}
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
	switch m.result {
	case RepairReadded:
		p.ours[m.route.key()] = time.Now()
		p.history[m.route.Family] = append(p.history[m.route.Family], time.Now())
		fallthrough
	case RepairRestoredByRA, RepairNotNeeded, RepairDryRun, RepairVerifyFailed, RepairFailed:
		if pr != nil {
			pr.timer.Stop()
			delete(p.pending, m.ft)
		}
	case "":
		return // a guard refused: stays pending, retried at the next tick
	}
	p.finish(ctx, m.route, m.result, m.detail)
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
	a := attempt{t: p.l.t, name: p.l.name, route: r, dryRun: p.l.opts.DryRun, rsWait: p.l.opts.RSWait,
		logf: func(action, detail string) { p.log(ctx, slog.LevelInfo, "repair step", r, action, "", detail) }}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		res, detail, refused := a.run(p.ctx)
		msg := repairMsg{ft: ft, route: r, result: res, detail: detail}
		if refused != "" {
			msg.result = ""
			{
				p.l.lg.Warn("repair refused by a guard, will retry", slog.String("event", EventRepair),
					slog.String("netns", p.l.name), slog.String("family", FamilyName(r.Family)), slog.String("table", TableName(r.Table)),
					routeAttr(r, time.Now()), slog.String("action", "refused"), slog.String("detail", refused))
			}
		}
		select {
		case p.done <- msg:
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

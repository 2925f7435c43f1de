package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/routeloss"
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

// testHookBeforeReread, when set (tests only), runs after every guard
// decided to write and before the re-read: a test changes the link or the
// routes there, as another program could, and watch must not write.
var testHookBeforeReread func(r Route)

// attempt is one repair attempt, run off the loop with its own sockets.
type attempt struct {
	t      *netns.Target
	name   string
	route  Route
	dryRun bool
	rsWait time.Duration
	logf   func(action, detail string)
}

// run returns a final result and detail, or refused (a guard said not now).
func (a attempt) run(ctx context.Context) (result, detail, refused string) {
	var s *nlSock
	if err := a.t.Do(func() error {
		var err error
		s, err = openSock(nil, 0, time.Second)
		return err
	}); err != nil {
		return RepairFailed, err.Error(), ""
	}
	defer s.close()
	r := a.route
	// Guard 5: device up with carrier.
	links, err := s.dumpLinks()
	if err != nil {
		return RepairFailed, err.Error(), ""
	}
	link, ok := links[r.Ifindex]
	switch {
	case !ok:
		return "", "", "the route's device is gone"
	case !link.Up:
		return "", "", "the route's device is down"
	case !link.Carrier:
		return "", "", "the route's device has no carrier"
	case link.Name != r.Dev:
		return RepairRefused, "the device with the route's ifindex has another name now", ""
	}
	// Guard 7: an RA route asks the network first.
	if r.Family == 6 && r.Protocol == protoRA {
		if a.dryRun {
			a.logf("would-solicit", "would send a Router Solicitation and wait "+a.rsWait.String()+" for an RA")
		} else {
			if err := a.solicit(link); err != nil {
				a.logf("solicit", "router solicitation failed: "+err.Error())
			} else {
				a.logf("solicit", "router solicitation sent; waiting "+a.rsWait.String()+" for an RA")
			}
			if back, _ := a.waitRoute(ctx, s, a.rsWait); back {
				return RepairRestoredByRA, "a router advertisement restored the route after the solicitation", ""
			}
		}
		var conf map[int]devConf
		conf, _ = readDevConf(a.t, map[int]string{r.Ifindex: link.Name})
		c := conf[r.Ifindex]
		acceptsRA := c.AcceptRA == 2 || (c.AcceptRA == 1 && c.Forwarding == 0)
		if acceptsRA && !a.dryRun {
			return RepairFailed, "no router advertisement answered the solicitation and the kernel accepts RAs: not guessing a route the network does not announce", ""
		}
	}
	// Guard 6: the gateway answers.
	if r.Gateway.IsValid() {
		if a.dryRun {
			a.logf("would-check-gateway", "would ask the kernel to resolve "+r.Gateway.String()+" and require a reachable entry")
		} else if how, err := a.resolve(ctx, s, r); err != nil {
			return RepairFailed, "gateway " + r.Gateway.String() + " does not answer " + routeloss.Resolution(r.Family) + ": " + err.Error(), ""
		} else {
			a.logf("gateway-reachable", "gateway "+r.Gateway.String()+" "+how)
		}
	}
	// Guard 8: re-read right before writing.
	if testHookBeforeReread != nil {
		testHookBeforeReread(r)
	}
	now := time.Now()
	rs, err := s.dumpRoutes(now)
	if err != nil {
		return RepairFailed, err.Error(), ""
	}
	for _, x := range rs {
		if x.Family == r.Family && x.Table == r.Table && x.Usable(now, false) {
			return RepairNotNeeded, "a default route is present again (" + ProtoName(x.Protocol) + ")", ""
		}
	}
	links2, err := s.dumpLinks()
	if err != nil {
		return RepairFailed, err.Error(), ""
	}
	if l2, ok := links2[r.Ifindex]; !ok || l2.Name != link.Name || !l2.Up || !l2.Carrier {
		return RepairRefused, "the device changed between the decision and the write", ""
	}
	if a.dryRun {
		return RepairDryRun, "would add " + r.String() + " with proto synscope (0x53)", ""
	}
	// Guard 9: write with NLM_F_EXCL.
	if err := addRoute(s, r); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return RepairNotNeeded, "the kernel already has that route", ""
		}
		return RepairFailed, "adding the route: " + err.Error(), ""
	}
	a.logf("readded", "added "+r.String()+" with proto synscope (0x53)")
	// Guard 10: a route lookup goes through it.
	if err := verifyLookup(s, r); err != nil {
		return RepairVerifyFailed, err.Error(), ""
	}
	return RepairReadded, "re-added and verified by a route lookup", ""
}

// solicit sends one Router Solicitation on the route's device.
func (a attempt) solicit(link Link) error {
	var c *ndp.Conn
	var ifi *net.Interface
	err := a.t.Do(func() error {
		var err error
		if ifi, err = net.InterfaceByIndex(link.Index); err != nil {
			return err
		}
		c, _, err = ndp.Listen(ifi, ndp.LinkLocal)
		return err
	})
	if err != nil {
		return fmt.Errorf("ndp: %w", err)
	}
	defer c.Close()
	m := &ndp.RouterSolicitation{}
	if len(ifi.HardwareAddr) == 6 {
		m.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}
	}
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	return c.WriteTo(m, nil, netip.MustParseAddr("ff02::2"))
}

// waitRoute polls for a usable default route of the family/table.
func (a attempt) waitRoute(ctx context.Context, s *nlSock, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		now := time.Now()
		rs, err := s.dumpRoutes(now)
		if err != nil {
			return false, err
		}
		for _, x := range rs {
			if x.Family == a.route.Family && x.Table == a.route.Table && x.Usable(now, false) {
				return true, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false, nil
}

// NUD states.
const (
	nudIncomplete = 0x01
	nudReachable  = 0x02
	nudStale      = 0x04
	nudDelay      = 0x08
	nudProbe      = 0x10
	nudNoARP      = 0x40
	nudPermanent  = 0x80
)

func nudName(st uint16) string {
	switch {
	case st&nudReachable != 0:
		return "REACHABLE"
	case st&nudStale != 0:
		return "STALE"
	case st&nudDelay != 0:
		return "DELAY"
	case st&nudProbe != 0:
		return "PROBE"
	case st&nudPermanent != 0:
		return "PERMANENT"
	case st&nudNoARP != 0:
		return "NOARP"
	case st&nudIncomplete != 0:
		return "INCOMPLETE"
	case st&nudFailed != 0:
		return "FAILED"
	}
	return fmt.Sprintf("0x%x", st)
}

// resolve checks that the gateway answers: a REACHABLE (or permanent,
// noarp) neighbour entry counts; otherwise watch asks the gateway itself
// (ARP request / neighbour solicitation) and needs its answer.
func (a attempt) resolve(ctx context.Context, s *nlSock, r Route) (string, error) {
	ns, err := s.dumpNeighbors(r.Family)
	if err != nil {
		return "", err
	}
	for _, n := range ns {
		if n.Ifindex == r.Ifindex && n.Addr == r.Gateway && n.State&(nudReachable|nudPermanent|nudNoARP) != 0 {
			return "neighbour entry " + nudName(n.State), nil
		}
	}
	src := a.route.PrefSrc
	if !src.IsValid() && r.Family == 4 {
		src = sourceFor(s, r)
	}
	mac, err := probeGateway(ctx, a.t, r, src, 2*time.Second)
	if err != nil {
		return "", err
	}
	return "answered " + routeloss.Resolution(r.Family) + " from " + mac.String(), nil
}

// sourceFor asks the kernel which source it would use towards the gateway.
func sourceFor(s *nlSock, r Route) netip.Addr {
	hdr := make([]byte, unix.SizeofRtMsg)
	hdr[0] = afOf(r.Family)
	hdr[1] = uint8(r.Gateway.BitLen())
	msgs, err := s.do("route lookup", unix.RTM_GETROUTE, 0, hdr, []attr{{unix.RTA_DST, r.Gateway.AsSlice()}, {unix.RTA_OIF, u32b(uint32(r.Ifindex))}})
	if err != nil {
		return netip.Addr{}
	}
	var src netip.Addr
	for _, m := range msgs {
		if m.Type == unix.RTM_NEWROUTE && len(m.Data) >= unix.SizeofRtMsg {
			forAttrs(m.Data[unix.SizeofRtMsg:], func(t uint16, d []byte) {
				if t == unix.RTA_PREFSRC {
					src = addrFrom(d)
				}
			})
		}
	}
	return src
}

func putU32(b []byte, v uint32) {
	copy(b, u32b(v))
}

// addRoute adds r with protocol ProtoSynscope, never replacing anything.
func addRoute(s *nlSock, r Route) error {
	hdr := make([]byte, unix.SizeofRtMsg)
	hdr[0] = afOf(r.Family)
	hdr[3] = r.Tos
	if r.Table < 256 {
		hdr[4] = uint8(r.Table)
	} else {
		hdr[4] = unix.RT_TABLE_UNSPEC
	}
	hdr[5] = ProtoSynscope
	hdr[6] = unix.RT_SCOPE_UNIVERSE
	hdr[7] = rtnUnicast
	putU32(hdr[8:12], r.Flags&unix.RTNH_F_ONLINK)
	attrs := []attr{{unix.RTA_TABLE, u32b(uint32(r.Table))}, {unix.RTA_OIF, u32b(uint32(r.Ifindex))}}
	if r.Gateway.IsValid() {
		attrs = append(attrs, attr{unix.RTA_GATEWAY, r.Gateway.AsSlice()})
	}
	if r.Metric != 0 {
		attrs = append(attrs, attr{unix.RTA_PRIORITY, u32b(r.Metric)})
	}
	if r.PrefSrc.IsValid() {
		attrs = append(attrs, attr{unix.RTA_PREFSRC, r.PrefSrc.AsSlice()})
	}
	if r.Family == 6 && r.Pref != 0 {
		attrs = append(attrs, attr{unix.RTA_PREF, []byte{r.Pref}})
	}
	_, err := s.do("add route", unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK, hdr, attrs)
	return err
}

// lookupProbe is where verifyLookup asks the kernel to route (a
// documentation address: the lookup sends nothing).
var lookupProbe = map[int]netip.Addr{4: netip.MustParseAddr("192.0.2.1"), 6: netip.MustParseAddr("2001:db8::1")}

// verifyLookup checks that a lookup to an off-link address now leaves
// through the route's device and gateway (RTM_GETROUTE, like `ip route get`).
func verifyLookup(s *nlSock, r Route) error {
	hdr := make([]byte, unix.SizeofRtMsg)
	hdr[0] = afOf(r.Family)
	dst := lookupProbe[r.Family]
	hdr[1] = uint8(dst.BitLen())
	msgs, err := s.do("route lookup", unix.RTM_GETROUTE, 0, hdr, []attr{{unix.RTA_DST, dst.AsSlice()}})
	if err != nil {
		return fmt.Errorf("route lookup to %s after the repair: %w", dst, err)
	}
	for _, m := range msgs {
		if m.Type != unix.RTM_NEWROUTE || len(m.Data) < unix.SizeofRtMsg {
			continue
		}
		var oif int
		var gw netip.Addr
		forAttrs(m.Data[unix.SizeofRtMsg:], func(t uint16, d []byte) {
			switch t {
			case unix.RTA_OIF:
				oif = int(u32(d))
			case unix.RTA_GATEWAY:
				gw = addrFrom(d)
			}
		})
		if oif != r.Ifindex || (r.Gateway.IsValid() && gw != r.Gateway) {
			return fmt.Errorf("route lookup to %s leaves via %s dev #%d, not through the re-added route", dst, gw, oif)
		}
		return nil
	}
	return fmt.Errorf("route lookup to %s: no answer", dst)
}

package watch

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/synscope/synscope/internal/routeloss"
)

// repairKernel is everything one repair attempt reads from and does to
// its namespace. repair_linux.go implements it with netlink, sysctl reads
// and ARP / neighbour discovery; the guard chain below is pure over it, so
// it is table-tested with a fake.
type repairKernel interface {
	// Links reads the link table.
	Links() (map[int]Link, error)
	// Routes reads the default routes.
	Routes(now time.Time) ([]Route, error)
	// DevConf reads the device's IPv6 forwarding and accept_ra. An error
	// when either could not be read: never a guessed value.
	DevConf(ifindex int, name string) (routeloss.Conf, error)
	// Solicit sends one Router Solicitation on the device.
	Solicit(link Link) error
	// WaitRoute waits up to d for a usable default route of the route's
	// family and table.
	WaitRoute(ctx context.Context, r Route, d time.Duration) (bool, error)
	// Resolve checks that the gateway answers ARP / neighbour discovery
	// and says how.
	Resolve(ctx context.Context, r Route) (string, error)
	// AddRoute adds the route with protocol ProtoSynscope, NLM_F_EXCL.
	AddRoute(r Route) error
	// VerifyLookup checks that a lookup goes through the route.
	VerifyLookup(r Route) error
	// Owner finds the network manager that owns the device (netmgr.Find);
	// an error when it could not be looked for.
	Owner(link Link) (Owner, error)
}

// outcomeKind says what the loop does with an attempt's outcome.
type outcomeKind int

const (
	// outcomeFinal: done (Result says how); the pending repair ends.
	outcomeFinal outcomeKind = iota
	// outcomeWait: the device is gone, down or without carrier: nothing
	// to try until it changes. Retried on the device's link news and on
	// the interval, until maxPending.
	outcomeWait
	// outcomeTransient: the attempt failed for a reason that passes on
	// its own (a tentative address, a gateway not answering yet, an RS
	// not answered yet, a read that failed). Retried with back-off, at
	// most maxTransientTries times.
	outcomeTransient
)

// outcome is the end of one attempt.
type outcome struct {
	Kind   outcomeKind
	Result string // outcomeFinal: a Repair* result
	Detail string // why, for the log
}

func final(result, detail string) outcome {
	return outcome{Kind: outcomeFinal, Result: result, Detail: detail}
}
func waitFor(detail string) outcome   { return outcome{Kind: outcomeWait, Detail: detail} }
func transient(detail string) outcome { return outcome{Kind: outcomeTransient, Detail: detail} }

// errNoAnswer marks "the gateway did not answer ARP / neighbour
// discovery within the probe's time": the neighbour entry is still
// INCOMPLETE, which a link that just came up shows for a moment.
var errNoAnswer = errors.New("no answer")

// noAnswer is a probe that heard nothing back: errors.Is(err, errNoAnswer).
type noAnswer string

func (e noAnswer) Error() string        { return string(e) }
func (e noAnswer) Is(target error) bool { return target == errNoAnswer }

// errNoSource: the device has no IPv4 address to ask the gateway from
// (yet: a network manager or DHCP client gives it back after a reset).
var errNoSource = errors.New("no IPv4 source address on the device to ask from")

// transientCause says whether err passes on its own, and why in words.
// Everything else is permanent for the attempt.
func transientCause(err error) (string, bool) {
	switch {
	case err == nil:
		return "", false
	case errors.Is(err, errNoAnswer):
		return "the gateway has not answered yet (neighbour entry INCOMPLETE)", true
	case errors.Is(err, errNoSource):
		return "the device has no IPv4 address yet", true
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "an address of the device is still tentative (duplicate address detection runs after the link comes up)", true
	case errors.Is(err, syscall.ENETDOWN):
		return "the device is down", true
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "the gateway is not reachable on the link yet", true
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR), errors.Is(err, syscall.ENOBUFS),
		errors.Is(err, syscall.EBUSY), errors.Is(err, syscall.ETIMEDOUT):
		return "the kernel asked to try again", true
	}
	return "", false
}

// failure turns an error of step into a transient or final outcome.
func failure(result, step string, err error) outcome {
	if why, ok := transientCause(err); ok {
		return transient(step + ": " + why + " (" + err.Error() + ")")
	}
	return final(result, step+": "+err.Error())
}

// guardChain is one repair attempt's guards 5-10 (see repairer_linux.go's
// header for 1-4), run off the loop.
type guardChain struct {
	route  Route
	dryRun bool
	rsWait time.Duration
	logf   func(action, detail string)
	// beforeReread, when set (tests), runs after every guard decided to
	// write and before the re-read: a test changes the link or the routes
	// there, as another program could, and watch must not write.
	beforeReread func(r Route)
}

// run walks the guards over k and says how the attempt ended.
func (g guardChain) run(ctx context.Context, k repairKernel) outcome {
	r := g.route
	// Guard 5: the device is there, up, with carrier.
	links, err := k.Links()
	if err != nil {
		return failure(RepairRefused, "reading the link table", err)
	}
	link, ok := links[r.Ifindex]
	switch {
	case !ok:
		return waitFor("the route's device is gone")
	case !link.Up:
		return waitFor("the route's device is down")
	case !link.Carrier:
		return waitFor("the route's device has no carrier")
	case link.Name != r.Dev:
		return final(RepairRefused, "the device with the route's ifindex has another name now")
	}
	// Guard 6: an RA route asks the network first.
	if r.Family == 6 && r.Protocol == protoRA {
		if g.dryRun {
			g.logf("would-solicit", "would send a Router Solicitation and wait "+g.rsWait.String()+" for an RA")
		} else {
			serr := k.Solicit(link)
			if serr != nil {
				g.logf("solicit", "router solicitation failed: "+serr.Error())
			} else {
				g.logf("solicit", "router solicitation sent; waiting "+g.rsWait.String()+" for an RA")
			}
			back, err := k.WaitRoute(ctx, r, g.rsWait)
			if back {
				return final(RepairRestoredByRA, "a router advertisement restored the route after the solicitation")
			}
			if err != nil {
				return failure(RepairRefused, "reading the routes after the solicitation", err)
			}
			if why, ok := transientCause(serr); ok {
				return transient("router solicitation: " + why + " (" + serr.Error() + ")")
			}
		}
		conf, err := k.DevConf(r.Ifindex, link.Name)
		if err != nil {
			// Unknown is not "does not accept RAs": re-adding a route the
			// kernel would learn itself is what this guard prevents.
			return final(RepairRefused, "cannot read the device's IPv6 configuration (forwarding, accept_ra): "+err.Error())
		}
		if conf.AcceptsRAs() && !g.dryRun {
			return transient(fmt.Sprintf("no router advertisement answered the solicitation yet and the kernel accepts RAs (forwarding=%d accept_ra=%d): not guessing a route the network does not announce", conf.Forwarding, conf.AcceptRA))
		}
	}
	// Owner guard: a network manager that runs and configures the device
	// owns the route: it re-adds its routes when the link comes back (and
	// a route watch added is foreign to it). After the hold-down watch
	// adds nothing and says how to ask the owner.
	owner, err := k.Owner(link)
	if err != nil {
		return final(RepairRefused, "cannot tell whether a network manager owns the device: "+err.Error())
	}
	if owner.Acts() {
		detail := fmt.Sprintf("owned by %s (%s): watch adds no route of its own", owner.Name, owner.How)
		if c, ok := owner.FixCmd(link.Name); ok {
			detail += "; if the route does not come back run `" + c.String() + "`"
		}
		return final(RepairLeftToOwner, detail)
	}
	if owner.Name != "" {
		g.logf("owner", owner.How+"; it does not configure the device: watch repairs")
	}
	// Guard 7: the gateway answers.
	if r.Gateway.IsValid() {
		if g.dryRun {
			g.logf("would-check-gateway", "would ask the kernel to resolve "+r.Gateway.String()+" and require a reachable entry")
		} else if how, err := k.Resolve(ctx, r); err != nil {
			return failure(RepairFailed, "gateway "+r.Gateway.String()+" does not answer "+routeloss.Resolution(r.Family), err)
		} else {
			g.logf("gateway-reachable", "gateway "+r.Gateway.String()+" "+how)
		}
	}
	// Guard 8: re-read right before writing.
	if g.beforeReread != nil {
		g.beforeReread(r)
	}
	now := time.Now()
	rs, err := k.Routes(now)
	if err != nil {
		return failure(RepairRefused, "re-reading the routes", err)
	}
	for _, x := range rs {
		if x.Family == r.Family && x.Table == r.Table && x.Usable(now, false) {
			return final(RepairNotNeeded, "a default route is present again ("+ProtoName(x.Protocol)+")")
		}
	}
	links2, err := k.Links()
	if err != nil {
		return failure(RepairRefused, "re-reading the link table", err)
	}
	switch l2, ok := links2[r.Ifindex]; {
	case !ok || l2.Name != link.Name:
		return final(RepairRefused, "the device changed between the decision and the write")
	case !l2.Up || !l2.Carrier:
		return waitFor("the device went down or lost its carrier between the decision and the write")
	}
	if g.dryRun {
		return final(RepairDryRun, "would add "+r.String()+" with proto synscope (0x53)")
	}
	// Guard 9: write with NLM_F_EXCL.
	if err := k.AddRoute(r); err != nil {
		if errors.Is(err, syscall.EEXIST) {
			return final(RepairNotNeeded, "the kernel already has that route")
		}
		return failure(RepairFailed, "adding the route", err)
	}
	g.logf("readded", "added "+r.String()+" with proto synscope (0x53)")
	// Guard 10: a route lookup goes through it.
	if err := k.VerifyLookup(r); err != nil {
		return final(RepairVerifyFailed, err.Error())
	}
	return final(RepairReadded, "re-added and verified by a route lookup")
}

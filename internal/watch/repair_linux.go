package watch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/routeloss"
)

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

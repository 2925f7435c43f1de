package watch

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl"
	"github.com/synscope/synscope/internal/nl/rtnl"
)

// netconfIfindexAll is the Ifindex of the "all" configuration in netconf
// news.
const netconfIfindexAll = rtnl.NetconfIfindexAll

// userHZ is the clock-tick rate of rta_expires (jiffies_to_clock_t).
const userHZ = rtnl.UserHZ

// monitorGroups are the rtnetlink groups a namespace's monitor socket joins.
var monitorGroups = []int{
	unix.RTNLGRP_LINK,
	unix.RTNLGRP_NEIGH,
	unix.RTNLGRP_IPV4_IFADDR,
	unix.RTNLGRP_IPV6_IFADDR,
	unix.RTNLGRP_IPV4_ROUTE,
	unix.RTNLGRP_IPV6_ROUTE,
	unix.RTNLGRP_IPV4_NETCONF,
	unix.RTNLGRP_IPV6_NETCONF,
}

// nlSock is watch's rtnetlink socket (internal/nl). It belongs to the
// namespace of the thread that opened it, for its whole life.
type nlSock struct {
	c *nl.Conn
}

// nlMsg is one netlink message; Data is the payload after the header and
// PID the sender's port id.
type nlMsg = nl.Message

// openSock opens a NETLINK_ROUTE socket; with groups it is a monitor that
// receives those multicast groups. recvTimeout bounds every receive so the
// reader can notice cancellation.
func openSock(groups []int, rcvbuf int, recvTimeout time.Duration) (*nlSock, error) {
	gs := make([]uint32, len(groups))
	for i, g := range groups {
		gs[i] = uint32(g)
	}
	c, err := rtnl.Dial(nl.Config{Groups: gs, ReceiveBuffer: rcvbuf, ReceiveTimeout: recvTimeout})
	if err != nil {
		return nil, err
	}
	return &nlSock{c: c}, nil
}

func (s *nlSock) close() error { return s.c.Close() }

// wake ends a receive under way, and every later one, with a timeout.
func (s *nlSock) wake() { s.c.Wake() }

// errRecvTimeout is a receive that saw nothing within the timeout (or, not
// waiting, nothing queued).
var errRecvTimeout = nl.ErrTimeout

// recv reads one datagram of notifications, waiting up to the receive
// timeout, or not at all with dontwait. An overrun (ENOBUFS: messages were
// lost) is an error that errors.Is(err, unix.ENOBUFS) recognises. The
// socket has its own buffer.
func (s *nlSock) recv(dontwait bool) ([]nlMsg, error) {
	if dontwait {
		return s.c.TryReceive()
	}
	return s.c.Receive()
}

// famOf maps AF_INET/AF_INET6 to 4/6 (0 otherwise).
func famOf(af uint8) int {
	switch af {
	case unix.AF_INET:
		return 4
	case unix.AF_INET6:
		return 6
	}
	return 0
}

func afOf(fam int) uint8 {
	if fam == 6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// parseRoute decodes an RTM_NEWROUTE/RTM_DELROUTE payload. ok is false for
// anything that is not a default route (dst_len 0, src_len 0) of IPv4 or
// IPv6, and for a message the decoder refuses.
func parseRoute(p []byte, now time.Time) (Route, bool) {
	m, err := rtnl.DecodeRoute(p)
	if err != nil {
		return Route{}, false
	}
	return routeOf(m, now)
}

// routeOf is watch's view of a decoded default route.
func routeOf(m rtnl.Route, now time.Time) (r Route, ok bool) {
	fam := famOf(m.Family)
	if fam == 0 || m.DstLen != 0 || m.SrcLen != 0 {
		return r, false
	}
	r = Route{
		Family:   fam,
		Tos:      m.Tos,
		Table:    m.Table,
		Protocol: m.Protocol,
		Scope:    m.Scope,
		Type:     m.Type,
		Flags:    m.Flags,
		Gateway:  m.Gateway.Unmap(),
		Ifindex:  m.Oif,
		Metric:   m.Priority,
		PrefSrc:  m.PrefSrc.Unmap(),
		Pref:     m.Pref,
		NHID:     m.NHID,
	}
	if m.HasExpiry {
		r.HasExpiry = true
		r.ExpiresAt = now.Add(m.Expires)
	}
	if len(m.Hops) > 0 {
		// Gateway/Ifindex and the hop flags are the first hop's.
		h := m.Hops[0]
		r.Multipath = true
		r.Flags |= uint32(h.Flags)
		if r.Ifindex == 0 {
			r.Ifindex = h.Ifindex
		}
		if !r.Gateway.IsValid() {
			r.Gateway = h.Gateway.Unmap()
		}
	}
	return r, true
}

// Link is what the loop keeps of a device.
type Link struct {
	Index   int
	Name    string
	Up      bool // IFF_UP (admin)
	Carrier bool // IFF_LOWER_UP
	// CarrierChanges is IFLA_CARRIER_CHANGES (resets leave a trace here).
	CarrierChanges uint32
}

func linkOf(l rtnl.Link) Link {
	return Link{Index: l.Index, Name: l.Name, Up: l.Up(), Carrier: l.Carrier(), CarrierChanges: l.CarrierChanges}
}

func parseLink(p []byte) (Link, bool) {
	l, err := rtnl.DecodeLink(p)
	if err != nil {
		return Link{}, false
	}
	return linkOf(l), true
}

// addrMsg is an address notification.
type addrMsg struct {
	Family  int
	Ifindex int
	Addr    netip.Prefix
}

func parseAddr(p []byte) (addrMsg, bool) {
	m, err := rtnl.DecodeAddr(p)
	if err != nil {
		return addrMsg{}, false
	}
	a := addrMsg{Family: famOf(m.Family), Ifindex: m.Ifindex}
	if pf := m.Prefix(); pf.IsValid() {
		a.Addr = netip.PrefixFrom(pf.Addr().Unmap(), pf.Bits())
	}
	return a, a.Family != 0
}

// netconfMsg is a netconf notification; Forwarding is -1 when absent.
type netconfMsg struct {
	Family         int
	Ifindex        int
	Forwarding     int
	IgnoreLinkdown int
}

func parseNetconf(p []byte) (netconfMsg, bool) {
	m, err := rtnl.DecodeNetconf(p)
	if err != nil {
		return netconfMsg{}, false
	}
	n := netconfMsg{Family: famOf(m.Family), Ifindex: m.Ifindex, Forwarding: m.Forwarding, IgnoreLinkdown: m.IgnoreLinkdown}
	return n, n.Family != 0
}

// Neighbor is a neighbour entry.
type Neighbor struct {
	Ifindex int
	Addr    netip.Addr
	State   uint16
}

func neighOf(m rtnl.Neigh) (Neighbor, bool) {
	n := Neighbor{Ifindex: m.Ifindex, Addr: m.IP.Unmap(), State: m.State}
	return n, n.Addr.IsValid()
}

func parseNeigh(p []byte) (Neighbor, bool) {
	m, err := rtnl.DecodeNeigh(p)
	if err != nil {
		return Neighbor{}, false
	}
	return neighOf(m)
}

// dumpRoutes lists the default routes of both families, all tables.
func (s *nlSock) dumpRoutes(now time.Time) ([]Route, error) {
	var out []Route
	err := rtnl.WalkRoutes(s.c, unix.AF_UNSPEC, func() { out = out[:0] }, func(m rtnl.Route) error {
		if r, ok := routeOf(m, now); ok {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *nlSock) dumpLinks() (map[int]Link, error) {
	ls, err := rtnl.Links(s.c)
	if err != nil {
		return nil, err
	}
	out := make(map[int]Link, len(ls))
	for _, l := range ls {
		out[l.Index] = linkOf(l)
	}
	return out, nil
}

func (s *nlSock) dumpNeighbors(fam int) ([]Neighbor, error) {
	ns, err := rtnl.Neighbors(s.c, afOf(fam))
	if err != nil {
		return nil, err
	}
	var out []Neighbor
	for _, m := range ns {
		if n, ok := neighOf(m); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

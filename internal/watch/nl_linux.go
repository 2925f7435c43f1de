package watch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// netconf attributes (linux/netconf.h); x/sys/unix does not carry them.
const (
	netconfaIfindex        = 1
	netconfaForwarding     = 2
	netconfaIgnoreLinkdown = 6
	netconfIfindexAll      = -1
	netconfIfindexDefault  = -2
)

// rtaCacheinfoExpires is the offset of rta_expires (s32, clock ticks) in
// struct rta_cacheinfo.
const rtaCacheinfoExpires = 8

// userHZ is the clock-tick rate of rta_expires (jiffies_to_clock_t).
const userHZ = 100

// rtaNHID is RTA_NH_ID (a nexthop object id), absent from x/sys/unix.
const rtaNHID = 30

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

// nlSock is a raw NETLINK_ROUTE socket. It belongs to the namespace of the
// thread that opened it, for its whole life.
type nlSock struct {
	fd  int
	seq atomic.Uint32
}

// nlMsg is one netlink message; Data is the payload after the header.
type nlMsg struct {
	Type  uint16
	Flags uint16
	Seq   uint32
	PID   uint32
	Data  []byte
}

// openSock opens a NETLINK_ROUTE socket; with groups it is a monitor that
// receives those multicast groups. recvTimeout bounds a blocking receive so
// the reader can notice cancellation.
func openSock(groups []int, rcvbuf int, recvTimeout time.Duration) (*nlSock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink socket: %w", err)
	}
	s := &nlSock{fd: fd}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rtnetlink bind: %w", err)
	}
	for _, g := range groups {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("rtnetlink join group %d: %w", g, err)
		}
	}
	if rcvbuf > 0 {
		// FORCE needs CAP_NET_ADMIN; fall back to the capped size.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		}
	}
	if recvTimeout > 0 {
		tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("rtnetlink receive timeout: %w", err)
		}
	}
	return s, nil
}

func (s *nlSock) close() error { return unix.Close(s.fd) }

// errRecvTimeout is a blocking receive that saw nothing within the timeout.
var errRecvTimeout = errors.New("netlink receive timeout")

// recv reads one datagram (blocking, or not with dontwait) and splits it.
// ENOBUFS (the socket overran and messages were lost) is returned as is.
func (s *nlSock) recv(buf []byte, dontwait bool) ([]nlMsg, error) {
	flags := 0
	if dontwait {
		flags = unix.MSG_DONTWAIT
	}
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, flags)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.EAGAIN) {
				return nil, errRecvTimeout
			}
			return nil, err
		}
		return splitMsgs(buf[:n])
	}
}

// splitMsgs splits a datagram into messages, copying payloads.
func splitMsgs(b []byte) ([]nlMsg, error) {
	var out []nlMsg
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return out, fmt.Errorf("netlink: message length %d of %d bytes", l, len(b))
		}
		m := nlMsg{
			Type:  binary.NativeEndian.Uint16(b[4:6]),
			Flags: binary.NativeEndian.Uint16(b[6:8]),
			Seq:   binary.NativeEndian.Uint32(b[8:12]),
			PID:   binary.NativeEndian.Uint32(b[12:16]),
			Data:  append([]byte(nil), b[unix.NLMSG_HDRLEN:l]...),
		}
		out = append(out, m)
		al := nlAlign(l)
		if al > len(b) {
			break
		}
		b = b[al:]
	}
	return out, nil
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// attr is one netlink attribute to encode.
type attr struct {
	typ  uint16
	data []byte
}

func buildMsg(typ, flags uint16, seq uint32, hdr []byte, attrs []attr) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN, 256)
	b = append(b, hdr...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	for _, a := range attrs {
		l := 4 + len(a.data)
		var h [4]byte
		binary.NativeEndian.PutUint16(h[0:2], uint16(l))
		binary.NativeEndian.PutUint16(h[2:4], a.typ)
		b = append(b, h[:]...)
		b = append(b, a.data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	binary.NativeEndian.PutUint16(b[6:8], flags)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	return b
}

// do sends a request and collects the answer: every message of a dump, or
// the ACK (nil, error from the kernel's NLMSG_ERROR) of a change.
func (s *nlSock) do(op string, typ, flags uint16, hdr []byte, attrs []attr) ([]nlMsg, error) {
	for try := 0; try < 3; try++ {
		seq := s.seq.Add(1)
		req := buildMsg(typ, flags|unix.NLM_F_REQUEST, seq, hdr, attrs)
		if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return nil, fmt.Errorf("%s: send: %w", op, err)
		}
		out, intr, err := s.collect(op, seq, flags&unix.NLM_F_DUMP != 0)
		if err != nil {
			return nil, err
		}
		if !intr {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%s: dump interrupted three times (state changing fast)", op)
}

func (s *nlSock) collect(op string, seq uint32, dump bool) (out []nlMsg, intr bool, err error) {
	buf := make([]byte, 1<<16)
	// A dump answers within milliseconds; the deadline bounds the loop.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		msgs, err := s.recv(buf, false)
		if errors.Is(err, errRecvTimeout) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s: receive: %w", op, err)
		}
		for _, m := range msgs {
			if m.Seq != seq {
				continue
			}
			if m.Flags&unix.NLM_F_DUMP_INTR != 0 {
				intr = true
			}
			switch m.Type {
			case unix.NLMSG_DONE:
				return out, intr, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, false, fmt.Errorf("%s: short error message", op)
				}
				code := int32(binary.NativeEndian.Uint32(m.Data[0:4]))
				if code != 0 {
					return nil, false, fmt.Errorf("%s: %w", op, unix.Errno(-code))
				}
				return out, intr, nil
			default:
				out = append(out, m)
			}
			if !dump {
				// A non-dump request without ACK answers with one message.
				return out, intr, nil
			}
		}
	}
	return nil, false, fmt.Errorf("%s: no answer within 5s", op)
}

// forAttrs walks netlink attributes.
func forAttrs(b []byte, fn func(typ uint16, data []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(b) {
			return
		}
		fn(t, b[4:l])
		al := nlAlign(l)
		if al > len(b) {
			return
		}
		b = b[al:]
	}
}

func u32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(b)
}

func u32b(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

func addrFrom(b []byte) netip.Addr {
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
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
// anything that is not a default route (dst_len 0) of IPv4 or IPv6.
func parseRoute(p []byte, now time.Time) (r Route, ok bool) {
	if len(p) < unix.SizeofRtMsg {
		return r, false
	}
	fam := famOf(p[0])
	if fam == 0 || p[1] != 0 || p[2] != 0 { // dst_len, src_len
		return r, false
	}
	r = Route{
		Family:   fam,
		Tos:      p[3],
		Table:    int(p[4]),
		Protocol: p[5],
		Scope:    p[6],
		Type:     p[7],
		Flags:    binary.NativeEndian.Uint32(p[8:12]),
	}
	forAttrs(p[unix.SizeofRtMsg:], func(t uint16, d []byte) {
		switch t {
		case unix.RTA_TABLE:
			r.Table = int(u32(d))
		case unix.RTA_GATEWAY:
			r.Gateway = addrFrom(d)
		case unix.RTA_VIA:
			if len(d) > 2 {
				r.Gateway = addrFrom(d[2:])
			}
		case unix.RTA_OIF:
			r.Ifindex = int(u32(d))
		case unix.RTA_PRIORITY:
			r.Metric = u32(d)
		case unix.RTA_PREFSRC:
			r.PrefSrc = addrFrom(d)
		case unix.RTA_PREF:
			if len(d) > 0 {
				r.Pref = d[0]
			}
		case rtaNHID:
			r.NHID = u32(d)
		case unix.RTA_CACHEINFO:
			if len(d) >= rtaCacheinfoExpires+4 {
				ex := int32(binary.NativeEndian.Uint32(d[rtaCacheinfoExpires:]))
				if ex != 0 {
					r.HasExpiry = true
					r.ExpiresAt = now.Add(time.Duration(ex) * time.Second / userHZ)
				}
			}
		case unix.RTA_MULTIPATH:
			// rtnexthop: len u16, flags u8, hops u8, ifindex s32, then attrs.
			if len(d) >= 8 {
				r.Multipath = true
				r.Flags |= uint32(d[2])
				if r.Ifindex == 0 {
					r.Ifindex = int(int32(binary.NativeEndian.Uint32(d[4:8])))
				}
				l := int(binary.NativeEndian.Uint16(d[0:2]))
				if l > 8 && l <= len(d) {
					forAttrs(d[8:l], func(t uint16, d []byte) {
						if t == unix.RTA_GATEWAY && !r.Gateway.IsValid() {
							r.Gateway = addrFrom(d)
						}
					})
				}
			}
		}
	})
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

func parseLink(p []byte) (Link, bool) {
	if len(p) < unix.SizeofIfInfomsg {
		return Link{}, false
	}
	flags := binary.NativeEndian.Uint32(p[8:12])
	l := Link{
		Index:   int(int32(binary.NativeEndian.Uint32(p[4:8]))),
		Up:      flags&unix.IFF_UP != 0,
		Carrier: flags&unix.IFF_LOWER_UP != 0,
	}
	forAttrs(p[unix.SizeofIfInfomsg:], func(t uint16, d []byte) {
		switch t {
		case unix.IFLA_IFNAME:
			l.Name = cString(d)
		case unix.IFLA_CARRIER_CHANGES:
			l.CarrierChanges = u32(d)
		}
	})
	return l, true
}

// addrMsg is an address notification.
type addrMsg struct {
	Family  int
	Ifindex int
	Addr    netip.Prefix
}

func parseAddr(p []byte) (addrMsg, bool) {
	if len(p) < unix.SizeofIfAddrmsg {
		return addrMsg{}, false
	}
	a := addrMsg{Family: famOf(p[0]), Ifindex: int(binary.NativeEndian.Uint32(p[4:8]))}
	bits := int(p[1])
	forAttrs(p[unix.SizeofIfAddrmsg:], func(t uint16, d []byte) {
		if t == unix.IFA_LOCAL || (t == unix.IFA_ADDRESS && !a.Addr.IsValid()) {
			if ip := addrFrom(d); ip.IsValid() {
				a.Addr = netip.PrefixFrom(ip, bits)
			}
		}
	})
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
	if len(p) < 4 {
		return netconfMsg{}, false
	}
	n := netconfMsg{Family: famOf(p[0]), Forwarding: -1, IgnoreLinkdown: -1}
	forAttrs(p[4:], func(t uint16, d []byte) {
		switch t {
		case netconfaIfindex:
			n.Ifindex = int(int32(u32(d)))
		case netconfaForwarding:
			n.Forwarding = int(int32(u32(d)))
		case netconfaIgnoreLinkdown:
			n.IgnoreLinkdown = int(int32(u32(d)))
		}
	})
	return n, n.Family != 0
}

// Neighbor is a neighbour entry.
type Neighbor struct {
	Ifindex int
	Addr    netip.Addr
	State   uint16
}

func parseNeigh(p []byte) (Neighbor, bool) {
	if len(p) < unix.SizeofNdMsg {
		return Neighbor{}, false
	}
	n := Neighbor{
		Ifindex: int(int32(binary.NativeEndian.Uint32(p[4:8]))),
		State:   binary.NativeEndian.Uint16(p[8:10]),
	}
	forAttrs(p[unix.SizeofNdMsg:], func(t uint16, d []byte) {
		if t == unix.NDA_DST {
			n.Addr = addrFrom(d)
		}
	})
	return n, n.Addr.IsValid()
}

func cString(d []byte) string {
	for i, c := range d {
		if c == 0 {
			return string(d[:i])
		}
	}
	return string(d)
}

// dumpRoutes lists the default routes of both families, all tables.
func (s *nlSock) dumpRoutes(now time.Time) ([]Route, error) {
	hdr := make([]byte, unix.SizeofRtMsg) // AF_UNSPEC: both families
	msgs, err := s.do("dump routes", unix.RTM_GETROUTE, unix.NLM_F_DUMP, hdr, nil)
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, m := range msgs {
		if m.Type != unix.RTM_NEWROUTE {
			continue
		}
		if r, ok := parseRoute(m.Data, now); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *nlSock) dumpLinks() (map[int]Link, error) {
	hdr := make([]byte, unix.SizeofIfInfomsg)
	msgs, err := s.do("dump links", unix.RTM_GETLINK, unix.NLM_F_DUMP, hdr, nil)
	if err != nil {
		return nil, err
	}
	out := map[int]Link{}
	for _, m := range msgs {
		if m.Type != unix.RTM_NEWLINK {
			continue
		}
		if l, ok := parseLink(m.Data); ok {
			out[l.Index] = l
		}
	}
	return out, nil
}

func (s *nlSock) dumpNeighbors(fam int) ([]Neighbor, error) {
	hdr := make([]byte, unix.SizeofNdMsg)
	hdr[0] = afOf(fam)
	msgs, err := s.do("dump neighbours", unix.RTM_GETNEIGH, unix.NLM_F_DUMP, hdr, nil)
	if err != nil {
		return nil, err
	}
	var out []Neighbor
	for _, m := range msgs {
		if m.Type != unix.RTM_NEWNEIGH {
			continue
		}
		if n, ok := parseNeigh(m.Data); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// Package rtnl decodes and encodes rtnetlink messages — routes (with
// multipath, cache info, nexthop objects), links, addresses, neighbours,
// rules, netconf and nexthops — and names their numbers (tables,
// protocols, types, scopes, neighbour states) the way iproute2 does. It is
// the one place synscope turns rtnetlink bytes into values; requests go
// through internal/nl.
package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl"
)

// rtextFilterSkipStats (RTEXT_FILTER_SKIP_STATS, linux/rtnetlink.h) keeps
// link answers small; x/sys/unix does not export it.
const rtextFilterSkipStats = 1 << 3

// Dial opens a NETLINK_ROUTE Conn in the calling thread's namespace.
func Dial(cfg nl.Config) (*nl.Conn, error) {
	return nl.Dial(unix.NETLINK_ROUTE, cfg)
}

// walk sends a dump request with the given fixed header and hands every
// answer of type want, decoded with dec, to fn. start runs before every
// attempt (an interrupted dump is asked again).
func walk[T any](c *nl.Conn, op string, typ, want uint16, hdr []byte, dec func([]byte) (T, error), start func(), fn func(T) error) error {
	return c.Stream(op, nl.Request{Type: typ, Flags: unix.NLM_F_DUMP, Data: hdr}, start, func(m nl.Message) error {
		if m.Type != want {
			return nil
		}
		v, err := dec(m.Data)
		if err != nil {
			return err
		}
		return fn(v)
	})
}

// dump is walk gathering what keep accepts.
func dump[T any](c *nl.Conn, op string, typ, want uint16, hdr []byte, dec func([]byte) (T, error), keep func(T) bool) ([]T, error) {
	var out []T
	err := walk(c, op, typ, want, hdr, dec, func() { out = out[:0] }, func(v T) error {
		if keep == nil || keep(v) {
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// Routes dumps the routes of a family (unix.AF_UNSPEC: both) in every
// table. Cloned (cache) entries are left out.
func Routes(c *nl.Conn, family uint8) ([]Route, error) {
	var out []Route
	err := WalkRoutes(c, family, func() { out = out[:0] }, func(r Route) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// WalkRoutes is Routes without gathering: fn sees each route as it is
// decoded (huge tables), after start, which runs before every attempt of
// the dump (an interrupted dump is asked again: drop what fn kept).
func WalkRoutes(c *nl.Conn, family uint8, start func(), fn func(Route) error) error {
	hdr := make([]byte, unix.SizeofRtMsg)
	hdr[0] = family
	return walk(c, "dump routes", unix.RTM_GETROUTE, unix.RTM_NEWROUTE, hdr, DecodeRoute, start, func(r Route) error {
		if (family != unix.AF_UNSPEC && r.Family != family) || r.Flags&unix.RTM_F_CLONED != 0 {
			return nil
		}
		return fn(r)
	})
}

// Links dumps the links.
func Links(c *nl.Conn) ([]Link, error) {
	hdr, err := linkRequest(0)
	if err != nil {
		return nil, err
	}
	return dump(c, "dump links", unix.RTM_GETLINK, unix.RTM_NEWLINK, hdr, DecodeLink, nil)
}

// LinkByIndex asks for one link.
func LinkByIndex(c *nl.Conn, ifindex int) (Link, error) {
	hdr, err := linkRequest(ifindex)
	if err != nil {
		return Link{}, err
	}
	msgs, err := c.Execute("get link", nl.Request{Type: unix.RTM_GETLINK, Data: hdr})
	if err != nil {
		return Link{}, err
	}
	for _, m := range msgs {
		if m.Type == unix.RTM_NEWLINK {
			return DecodeLink(m.Data)
		}
	}
	return Link{}, fmt.Errorf("get link %d: no answer", ifindex)
}

func linkRequest(ifindex int) ([]byte, error) {
	hdr := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(hdr[4:8], uint32(ifindex))
	// IFLA_EXT_MASK with RTEXT_FILTER_SKIP_STATS.
	attr := make([]byte, 8)
	binary.NativeEndian.PutUint16(attr[0:2], 8)
	binary.NativeEndian.PutUint16(attr[2:4], unix.IFLA_EXT_MASK)
	binary.NativeEndian.PutUint32(attr[4:8], rtextFilterSkipStats)
	return append(hdr, attr...), nil
}

// Addrs dumps the addresses of a family.
func Addrs(c *nl.Conn, family uint8) ([]Addr, error) {
	hdr := make([]byte, unix.SizeofIfAddrmsg)
	hdr[0] = family
	return dump(c, "dump addresses", unix.RTM_GETADDR, unix.RTM_NEWADDR, hdr, DecodeAddr, func(a Addr) bool {
		return a.Family == family
	})
}

// Neighbors dumps the neighbour entries of a family.
func Neighbors(c *nl.Conn, family uint8) ([]Neigh, error) {
	hdr := make([]byte, unix.SizeofNdMsg)
	hdr[0] = family
	return dump(c, "dump neighbours", unix.RTM_GETNEIGH, unix.RTM_NEWNEIGH, hdr, DecodeNeigh, func(n Neigh) bool {
		return n.Family == family
	})
}

// Rules dumps the policy routing rules of a family.
func Rules(c *nl.Conn, family uint8) ([]Rule, error) {
	hdr := make([]byte, sizeofFibRuleHdr)
	hdr[0] = family
	return dump(c, "dump rules", unix.RTM_GETRULE, unix.RTM_NEWRULE, hdr, DecodeRule, func(r Rule) bool {
		return r.Family == family
	})
}

// Nexthops dumps the nexthop objects (Linux 5.3+; usually none).
func Nexthops(c *nl.Conn) ([]Nexthop, error) {
	return dump(c, "dump nexthops", RTMGetNexthop, rtmNewNexthop, make([]byte, sizeofNhmsg), DecodeNexthop, nil)
}

// GetRoute performs a route lookup (RTM_GETROUTE without NLM_F_DUMP). A
// failing lookup is the kernel's error (errors.Is(err, unix.EHOSTUNREACH)).
func GetRoute(c *nl.Conn, q Lookup) (Route, error) {
	p, err := q.Payload()
	if err != nil {
		return Route{}, err
	}
	msgs, err := c.Execute("route get", nl.Request{Type: unix.RTM_GETROUTE, Data: p})
	if err != nil {
		return Route{}, err
	}
	for _, m := range msgs {
		if m.Type == unix.RTM_NEWROUTE {
			return DecodeRoute(m.Data)
		}
	}
	return Route{}, errors.New("route get: no answer")
}

// AddRoute adds r (EncodeRoute) with NLM_F_CREATE|NLM_F_EXCL: it never
// replaces a route; an existing one is unix.EEXIST.
func AddRoute(c *nl.Conn, r Route) error {
	p, err := EncodeRoute(r)
	if err != nil {
		return err
	}
	_, err = c.Execute("add route", nl.Request{Type: unix.RTM_NEWROUTE, Flags: unix.NLM_F_CREATE | unix.NLM_F_EXCL | unix.NLM_F_ACK, Data: p})
	return err
}

// Netconfs dumps the per-device forwarding configuration of a family
// (RTM_GETNETCONF; entries for "all" and "default" included).
func Netconfs(c *nl.Conn, family uint8) ([]Netconf, error) {
	hdr := make([]byte, sizeofNetconfmsg)
	hdr[0] = family
	return dump(c, "dump netconf", unix.RTM_GETNETCONF, unix.RTM_NEWNETCONF, hdr, DecodeNetconf, func(n Netconf) bool {
		return n.Family == family
	})
}

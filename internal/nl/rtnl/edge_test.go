package rtnl

import (
	"encoding/binary"
	"reflect"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/nl"
)

// rtmsg builds a route message payload by hand.
func rtmsg(t *testing.T, fam, dstLen, srcLen, table, proto, typ uint8, flags uint32, enc func(ae *netlink.AttributeEncoder)) []byte {
	t.Helper()
	hdr := []byte{fam, dstLen, srcLen, 0, table, proto, unix.RT_SCOPE_UNIVERSE, typ, 0, 0, 0, 0}
	binary.NativeEndian.PutUint32(hdr[8:], flags)
	p, err := nl.Payload(hdr, enc)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rtnexthop lays out one struct rtnexthop with a gateway attribute.
func rtnexthop(flags uint8, ifindex int, attrType uint16, attr []byte) []byte {
	l := unix.SizeofRtNexthop + nl.Align(4+len(attr))
	b := make([]byte, l)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	b[2] = flags
	binary.NativeEndian.PutUint32(b[4:], uint32(ifindex))
	binary.NativeEndian.PutUint16(b[8:], uint16(4+len(attr)))
	binary.NativeEndian.PutUint16(b[10:], attrType)
	copy(b[12:], attr)
	return b
}

func cacheinfo(expires, errno int32) []byte {
	b := make([]byte, 32) // struct rta_cacheinfo
	binary.NativeEndian.PutUint32(b[8:], uint32(expires))
	binary.NativeEndian.PutUint32(b[12:], uint32(errno))
	return b
}

func TestMultipathHopFlagsAndVia(t *testing.T) {
	via := append([]byte{unix.AF_INET6, 0}, addr("fe80::5").AsSlice()...)
	mp := append(rtnexthop(0, 2, unix.RTA_GATEWAY, addr("10.0.0.1").AsSlice()),
		rtnexthop(unix.RTNH_F_LINKDOWN|unix.RTNH_F_DEAD, 7, unix.RTA_VIA, via)...)
	p := rtmsg(t, unix.AF_INET, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RTN_UNICAST, 0, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(unix.RTA_MULTIPATH, mp)
	})
	r, err := DecodeRoute(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []Hop{{Gateway: addr("10.0.0.1"), Ifindex: 2}, {Gateway: addr("fe80::5"), Ifindex: 7, Flags: unix.RTNH_F_LINKDOWN | unix.RTNH_F_DEAD}}
	if !reflect.DeepEqual(r.NextHops(), want) {
		t.Errorf("hops %+v, want %+v", r.NextHops(), want)
	}
	h := r.NextHops()[1]
	if Usable(r.Type, false, uint32(h.Flags), false) {
		t.Error("a dead hop is usable")
	}
	// A truncated multipath attribute is an error, not a silent half route.
	p = rtmsg(t, unix.AF_INET, 0, 0, unix.RT_TABLE_MAIN, 0, unix.RTN_UNICAST, 0, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(unix.RTA_MULTIPATH, mp[:len(mp)-6])
	})
	if _, err := DecodeRoute(p); err == nil {
		t.Error("truncated RTA_MULTIPATH decoded without error")
	}
}

func TestCacheinfoExpiryAndError(t *testing.T) {
	for _, c := range []struct {
		expires, errno int32
		has, expired   bool
		left           time.Duration
		err            unix.Errno
	}{
		{0, 0, false, false, 0, 0},
		{30000, 0, true, false, 300 * time.Second, 0},
		{-150, 0, true, true, -1500 * time.Millisecond, 0},
		{0, -int32(unix.ENETUNREACH), false, false, 0, unix.ENETUNREACH},
	} {
		p := rtmsg(t, unix.AF_INET6, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_RA, unix.RTN_UNICAST, 0, func(ae *netlink.AttributeEncoder) {
			ae.Bytes(unix.RTA_CACHEINFO, cacheinfo(c.expires, c.errno))
		})
		r, err := DecodeRoute(p)
		if err != nil {
			t.Fatal(err)
		}
		if r.HasExpiry != c.has || r.Expired() != c.expired || r.Expires != c.left || r.Error != c.err {
			t.Errorf("expires %d errno %d: got has=%v expired=%v left=%v err=%v", c.expires, c.errno, r.HasExpiry, r.Expired(), r.Expires, r.Error)
		}
		if Usable(r.Type, r.Expired(), r.Flags, false) == c.expired {
			t.Errorf("expires %d: Usable disagrees with Expired", c.expires)
		}
	}
}

func TestRouteHeaderFields(t *testing.T) {
	p := rtmsg(t, unix.AF_INET6, 48, 56, unix.RT_TABLE_UNSPEC, unix.RTPROT_BOOT, unix.RTN_PROHIBIT, unix.RTNH_F_ONLINK, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(unix.RTA_DST, addr("2001:db8::").AsSlice())
		ae.Bytes(unix.RTA_SRC, addr("2001:db8:1::").AsSlice())
		ae.Uint32(unix.RTA_TABLE, 70000)
		ae.Uint32(rtaNHID, 42)
		ae.Uint8(unix.RTA_PREF, 3)
	})
	r, err := DecodeRoute(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Dst != pfx("2001:db8::/48") || r.Src != pfx("2001:db8:1::/56") || r.Table != 70000 || r.NHID != 42 || r.Pref != 3 ||
		TypeName(r.Type) != "prohibit" || ProtocolName(r.Protocol) != "boot" || r.Flags != unix.RTNH_F_ONLINK || r.IsDefault() {
		t.Errorf("decoded %+v", r)
	}
}

func TestMalformed(t *testing.T) {
	good := rtmsg(t, unix.AF_INET, 0, 0, unix.RT_TABLE_MAIN, 0, unix.RTN_UNICAST, 0, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.RTA_OIF, 2)
	})
	if _, err := DecodeRoute(good[:unix.SizeofRtMsg-1]); err == nil {
		t.Error("short rtmsg decoded")
	}
	bad := append([]byte(nil), good...)
	binary.NativeEndian.PutUint16(bad[unix.SizeofRtMsg:], 64) // attribute longer than the message
	if _, err := DecodeRoute(bad); err == nil {
		t.Error("attribute overrunning the message decoded")
	}
	bad = append([]byte(nil), good...)
	binary.NativeEndian.PutUint16(bad[unix.SizeofRtMsg:], 6) // RTA_OIF of 2 bytes
	if _, err := DecodeRoute(bad); err == nil {
		t.Error("2-byte RTA_OIF decoded")
	}
	for name, dec := range map[string]func([]byte) error{
		"link":    func(b []byte) error { _, err := DecodeLink(b); return err },
		"addr":    func(b []byte) error { _, err := DecodeAddr(b); return err },
		"neigh":   func(b []byte) error { _, err := DecodeNeigh(b); return err },
		"rule":    func(b []byte) error { _, err := DecodeRule(b); return err },
		"netconf": func(b []byte) error { _, err := DecodeNetconf(b); return err },
		"nexthop": func(b []byte) error { _, err := DecodeNexthop(b); return err },
	} {
		if err := dec([]byte{2, 0, 0}); err == nil {
			t.Errorf("%s: 3-byte message decoded", name)
		}
	}
}

func TestEncodeRouteRoundTrip(t *testing.T) {
	in := Route{
		Family: unix.AF_INET6, Table: 1000, Protocol: ProtoSynscope, Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
		Flags: unix.RTNH_F_ONLINK, Gateway: addr("fe80::1"), Oif: 4, Priority: 1024, PrefSrc: addr("2001:db8::2"), Pref: 1,
	}
	p, err := EncodeRoute(in)
	if err != nil {
		t.Fatal(err)
	}
	if p[4] != unix.RT_TABLE_UNSPEC {
		t.Errorf("rtm_table %d for table 1000, want RT_TABLE_UNSPEC (RTA_TABLE carries it)", p[4])
	}
	out, err := DecodeRoute(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n in %+v\nout %+v", in, out)
	}
}

func TestLookupPayload(t *testing.T) {
	q := Lookup{Dst: addr("::ffff:192.0.2.7"), Src: addr("10.0.0.2"), Oif: 3, Mark: 0x10, HasMark: true, UID: 1000, HasUID: true,
		IPProto: unix.IPPROTO_TCP, Sport: 443, Dport: 50000, Tos: 0x10, Flags: unix.RTM_F_LOOKUP_TABLE}
	p, err := q.Payload()
	if err != nil {
		t.Fatal(err)
	}
	if p[0] != unix.AF_INET || p[1] != 32 || p[2] != 32 || p[3] != 0x10 || binary.NativeEndian.Uint32(p[8:]) != unix.RTM_F_LOOKUP_TABLE {
		t.Errorf("header % x", p[:12])
	}
	got := map[uint16][]byte{}
	if err := nl.Attributes(p, unix.SizeofRtMsg, func(ad *nl.AttrDecoder) { got[ad.Type()] = ad.Bytes() }); err != nil {
		t.Fatal(err)
	}
	u32 := func(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
	want := map[uint16][]byte{
		unix.RTA_DST: {192, 0, 2, 7}, unix.RTA_SRC: {10, 0, 0, 2}, unix.RTA_OIF: u32(3), unix.RTA_MARK: u32(0x10),
		unix.RTA_UID: u32(1000), unix.RTA_IP_PROTO: {unix.IPPROTO_TCP}, unix.RTA_SPORT: {0x01, 0xbb}, unix.RTA_DPORT: {0xc3, 0x50},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("attributes\n got %v\nwant %v", got, want)
	}
	if _, err := (Lookup{}).Payload(); err == nil {
		t.Error("lookup without destination encoded")
	}
}

func TestNames(t *testing.T) {
	for p, n := range map[uint8]string{2: "kernel", 3: "boot", 4: "static", 9: "ra", 16: "dhcp", 186: "bgp", ProtoSynscope: "synscope", 250: "250"} {
		if got := ProtocolName(p); got != n {
			t.Errorf("ProtocolName(%d) = %q, want %q", p, got, n)
		}
	}
	for id, n := range map[int]string{0: "unspec", 253: "default", 254: "main", 255: "local", 1000: "1000"} {
		if got := TableName(id); got != n {
			t.Errorf("TableName(%d) = %q, want %q", id, got, n)
		}
	}
	for s, n := range map[uint16]string{0: "NONE", unix.NUD_REACHABLE: "REACHABLE", unix.NUD_FAILED: "FAILED",
		unix.NUD_STALE | unix.NUD_PERMANENT: "STALE PERMANENT", 0x100: "0x100"} {
		if got := NeighStateText(s); got != n {
			t.Errorf("NeighStateText(%#x) = %q, want %q", s, got, n)
		}
	}
	if TypeName(unix.RTN_THROW) != "throw" || TypeName(200) != "200" || RuleActionName(unix.FR_ACT_PROHIBIT) != "prohibit" || ScopeName(unix.RT_SCOPE_LINK) != "link" {
		t.Error("type/action/scope names")
	}
}

// Without RTA_TABLE the header's table stands; rtm_flags keeps every bit
// (RTM_F_* live above the low byte).
func TestRouteHeaderTableAndFlags(t *testing.T) {
	flags := uint32(unix.RTNH_F_ONLINK | unix.RTM_F_LOOKUP_TABLE | unix.RTM_F_CLONED)
	p := rtmsg(t, unix.AF_INET, 0, 0, unix.RT_TABLE_DEFAULT, unix.RTPROT_BOOT, unix.RTN_UNICAST, flags, nil)
	r, err := DecodeRoute(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Table != unix.RT_TABLE_DEFAULT || r.Flags != flags {
		t.Errorf("table %d flags %#x, want %d and %#x", r.Table, r.Flags, unix.RT_TABLE_DEFAULT, flags)
	}
}

// On a point-to-point link IFA_ADDRESS is the peer: the prefix is ours.
func TestAddrPointToPoint(t *testing.T) {
	hdr := []byte{unix.AF_INET, 32, 0, unix.RT_SCOPE_UNIVERSE, 7, 0, 0, 0}
	p, err := nl.Payload(hdr, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(unix.IFA_ADDRESS, addr("10.0.0.2").AsSlice())
		ae.Bytes(unix.IFA_LOCAL, addr("10.0.0.1").AsSlice())
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := DecodeAddr(p)
	if err != nil {
		t.Fatal(err)
	}
	if a.Prefix() != pfx("10.0.0.1/32") || a.Ifindex != 7 {
		t.Errorf("ptp address %+v prefix %s, want 10.0.0.1/32 on 7", a, a.Prefix())
	}
}

// A neighbour's state is the u16 at offset 8; the flags byte after it is
// separate (NTF_ROUTER).
func TestNeighStateAndFlags(t *testing.T) {
	hdr := make([]byte, unix.SizeofNdMsg)
	hdr[0] = unix.AF_INET6
	binary.NativeEndian.PutUint32(hdr[4:], 9)
	binary.NativeEndian.PutUint16(hdr[8:], unix.NUD_REACHABLE)
	hdr[10] = unix.NTF_ROUTER
	p, err := nl.Payload(hdr, func(ae *netlink.AttributeEncoder) { ae.Bytes(unix.NDA_DST, addr("fe80::1").AsSlice()) })
	if err != nil {
		t.Fatal(err)
	}
	n, err := DecodeNeigh(p)
	if err != nil {
		t.Fatal(err)
	}
	if n.State != unix.NUD_REACHABLE || !n.Router() || n.Ifindex != 9 || n.IP != addr("fe80::1") {
		t.Errorf("neighbour %+v", n)
	}
}

// Attribute types lose NLA_F_NESTED (IFLA_LINKINFO may carry it), and a
// u32 attribute of any other length than 4 is refused, as mdlayher's
// decoder does.
func TestAttributeFlagsAndLengths(t *testing.T) {
	info, err := nl.Payload(nil, func(ae *netlink.AttributeEncoder) { ae.String(unix.IFLA_INFO_KIND, "vrf") })
	if err != nil {
		t.Fatal(err)
	}
	p, err := nl.Payload(make([]byte, unix.SizeofIfInfomsg), func(ae *netlink.AttributeEncoder) {
		ae.Bytes(unix.IFLA_LINKINFO|unix.NLA_F_NESTED, info)
	})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := DecodeLink(p); err != nil || l.Kind != "vrf" {
		t.Errorf("nested-flagged IFLA_LINKINFO: kind %q err %v", l.Kind, err)
	}
	p = rtmsg(t, unix.AF_INET, 0, 0, unix.RT_TABLE_MAIN, 0, unix.RTN_UNICAST, 0, func(ae *netlink.AttributeEncoder) {
		ae.Uint64(unix.RTA_OIF, 2)
	})
	if _, err := DecodeRoute(p); err == nil {
		t.Error("8-byte RTA_OIF decoded")
	}
}

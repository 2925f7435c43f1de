package routes

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/fixcmd"
	"github.com/synscope/synscope/internal/nl"
	"github.com/synscope/synscope/internal/nl/rtnl"
)

func TestQueryCommand(t *testing.T) {
	for _, c := range []struct {
		q    Query
		want string
	}{
		{Query{Src: netip.MustParseAddr("fd77:2::2"), Dst: netip.MustParseAddr("2001:db8::2"), Sport: 8080, Dport: 40000, Mark: 1, HasUID: true},
			"ip -6 route get 2001:db8::2 from fd77:2::2 ipproto tcp sport 8080 dport 40000 mark 0x1 uid 0"},
		{Query{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("192.0.2.9"), Sport: 443, Dport: 5555, TOS: 0x10, Oif: 3},
			"ip -4 route get 192.0.2.9 from 10.0.0.1 oif if3 tos 0x10 ipproto tcp sport 443 dport 5555"},
		{Query{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("192.0.2.9"), Oif: 3, OifName: "eth0", UID: 1000, HasUID: true},
			"ip -4 route get 192.0.2.9 from 10.0.0.1 oif eth0 ipproto tcp uid 1000"},
		// v6 with oif: no source, so the hand-run lookup is device-strict.
		{Query{Src: netip.MustParseAddr("fd77::1"), Dst: netip.MustParseAddr("2001:db8::2"), Oif: 4, OifName: "s1", Sport: 1, Dport: 2},
			"ip -6 route get 2001:db8::2 oif s1 ipproto tcp sport 1 dport 2"},
		// A v4-mapped client is an IPv4 lookup.
		{Query{Src: netip.MustParseAddr("::ffff:10.0.0.1"), Dst: netip.MustParseAddr("::ffff:192.0.2.9")},
			"ip -4 route get ::ffff:192.0.2.9 from ::ffff:10.0.0.1 ipproto tcp"},
	} {
		if got := c.q.Command(fixcmd.New("ip")).String(); got != c.want {
			t.Errorf("Command()\n got %q\nwant %q", got, c.want)
		}
	}
	q := Query{Dst: netip.MustParseAddr("192.0.2.9")}
	if got, want := q.Command(fixcmd.New("ip", "-n", "srv")).String(), "ip -n srv -4 route get 192.0.2.9 ipproto tcp"; got != want {
		t.Errorf("Command = %q, want %q", got, want)
	}
	// A device name from a container is one word, whatever it holds.
	evil := Query{Dst: netip.MustParseAddr("192.0.2.9"), Oif: 7, OifName: "e$(id>p)"}
	if got, want := evil.Command(fixcmd.New("ip")).String(), "ip -4 route get 192.0.2.9 oif 'e$(id>p)' ipproto tcp"; got != want {
		t.Errorf("Command = %q, want %q", got, want)
	}
}

func TestResultString(t *testing.T) {
	q := Query{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("192.0.2.9")}
	for _, c := range []struct {
		r    Result
		want string
	}{
		{Result{Query: q, OK: true, Type: "unicast", Table: 254, Gateway: netip.MustParseAddr("10.0.0.254"), Dev: "eth0", Prefsrc: netip.MustParseAddr("10.0.0.1")},
			"192.0.2.9 from 10.0.0.1 via 10.0.0.254 dev eth0 src 10.0.0.1"},
		{Result{Query: q, OK: true, Type: "unicast", Table: 100, Ifindex: 7},
			"192.0.2.9 from 10.0.0.1 dev if7 table 100"},
		{Result{Query: q, OK: true, Type: "local", Table: 255, Dev: "lo"},
			"local 192.0.2.9 from 10.0.0.1 dev lo table local"},
		{Result{Query: q, Errno: syscall.EHOSTUNREACH, Err: "No route to host"},
			"error: No route to host (-113)"},
		{Result{Query: q, Type: "prohibit", Table: 254, Dev: "lo", Errno: syscall.EACCES, Err: "Permission denied"},
			"prohibit 192.0.2.9 from 10.0.0.1 dev lo: error: Permission denied (-13)"},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("String()\n got %q\nwant %q", got, c.want)
		}
	}
	if got := errnoText(syscall.ENETUNREACH); got != "Network is unreachable" {
		t.Errorf("errnoText = %q", got)
	}
}

func TestRouteString(t *testing.T) {
	for _, c := range []struct {
		r    Route
		want string
	}{
		{Route{Family: unix.AF_INET, Table: 254, Type: "unicast", Gateway: netip.MustParseAddr("10.0.0.254"), Dev: "eth0", Protocol: "dhcp", Metric: 100},
			"default via 10.0.0.254 dev eth0 proto dhcp metric 100"},
		{Route{Family: unix.AF_INET6, Table: 100, Type: "unreachable", Dst: netip.MustParsePrefix("2001:db8::/64"), Dev: "lo", Protocol: "boot", Metric: 1024},
			"unreachable 2001:db8::/64 dev lo table 100 metric 1024"},
		{Route{Family: unix.AF_INET, Table: 255, Type: "local", Dst: netip.MustParsePrefix("10.0.0.1/32"), Dev: "eth0", Protocol: "kernel", Src: netip.MustParseAddr("10.0.0.1")},
			"local 10.0.0.1/32 dev eth0 table local proto kernel src 10.0.0.1"},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("String()\n got %q\nwant %q", got, c.want)
		}
	}
	if !(Route{}).IsDefault() || (Route{Dst: netip.MustParsePrefix("10.0.0.0/8")}).IsDefault() {
		t.Error("IsDefault")
	}
}

// nlAttr is one attribute of a hand-built message.
type nlAttr struct {
	typ  uint16
	data []byte
}

func u32attr(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// ruleMsg builds an RTM_NEWRULE payload (fib_rule_hdr + attributes) as the
// kernel sends it.
func ruleMsg(family, dstLen, srcLen, table, action uint8, flags uint32, attrs ...nlAttr) []byte {
	hdr := make([]byte, 12)
	hdr[0], hdr[1], hdr[2], hdr[4], hdr[7] = family, dstLen, srcLen, table, action
	binary.NativeEndian.PutUint32(hdr[8:], flags)
	p, err := nl.Payload(hdr, func(ae *netlink.AttributeEncoder) {
		for _, a := range attrs {
			ae.Bytes(a.typ, a.data)
		}
	})
	if err != nil {
		panic(err)
	}
	return p
}

// parseRule decodes and renders one rule message; a message the decoder
// refuses is the zero Rule.
func parseRule(p []byte) Rule {
	m, err := rtnl.DecodeRule(p)
	if err != nil {
		return Rule{}
	}
	return ruleFrom(m)
}

func TestParseRuleText(t *testing.T) {
	u16pair := func(a, b uint16) []byte {
		x := make([]byte, 4)
		binary.NativeEndian.PutUint16(x, a)
		binary.NativeEndian.PutUint16(x[2:], b)
		return x
	}
	uidr := func(a, b uint32) []byte {
		x := make([]byte, 8)
		binary.NativeEndian.PutUint32(x, a)
		binary.NativeEndian.PutUint32(x[4:], b)
		return x
	}
	for _, c := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"main", ruleMsg(unix.AF_INET, 0, 0, 254, unix.FR_ACT_TO_TBL, 0,
			nlAttr{unix.FRA_PRIORITY, u32attr(32766)}, nlAttr{unix.FRA_TABLE, u32attr(254)}),
			"32766: from all lookup main"},
		{"fwmark", ruleMsg(unix.AF_INET, 0, 0, 100, unix.FR_ACT_TO_TBL, 0,
			nlAttr{unix.FRA_PRIORITY, u32attr(100)}, nlAttr{unix.FRA_TABLE, u32attr(100)},
			nlAttr{unix.FRA_FWMARK, u32attr(1)}, nlAttr{unix.FRA_FWMASK, u32attr(0xffffffff)}),
			"100: from all fwmark 0x1 lookup 100"},
		{"fwmark mask, from, unreachable", ruleMsg(unix.AF_INET, 0, 32, 0, unix.FR_ACT_UNREACHABLE, 0,
			nlAttr{unix.FRA_PRIORITY, u32attr(102)}, nlAttr{unix.FRA_SRC, []byte{10, 77, 0, 1}},
			nlAttr{unix.FRA_FWMARK, u32attr(2)}, nlAttr{unix.FRA_FWMASK, u32attr(0xff)}),
			"102: from 10.77.0.1 fwmark 0x2/0xff unreachable"},
		{"v6 uidrange prefix", ruleMsg(unix.AF_INET6, 0, 64, 100, unix.FR_ACT_TO_TBL, 0,
			nlAttr{unix.FRA_PRIORITY, u32attr(101)}, nlAttr{unix.FRA_TABLE, u32attr(100)},
			nlAttr{unix.FRA_SRC, netip.MustParseAddr("fd77::").AsSlice()}, nlAttr{unix.FRA_UID_RANGE, uidr(1000, 1999)}),
			"101: from fd77::/64 uidrange 1000-1999 lookup 100"},
		{"not, iif, ports, suppress", ruleMsg(unix.AF_INET, 24, 0, 254, unix.FR_ACT_TO_TBL, unix.FIB_RULE_INVERT,
			nlAttr{unix.FRA_PRIORITY, u32attr(5)}, nlAttr{unix.FRA_DST, []byte{192, 0, 2, 0}},
			nlAttr{unix.FRA_IIFNAME, []byte("eth0\x00")}, nlAttr{unix.FRA_IP_PROTO, []byte{6}},
			nlAttr{unix.FRA_DPORT_RANGE, u16pair(80, 80)}, nlAttr{unix.FRA_SPORT_RANGE, u16pair(1000, 2000)},
			nlAttr{unix.FRA_TABLE, u32attr(254)}, nlAttr{unix.FRA_SUPPRESS_PREFIXLEN, u32attr(0)}),
			"5: not from all to 192.0.2.0/24 iif eth0 ipproto tcp sport 1000-2000 dport 80 lookup main suppress_prefixlength 0"},
		{"goto", ruleMsg(unix.AF_INET, 0, 0, 0, unix.FR_ACT_GOTO, 0,
			nlAttr{unix.FRA_PRIORITY, u32attr(7)}, nlAttr{unix.FRA_GOTO, u32attr(200)}),
			"7: from all goto 200"},
		{"l3mdev", ruleMsg(unix.AF_INET, 0, 0, 0, unix.FR_ACT_TO_TBL, 0,
			nlAttr{unix.FRA_PRIORITY, u32attr(1000)}, nlAttr{unix.FRA_L3MDEV, []byte{1}}),
			"1000: from all lookup [l3mdev-table]"},
	} {
		r := parseRule(c.msg)
		if r.Text != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, r.Text, c.want)
		}
	}
	// Truncated attributes never panic.
	msg := ruleMsg(unix.AF_INET, 0, 0, 254, unix.FR_ACT_TO_TBL, 0, nlAttr{unix.FRA_PRIORITY, u32attr(1)})
	for i := 12; i < len(msg); i++ {
		_ = parseRule(msg[:i])
	}
}

func TestNames(t *testing.T) {
	if TableName(254) != "main" || TableName(255) != "local" || TableName(100) != "100" {
		t.Error("TableName")
	}
}

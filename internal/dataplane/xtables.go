package dataplane

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy xtables (iptables-legacy): the rules of every IPv4 table the
// namespace has instantiated, read with the ip_tables getsockopt
// interface (IPT_SO_GET_INFO / IPT_SO_GET_ENTRIES), the way iptables-legacy
// itself reads them.

// XTRule is one legacy iptables rule, or a built-in chain's policy.
type XTRule struct {
	// Family is 4 (iptables-legacy) or 6 (ip6tables-legacy).
	Family int    `json:"family"`
	Table  string `json:"table"`
	Chain  string `json:"chain"`
	// Num is the rule's 1-based position in its chain (what
	// `iptables -D CHAIN Num` deletes); 0 for a policy.
	Num int `json:"num"`
	// Text is the rule as `iptables -S` prints it ("-A INPUT ... -j DROP",
	// "-P INPUT DROP").
	Text string `json:"text"`
	// Target is DROP, REJECT, ACCEPT, RETURN, a user chain or an extension.
	Target  string `json:"target"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Policy  bool   `json:"policy,omitempty"`

	m xtMatch
}

// Drops reports whether the rule's verdict discards the packet.
func (r XTRule) Drops() bool { return r.Target == "DROP" || r.Target == "REJECT" }

// Key identifies the rule across two readings of the same ruleset.
func (r XTRule) Key() string {
	return strconv.Itoa(r.Family) + "|" + r.Table + "|" + r.Chain + "|" + strconv.Itoa(r.Num) + "|" + r.Text
}

// Tool is the command that manages the rule: iptables-legacy or
// ip6tables-legacy.
func (r XTRule) Tool() string {
	if r.Family == 6 {
		return "ip6tables-legacy"
	}
	return "iptables-legacy"
}

// xtMatch is what the rule's selectors say, as far as they were decoded.
type xtMatch struct {
	v6             bool
	proto          uint16
	invProto       bool
	src, dst       netip.Prefix
	invSrc, invDst bool
	inIf, outIf    string
	invIn, invOut  bool
	tcp            bool
	spts, dpts     [2]uint16
	invSpt, invDpt bool
	flgMask        uint8
	flgCmp         uint8
	invFlg         bool
	// unknown lists matches not decoded: the rule may or may not match.
	unknown []string
}

// Packet is a TCP segment offered to Match.
type Packet struct {
	Src, Dst     netip.Addr
	Sport, Dport uint16
	Flags        uint8 // TCP flags (0x02 SYN, 0x12 SYN+ACK)
	// Src, Dst: invalid or unspecified when unknown (a rule selecting on
	// them then only maybe matches). InIf and OutIf are the devices, ""
	// when unknown.
	InIf, OutIf string
}

// Match says whether the rule's selectors take p: yes, or maybe (a
// selector was not decoded or needs a device that is unknown).
func (r XTRule) Match(p Packet) (yes, maybe bool) {
	m := r.m
	if r.Policy {
		return true, false
	}
	if m.proto != 0 && (m.proto == unix.IPPROTO_TCP) == m.invProto {
		return false, false
	}
	if (m.v6 && p.Src.Is4()) || (!m.v6 && p.Src.Is6()) || (m.v6 && p.Dst.Is4()) || (!m.v6 && p.Dst.Is6()) {
		return false, false // the other family's table
	}
	unsure := len(m.unknown) > 0
	for _, a := range []struct {
		sel  netip.Prefix
		inv  bool
		addr netip.Addr
	}{{m.src, m.invSrc, p.Src}, {m.dst, m.invDst, p.Dst}} {
		if a.sel.Bits() == 0 && !a.inv {
			continue
		}
		if !a.addr.IsValid() || a.addr.IsUnspecified() {
			unsure = true
			continue
		}
		if a.sel.Contains(a.addr) == a.inv {
			return false, false
		}
	}
	for _, d := range []struct {
		rule, pkt string
		inv       bool
	}{{m.inIf, p.InIf, m.invIn}, {m.outIf, p.OutIf, m.invOut}} {
		if d.rule == "" {
			continue
		}
		if d.pkt == "" {
			unsure = true
			continue
		}
		if ifMatch(d.rule, d.pkt) == d.inv {
			return false, false
		}
	}
	if m.tcp {
		in := func(pr [2]uint16, v uint16) bool { return v >= pr[0] && v <= pr[1] }
		if in(m.spts, p.Sport) == m.invSpt || in(m.dpts, p.Dport) == m.invDpt {
			return false, false
		}
		if (p.Flags&m.flgMask == m.flgCmp) == m.invFlg {
			return false, false
		}
	}
	return !unsure, unsure
}

// ifMatch applies iptables' interface rule: a trailing '+' is a prefix.
func ifMatch(rule, dev string) bool {
	if p, ok := strings.CutSuffix(rule, "+"); ok {
		return strings.HasPrefix(dev, p)
	}
	return rule == dev
}

// Constants of include/uapi/linux/netfilter_ipv4/ip_tables.h,
// netfilter_ipv6/ip6_tables.h and x_tables.h. The IPv6 getsockopts have
// the same numbers (IP6T_SO_GET_INFO, IP6T_SO_GET_ENTRIES) on SOL_IPV6.
const (
	iptSoGetInfo    = 64 // IPT_SO_GET_INFO
	iptSoGetEntries = 65 // IPT_SO_GET_ENTRIES
	xtTableMaxName  = 32
	getInfoSize     = 84 // struct ipt_getinfo (= ip6t_getinfo)
	getEntriesHdr   = 40 // struct ipt_get_entries up to entrytable
	xtMatchHdr      = 32 // struct xt_entry_match / xt_entry_target header
	nfHooks         = 5

	iptInvViaIn  = 0x01
	iptInvViaOut = 0x02
	iptInvSrcIP  = 0x08
	iptInvDstIP  = 0x10
	iptInvProto  = 0x40
	iptFFrag     = 0x01

	xtTCPInvSrcPt  = 0x01
	xtTCPInvDstPt  = 0x02
	xtTCPInvFlags  = 0x04
	xtTCPInvOption = 0x08
)

var hookChains = [nfHooks]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// xtFamily is the layout of one family's entries: struct ipt_entry (ipt_ip
// 84 bytes, then nfcache, target_offset, next_offset, comefrom, counters;
// 112 bytes) or struct ip6t_entry (ip6t_ip6 136 bytes; 168).
type xtFamily struct {
	family        int
	names         string
	domain, level int
	entry         int // sizeof the entry header
	tOffAt        int // target_offset; next_offset follows
	pcntAt        int // counters.pcnt; bcnt follows
	gotoFlag      byte
}

func familyOf(v int) xtFamily {
	if v == 6 {
		return xtFamily{6, "ip6_tables_names", unix.AF_INET6, unix.SOL_IPV6, 168, 140, 152, 0x04}
	}
	return xtFamily{4, "ip_tables_names", unix.AF_INET, unix.SOL_IP, 112, 88, 96, 0x02}
}

// offsets of an entry at the start of e: target offset and next offset.
func (f xtFamily) offsets(e []byte) (int, int) {
	return int(binary.NativeEndian.Uint16(e[f.tOffAt:])), int(binary.NativeEndian.Uint16(e[f.tOffAt+2:]))
}

// ReadXTables reads every legacy IPv4 and IPv6 table the calling
// thread's namespace has instantiated (call inside netns.Target.Do), as
// listed in /proc/net/ip_tables_names and ip6_tables_names: asking for a
// table by name would make the kernel load and register it. No
// ip_tables / ip6_tables module means no legacy rules of that family: an
// empty, non-nil result.
func ReadXTables(procNet string) ([]XTRule, error) {
	out := []XTRule{}
	for _, v := range []int{4, 6} {
		f := familyOf(v)
		b, err := os.ReadFile(filepath.Join(procNet, f.names))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("legacy xtables: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			name := strings.TrimSpace(sc.Text())
			if name == "" {
				continue
			}
			rs, err := f.readTable(name)
			if err != nil {
				return nil, fmt.Errorf("legacy xtables (IPv%d) table %s: %w", v, name, err)
			}
			out = append(out, rs...)
		}
	}
	return out, nil
}

func getsockopt(fd, level, opt int, buf []byte) (int, error) {
	l := uint32(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return int(l), nil
}

func (f xtFamily) readTable(name string) ([]XTRule, error) {
	if len(name) >= xtTableMaxName {
		return nil, fmt.Errorf("table name too long")
	}
	fd, err := unix.Socket(f.domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	// The table can change between the two calls (EAGAIN): retry a few times.
	for attempt := 0; ; attempt++ {
		info := make([]byte, getInfoSize)
		copy(info, name)
		if _, err := getsockopt(fd, f.level, iptSoGetInfo, info); err != nil {
			return nil, fmt.Errorf("IPT_SO_GET_INFO: %w", err)
		}
		ne := binary.NativeEndian
		valid := ne.Uint32(info[32:])
		var hookEntry, underflow [nfHooks]uint32
		for h := 0; h < nfHooks; h++ {
			hookEntry[h] = ne.Uint32(info[36+4*h:])
			underflow[h] = ne.Uint32(info[56+4*h:])
		}
		size := ne.Uint32(info[80:])
		const maxSize = 64 << 20
		if size > maxSize {
			return nil, fmt.Errorf("table of %d bytes", size)
		}
		buf := make([]byte, getEntriesHdr+int(size))
		copy(buf, name)
		ne.PutUint32(buf[32:], size)
		if _, err := getsockopt(fd, f.level, iptSoGetEntries, buf); err != nil {
			if errors.Is(err, unix.EAGAIN) && attempt < 3 {
				continue
			}
			return nil, fmt.Errorf("IPT_SO_GET_ENTRIES: %w", err)
		}
		return f.parseEntries(name, buf[getEntriesHdr:], valid, hookEntry, underflow)
	}
}

// parseEntries walks the ipt_entry / ip6t_entry blob of one table.
func (f xtFamily) parseEntries(table string, b []byte, valid uint32, hookEntry, underflow [nfHooks]uint32) ([]XTRule, error) {
	ne := binary.NativeEndian
	var out []XTRule
	chain := ""
	num := 0
	for off := 0; off < len(b); {
		if off+f.entry > len(b) {
			return nil, fmt.Errorf("truncated entry at %d", off)
		}
		e := b[off:]
		tOff, next := f.offsets(e)
		if next < f.entry || off+next > len(b) || tOff < f.entry || tOff+xtMatchHdr > next {
			return nil, fmt.Errorf("bad entry at %d", off)
		}
		e = e[:next]
		for h := 0; h < nfHooks; h++ {
			if valid&(1<<h) != 0 && int(hookEntry[h]) == off {
				chain, num = hookChains[h], 0
			}
		}
		tgtName, tgtData := extName(e[tOff:])
		isPolicy := false
		for h := 0; h < nfHooks; h++ {
			if valid&(1<<h) != 0 && int(underflow[h]) == off {
				isPolicy = true
			}
		}
		r := XTRule{Family: f.family, Table: table, Chain: chain, Packets: ne.Uint64(e[f.pcntAt:]), Bytes: ne.Uint64(e[f.pcntAt+8:])}
		switch {
		case tgtName == "ERROR":
			// A user chain's head (or the table's end marker).
			chain, num = cString(tgtData), 0
			off += next
			continue
		case isPolicy:
			r.Policy = true
			r.Target = standardTarget(tgtData, b, nil)
			r.Text = fmt.Sprintf("-P %s %s", chain, r.Target)
			out = append(out, r)
			off += next
			continue
		case chain != "" && !isBuiltin(chain) && f.nextIsError(b, off+next):
			// The RETURN closing a user chain: not a rule of its own.
			off += next
			continue
		}
		num++
		r.Num = num
		var flags byte
		r.m, r.Text, flags = f.decodeRule(e, tOff)
		if tgtName == "" {
			r.Target = standardTarget(tgtData, b, f.jumpName)
		} else {
			r.Target = tgtName
		}
		r.Text = "-A " + chain + r.Text + targetText(r.Target, tgtName, tgtData, flags&f.gotoFlag != 0, f.family == 6)
		out = append(out, r)
		off += next
	}
	return out, nil
}

func isBuiltin(chain string) bool {
	for _, c := range hookChains {
		if c == chain {
			return true
		}
	}
	return false
}

// nextIsError reports whether the entry at off is an ERROR entry (a user
// chain's head or the table's end).
func (f xtFamily) nextIsError(b []byte, off int) bool {
	if off+f.entry > len(b) {
		return false
	}
	e := b[off:]
	tOff, next := f.offsets(e)
	if tOff+xtMatchHdr > next || off+next > len(b) {
		return false
	}
	n, _ := extName(e[tOff:next])
	return n == "ERROR"
}

func extName(h []byte) (string, []byte) {
	size := int(binary.NativeEndian.Uint16(h))
	if size < xtMatchHdr || size > len(h) {
		size = len(h)
	}
	return cString(h[2:31]), h[xtMatchHdr:size]
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// standardTarget names a standard target's verdict: DROP, ACCEPT, QUEUE,
// RETURN, or the user chain it jumps to.
func standardTarget(data, table []byte, resolve func([]byte, int) string) string {
	if len(data) < 4 {
		return "?"
	}
	v := int32(binary.NativeEndian.Uint32(data))
	switch v {
	case -1:
		return "DROP"
	case -2:
		return "ACCEPT"
	case -4:
		return "QUEUE"
	case -5:
		return "RETURN"
	}
	if v >= 0 && resolve != nil {
		return resolve(table, int(v))
	}
	return fmt.Sprintf("verdict %d", v)
}

// jumpName finds the user chain a jump lands in: the ERROR entry (chain
// head) right before the target offset.
func (f xtFamily) jumpName(b []byte, target int) string {
	name := ""
	for off := 0; off < len(b) && off < target; {
		e := b[off:]
		if len(e) < f.entry {
			break
		}
		tOff, next := f.offsets(e)
		if next < f.entry || tOff+xtMatchHdr > next || off+next > len(b) {
			break
		}
		if n, d := extName(e[tOff:next]); n == "ERROR" {
			name = cString(d)
		}
		off += next
	}
	if name == "" {
		return fmt.Sprintf("offset %d", target)
	}
	return name
}

// decodeRule renders and decodes the ipt_ip / ip6t_ip6 part and the
// matches; it also returns the entry's flags.
func (f xtFamily) decodeRule(e []byte, tOff int) (xtMatch, string, byte) {
	m := xtMatch{v6: f.family == 6}
	var sb strings.Builder
	// ipt_ip: src, dst, smsk, dmsk (4 bytes each), 4 interface fields
	// (16 each), proto u16, flags, invflags. ip6t_ip6: the same with
	// 16-byte addresses and a tos byte after proto.
	al := 4
	if m.v6 {
		al = 16
	}
	src, dst, smsk, dmsk := e[0:al], e[al:2*al], e[2*al:3*al], e[3*al:4*al]
	ifs := 4 * al
	protoAt := ifs + 64
	proto := binary.NativeEndian.Uint16(e[protoAt:])
	flags, inv := e[protoAt+2], e[protoAt+3]
	if m.v6 {
		flags, inv = e[protoAt+3], e[protoAt+4]
	}
	m.proto, m.invProto = proto, inv&iptInvProto != 0
	m.src, m.invSrc = prefixOf(src, smsk), inv&iptInvSrcIP != 0
	m.dst, m.invDst = prefixOf(dst, dmsk), inv&iptInvDstIP != 0
	not := func(b bool) string {
		if b {
			return " !"
		}
		return ""
	}
	if m.src.Bits() > 0 || m.invSrc {
		fmt.Fprintf(&sb, "%s -s %s", not(m.invSrc), m.src)
	}
	if m.dst.Bits() > 0 || m.invDst {
		fmt.Fprintf(&sb, "%s -d %s", not(m.invDst), m.dst)
	}
	m.inIf, m.invIn = ifName(e[ifs:ifs+16], e[ifs+32:ifs+48]), inv&iptInvViaIn != 0
	m.outIf, m.invOut = ifName(e[ifs+16:ifs+32], e[ifs+48:ifs+64]), inv&iptInvViaOut != 0
	if m.inIf != "" {
		fmt.Fprintf(&sb, "%s -i %s", not(m.invIn), m.inIf)
	}
	if m.outIf != "" {
		fmt.Fprintf(&sb, "%s -o %s", not(m.invOut), m.outIf)
	}
	if proto != 0 {
		fmt.Fprintf(&sb, "%s -p %s", not(m.invProto), protoName(proto))
	}
	if !m.v6 && flags&iptFFrag != 0 {
		sb.WriteString(" -f")
		m.unknown = append(m.unknown, "-f")
	}
	for off := f.entry; off+xtMatchHdr <= tOff; {
		size := int(binary.NativeEndian.Uint16(e[off:]))
		if size < xtMatchHdr || off+size > tOff {
			m.unknown = append(m.unknown, "malformed match")
			break
		}
		name, data := extName(e[off : off+size])
		fmt.Fprintf(&sb, " -m %s", name)
		switch {
		case name == "tcp" && len(data) >= 12:
			sb.WriteString(m.tcpMatch(data))
		case name == "comment" && len(data) > 0:
			fmt.Fprintf(&sb, " --comment %s", strconv.Quote(cString(data)))
		default:
			m.unknown = append(m.unknown, name)
		}
		off += size
	}
	return m, sb.String(), flags
}

// tcpMatch decodes struct xt_tcp: spts[2], dpts[2] (host order), option,
// flg_mask, flg_cmp, invflags; printed as libxt_tcp's save does.
func (m *xtMatch) tcpMatch(d []byte) string {
	ne := binary.NativeEndian
	m.tcp = true
	m.spts = [2]uint16{ne.Uint16(d[0:]), ne.Uint16(d[2:])}
	m.dpts = [2]uint16{ne.Uint16(d[4:]), ne.Uint16(d[6:])}
	option, inv := d[8], d[11]
	m.flgMask, m.flgCmp = d[9], d[10]
	m.invSpt, m.invDpt, m.invFlg = inv&xtTCPInvSrcPt != 0, inv&xtTCPInvDstPt != 0, inv&xtTCPInvFlags != 0
	var sb strings.Builder
	ports := func(name string, pr [2]uint16, invert bool) {
		if pr[0] == 0 && pr[1] == 0xffff {
			return
		}
		if invert {
			sb.WriteString(" !")
		}
		if pr[0] != pr[1] {
			fmt.Fprintf(&sb, " --%s %d:%d", name, pr[0], pr[1])
		} else {
			fmt.Fprintf(&sb, " --%s %d", name, pr[0])
		}
	}
	ports("sport", m.spts, m.invSpt)
	ports("dport", m.dpts, m.invDpt)
	if option != 0 || inv&xtTCPInvOption != 0 {
		if inv&xtTCPInvOption != 0 {
			sb.WriteString(" !")
		}
		fmt.Fprintf(&sb, " --tcp-option %d", option)
		m.unknown = append(m.unknown, "tcp-option")
	}
	if m.flgMask != 0 || m.invFlg {
		if m.invFlg {
			sb.WriteString(" !")
		}
		fmt.Fprintf(&sb, " --tcp-flags %s %s", tcpFlags(m.flgMask), tcpFlags(m.flgCmp))
	}
	return sb.String()
}

// tcpFlags prints flags as libxt_tcp's print_tcpf.
func tcpFlags(f uint8) string {
	names := []struct {
		n string
		f uint8
	}{{"FIN", 0x01}, {"SYN", 0x02}, {"RST", 0x04}, {"PSH", 0x08}, {"ACK", 0x10}, {"URG", 0x20}}
	var out []string
	for _, x := range names {
		if f&x.f != 0 {
			out = append(out, x.n)
		}
	}
	if len(out) == 0 {
		return "NONE"
	}
	return strings.Join(out, ",")
}

func targetText(target, ext string, data []byte, isGoto, v6 bool) string {
	s := " -j " + target
	if isGoto {
		s = " -g " + target
	}
	if ext == "REJECT" && len(data) >= 4 {
		with := []string{"icmp-net-unreachable", "icmp-host-unreachable", "icmp-proto-unreachable", "icmp-port-unreachable",
			"icmp-echo-reply", "icmp-net-prohibited", "icmp-host-prohibited", "tcp-reset", "icmp-admin-prohibited"}
		if v6 {
			with = []string{"icmp6-no-route", "icmp6-adm-prohibited", "icmp6-not-neighbour", "icmp6-addr-unreachable",
				"icmp6-port-unreachable", "echo-reply", "tcp-reset", "icmp6-policy-fail", "icmp6-reject-route"}
		}
		if v := binary.NativeEndian.Uint32(data); int(v) < len(with) {
			s += " --reject-with " + with[v]
		}
	}
	return s
}

func prefixOf(addr, mask []byte) netip.Prefix {
	a, _ := netip.AddrFromSlice(addr)
	ones := 0
	for _, c := range mask {
		for i := 7; i >= 0; i-- {
			if c&(1<<i) == 0 {
				return netip.PrefixFrom(a, ones)
			}
			ones++
		}
	}
	return netip.PrefixFrom(a, ones)
}

// ifName renders an interface selector: the name, with '+' when the mask
// covers only a prefix of it.
func ifName(name, mask []byte) string {
	n := cString(name)
	if n == "" {
		return ""
	}
	// iptables stores "eth+" with a mask over "eth" only.
	if !strings.HasSuffix(n, "+") && len(n) < len(mask) && mask[len(n)] == 0 {
		return n + "+"
	}
	return n
}

func protoName(p uint16) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}

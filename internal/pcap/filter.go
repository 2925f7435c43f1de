package pcap

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/synscope/synscope/internal/packet"
)

// Filter keeps packets whose source or destination matches every term.
type Filter struct {
	hosts []netip.Prefix
	ports []uint16
}

// ParseFilter accepts terms separated by commas or spaces: "host A",
// "net P/len", "port N", a bare address, prefix or port, or "A:port"
// ("[v6]:port").
func ParseFilter(s string) (*Filter, error) {
	f := &Filter{}
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
	for i := 0; i < len(fields); i++ {
		t := fields[i]
		if (t == "host" || t == "port" || t == "net") && i+1 < len(fields) {
			i++
			t = fields[i]
		}
		if err := f.add(t); err != nil {
			return nil, err
		}
	}
	if len(f.hosts) == 0 && len(f.ports) == 0 {
		return nil, fmt.Errorf("filter %q: no host or port", s)
	}
	return f, nil
}

func (f *Filter) add(t string) error {
	if n, err := strconv.ParseUint(t, 10, 16); err == nil {
		f.ports = append(f.ports, uint16(n))
		return nil
	}
	if ap, err := netip.ParseAddrPort(t); err == nil {
		f.hosts = append(f.hosts, netip.PrefixFrom(ap.Addr(), ap.Addr().BitLen()))
		f.ports = append(f.ports, ap.Port())
		return nil
	}
	if a, err := netip.ParseAddr(t); err == nil {
		f.hosts = append(f.hosts, netip.PrefixFrom(a, a.BitLen()))
		return nil
	}
	if p, err := netip.ParsePrefix(t); err == nil {
		f.hosts = append(f.hosts, p.Masked())
		return nil
	}
	return fmt.Errorf("filter term %q: not an address, prefix or port", t)
}

func (f *Filter) match(p *packet.Packet) bool {
	src, dst := p.Src, p.Dst
	sp, dp := p.SrcPort, p.DstPort
	if p.Kind == packet.KindICMPError {
		src, dst, sp, dp = p.InnerSrc, p.InnerDst, p.InnerSport, p.InnerDport
	}
	return f.side(src.IP(p.V6), sp) || f.side(dst.IP(p.V6), dp) || f.split(src.IP(p.V6), dst.IP(p.V6), sp, dp)
}

func (f *Filter) side(a netip.Addr, port uint16) bool {
	return f.hostOK(a) && f.portOK(port)
}

// split lets "host A port B" match A talking to anyone on port B.
func (f *Filter) split(s, d netip.Addr, sp, dp uint16) bool {
	return (f.hostOK(s) && f.portOK(dp)) || (f.hostOK(d) && f.portOK(sp))
}

func (f *Filter) hostOK(a netip.Addr) bool {
	if len(f.hosts) == 0 {
		return true
	}
	for _, h := range f.hosts {
		if h.Contains(a) {
			return true
		}
	}
	return false
}

func (f *Filter) portOK(p uint16) bool {
	if len(f.ports) == 0 {
		return true
	}
	for _, q := range f.ports {
		if q == p {
			return true
		}
	}
	return false
}

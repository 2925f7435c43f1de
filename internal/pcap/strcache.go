package pcap

import (
	"encoding/binary"

	"github.com/synscope/synscope/internal/packet"
)

// strCache reuses the strings every finished connection needs: its
// history (a few dozen distinct values in any capture) and its
// addresses (servers repeat). It turns three allocations per
// connection into about one.
type strCache struct {
	hist  map[string]string
	addrs [1 << 12]addrStr
}

type addrStr struct {
	a  packet.Addr
	v6 bool
	s  string
}

// maxHist bounds the history cache: a capture of pathological
// connections could otherwise grow it without limit.
const maxHist = 4096

func (sc *strCache) history(h []byte) string {
	if s, ok := sc.hist[string(h)]; ok {
		return s
	}
	s := string(h)
	if sc.hist == nil {
		sc.hist = map[string]string{}
	}
	if len(sc.hist) < maxHist {
		sc.hist[s] = s
	}
	return s
}

func (sc *strCache) addr(a *packet.Addr, v6 bool) string {
	x := binary.LittleEndian.Uint64(a[:8]) ^ binary.LittleEndian.Uint64(a[8:])*0x9e3779b97f4a7c15
	e := &sc.addrs[(x*0xff51afd7ed558ccd)>>52]
	if e.s != "" && e.a == *a && e.v6 == v6 {
		return e.s
	}
	e.a, e.v6, e.s = *a, v6, a.IP(v6).String()
	return e.s
}

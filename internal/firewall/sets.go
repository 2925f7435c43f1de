package firewall

import (
	"bytes"
	"sort"

	"github.com/google/nftables"
)

// Named and anonymous sets: their intervals, and how a rule refers to them.

func setRef(s *setInfo) string {
	if s.anonymous && s.ok {
		return "{ ... }"
	}
	return "@" + s.name
}

// setIntervals turns set elements into inclusive intervals. nft stores an
// interval set as start keys and (flagged) end keys one past the range.
func setIntervals(s *nftables.Set, elems []nftables.SetElement) ([]interval, bool) {
	if s.Concatenation {
		return nil, false
	}
	if !s.Interval {
		out := make([]interval, 0, len(elems))
		for _, e := range elems {
			hi := e.Key
			if len(e.KeyEnd) > 0 {
				hi = e.KeyEnd
			}
			out = append(out, interval{lo: e.Key, hi: hi})
		}
		sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].lo, out[j].lo) < 0 })
		return out, true
	}
	el := append([]nftables.SetElement(nil), elems...)
	sort.SliceStable(el, func(i, j int) bool { return bytes.Compare(el[i].Key, el[j].Key) < 0 })
	var out []interval
	for i, e := range el {
		if e.IntervalEnd {
			continue
		}
		if len(e.KeyEnd) > 0 {
			out = append(out, interval{lo: e.Key, hi: e.KeyEnd})
			continue
		}
		hi := bytes.Repeat([]byte{0xff}, len(e.Key))
		if i+1 < len(el) {
			hi = decBytes(el[i+1].Key)
		}
		out = append(out, interval{lo: e.Key, hi: hi})
	}
	return out, true
}

// decBytes is b-1 as a big-endian number.
func decBytes(b []byte) []byte {
	out := append([]byte(nil), b...)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]--
		if out[i] != 0xff {
			break
		}
	}
	return out
}

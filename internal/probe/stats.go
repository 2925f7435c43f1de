package probe

import (
	"math"
	"sort"
)

// Summarize computes the statistics of a list of attempts. Loss counts the
// attempts that got no answer at all (timeouts); a reset or an ICMP error
// is an answer. Times are over the attempts the destination answered
// (connected or refused): the handshake time.
func Summarize(at []Attempt) Stats {
	s := Stats{Sent: len(at)}
	var rtts []float64
	for _, a := range at {
		switch a.Outcome {
		case OutConnected:
			s.Connected++
			rtts = append(rtts, a.RTTms)
		case OutRefused:
			s.Refused++
			rtts = append(rtts, a.RTTms)
		case OutTimeout:
			s.Timeouts++
		case OutUnreachable, OutTTLExceeded:
			s.Unreachable++
		default:
			s.Errors++
		}
	}
	if s.Sent > 0 {
		s.LossPct = math.Round(float64(s.Timeouts)/float64(s.Sent)*1000) / 10
	}
	if len(rtts) > 0 {
		sort.Float64s(rtts)
		s.MinMs = rtts[0]
		s.MaxMs = rtts[len(rtts)-1]
		s.MedianMs = percentile(rtts, 50)
		s.P99Ms = percentile(rtts, 99)
	}
	return s
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	if p == 50 && len(sorted)%2 == 0 {
		return round3((sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2)
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

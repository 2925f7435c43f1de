package trace

import (
	"sort"

	"github.com/synscope/synscope/internal/causes"
)

// Summary is what trace prints on exit.
type Summary struct {
	// Counters are kernel totals for every SYN that passed the filters.
	Counters Counters `json:"kernel"`
	// Outcomes counts reported SYNs by "fate cause", most frequent first.
	Outcomes     []KeyCount `json:"outcomes"`
	TopPeers     []KeyCount `json:"top_peers"`
	TopListeners []KeyCount `json:"top_listeners"`
	// KernelCauses attributes every SYN the kernel counted (reported or
	// not) whose fate is known at SYN time, so a flood beyond the sampling
	// budget still shows its causes. SYN-ACK-side fates (unanswered,
	// neighbour, egress drops) need the per-flow events and are only in
	// Outcomes.
	KernelCauses map[causes.ID]uint64 `json:"kernel_causes,omitempty"`
	// SynToSynAckP50US is the median SYN→SYN-ACK latency of reported SYNs.
	SynToSynAckP50US float64 `json:"syn_to_synack_p50_us,omitempty"`
	// Fexit is the start-up probe's answer (Tracer.Fexit); Summarize leaves
	// it empty for the caller to fill.
	Fexit FexitStatus `json:"fexit"`
	// Capabilities are what the tracer could and could not hook on this
	// kernel (Tracer.Capabilities); Summarize leaves them for the caller.
	Capabilities []Capability `json:"capabilities"`
}

// Missing returns the capabilities that are not available.
func Missing(caps []Capability) []Capability {
	var out []Capability
	for _, c := range caps {
		if c.State != Available {
			out = append(out, c)
		}
	}
	return out
}

func kernelCauses(c Counters) map[causes.ID]uint64 {
	m := map[causes.ID]uint64{}
	if c.RouteFailed > 0 {
		m[causes.NoRouteToPeer] += c.RouteFailed
	}
	for reason, n := range c.SYNDropReasons {
		if id := dropCause(reason); id != "" {
			m[id] += n
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// Summarize combines the kernel counters with the engine's outcome totals.
func Summarize(c Counters, s Stats) Summary {
	sum := Summary{
		Counters:     c,
		Outcomes:     Top(s.FateCause, len(s.FateCause)),
		TopPeers:     Top(s.Peers, 5),
		TopListeners: Top(s.Listeners, 5),
		KernelCauses: kernelCauses(c),
	}
	for i := range sum.Outcomes {
		// "dropped " (no cause) reads better without the trailing space.
		k := sum.Outcomes[i].Key
		if len(k) > 0 && k[len(k)-1] == ' ' {
			sum.Outcomes[i].Key = k[:len(k)-1]
		}
	}
	if n := len(s.Latency); n > 0 {
		l := append([]float64(nil), s.Latency...)
		sort.Float64s(l)
		sum.SynToSynAckP50US = l[n/2]
	}
	return sum
}

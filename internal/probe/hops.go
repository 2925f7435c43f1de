package probe

// hopOf is the hop at which a packet received with ttl was sent, assuming
// the nearest of the usual initial TTLs (hop limits) at or above it: 64
// (Linux, BSD, macOS), 128 (Windows), 255 (network devices, ICMP on many
// routers). 1 = the next hop; 0 = unknown.
func hopOf(ttl int) int {
	if ttl <= 0 || ttl > 255 {
		return 0
	}
	for _, init := range [...]int{64, 128, 255} {
		if ttl <= init {
			return init - ttl + 1
		}
	}
	return 0
}

// placeAnswers sets each attempt's FromHop, the destination's hop from its
// own answers (a SYN-ACK's TTL, else --path's SYN-ACK, else ICMP echo), and
// counts the RSTs sent from nearer than that (pure).
func placeAnswers(a *AddrProbe) {
	for i := range a.Attempts {
		at := &a.Attempts[i]
		at.FromHop = hopOf(at.TTL)
		if at.Outcome == OutConnected && at.FromHop > 0 && (a.ServerHop == 0 || a.ServerHopBy != "syn-ack") {
			a.ServerHop, a.ServerHopBy = at.FromHop, "syn-ack"
		}
	}
	if a.ServerHop == 0 && a.Reached && a.ReachTTL > 0 && pathSawSynAck(a) {
		a.ServerHop, a.ServerHopBy = a.ReachTTL, "path"
	}
	if a.ServerHop == 0 && a.PingTTL > 0 {
		a.ServerHop, a.ServerHopBy = a.PingTTL, "icmp-echo"
	}
	a.ForgedResets, a.ResetHop = 0, 0
	for _, at := range a.Attempts {
		if at.Outcome != OutRefused || at.FromHop == 0 {
			continue
		}
		if a.ResetHop == 0 || at.FromHop < a.ResetHop {
			a.ResetHop = at.FromHop
		}
		if a.ServerHop > 0 && at.FromHop < a.ServerHop {
			a.ForgedResets++
		}
	}
}

func pathSawSynAck(a *AddrProbe) bool {
	for _, h := range a.Path {
		if h.TTL == a.ReachTTL && h.Answer == ansSynAck {
			return true
		}
	}
	return false
}

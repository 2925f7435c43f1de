package probe

import "testing"

func TestHopOf(t *testing.T) {
	for ttl, want := range map[int]int{64: 1, 63: 2, 1: 64, 65: 64, 128: 1, 127: 2, 255: 1, 250: 6, 0: 0, 256: 0} {
		if got := hopOf(ttl); got != want {
			t.Errorf("hopOf(%d) = %d, want %d", ttl, got, want)
		}
	}
}

func TestPlaceAnswers(t *testing.T) {
	// A RST from the next hop while the server's SYN-ACKs come from hop 2.
	a := &AddrProbe{Attempts: []Attempt{{Outcome: OutConnected, TTL: 63}, {Outcome: OutRefused, TTL: 64}}}
	placeAnswers(a)
	if a.ServerHop != 2 || a.ServerHopBy != "syn-ack" || a.ResetHop != 1 || a.ForgedResets != 1 {
		t.Fatalf("got %+v", a)
	}
	// Only resets, the server's hop from ICMP echo: forged when nearer.
	a = &AddrProbe{Local: LocalPath{RouteOK: true}, PingTTL: 2, Attempts: []Attempt{{Outcome: OutRefused, TTL: 64}, {Outcome: OutRefused, TTL: 64}}}
	placeAnswers(a)
	a.Stats = Summarize(a.Attempts)
	if v, _ := addrVerdict(a); v != ForgedReset || a.ForgedResets != 2 {
		t.Fatalf("verdict %s, %+v", v, a)
	}
	// Control: the server's own reset (TTL 63 from hop 2) is not forged.
	a = &AddrProbe{Local: LocalPath{RouteOK: true}, PingTTL: 2, Attempts: []Attempt{{Outcome: OutRefused, TTL: 63}}}
	placeAnswers(a)
	a.Stats = Summarize(a.Attempts)
	if v, _ := addrVerdict(a); v != Refused || a.ForgedResets != 0 || a.ResetHop != 2 {
		t.Fatalf("verdict %s, %+v", v, a)
	}
	// Control: the server's hop unknown: nothing is called forged.
	a = &AddrProbe{Attempts: []Attempt{{Outcome: OutRefused, TTL: 64}}}
	placeAnswers(a)
	if a.ForgedResets != 0 {
		t.Fatalf("forged without the server's hop: %+v", a)
	}
}

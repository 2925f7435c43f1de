package watch

import (
	"testing"
	"time"
)

// A dump can see the kernel purge an RA route before watch reads the
// netconf news that forwarding was switched on (the kernel queues that
// news first). The loss then re-reads the settings: forwarding read off
// before and on now is recorded as news of now, and the loss is
// forwarding-enabled, not unknown. Not read before, or already on: no
// news.
func TestNoteForwardingOn(t *testing.T) {
	now := time.Unix(1000, 0)
	var h history
	before := map[int]devConf{2: {Forwarding: 0, AcceptRA: 1}, 3: {Forwarding: 1, AcceptRA: 1}}
	after := map[int]devConf{2: {Forwarding: 1, AcceptRA: 1}, 3: {Forwarding: 1, AcceptRA: 1}, 4: {Forwarding: 1, AcceptRA: 1}}
	if !noteForwardingOn(&h, before, after, now) {
		t.Fatal("forwarding switched on for device 2 not noted")
	}
	got := h.since(now.Add(-correlationWindow))
	if len(got) != 1 || got[0].Ifindex != 2 || got[0].Kind != hapForwardingOn {
		t.Fatalf("news %+v, want one forwarding-on for device 2 (3 was on already, 4 was not read before)", got)
	}
	r := Route{Family: 6, Table: 254, Type: rtnUnicast, Ifindex: 2, Protocol: protoRA}
	in := lossInput{Route: r, Now: now, Link: Link{Index: 2, Up: true, Carrier: true}, LinkKnown: true, Recent: got}
	if reason, _ := attribute(in); reason != ReasonForwardingEnabled {
		t.Errorf("reason %s, want forwarding-enabled", reason)
	}
	var h2 history
	if noteForwardingOn(&h2, after, after, now) || len(h2.since(time.Time{})) != 0 {
		t.Error("unchanged settings noted as news")
	}
}

package routeloss

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestRisks(t *testing.T) {
	ra := Route{Family: 6, RA: true, Gateway: netip.MustParseAddr("fe80::1"), Ifindex: 2, HasExpiry: true, Remaining: 25 * time.Second}
	static := Route{Family: 4, Gateway: netip.MustParseAddr("10.0.0.1"), Ifindex: 3}
	expired := ra
	expired.Remaining = -time.Second
	conf := map[int]Conf{2: {Forwarding: 1, AcceptRA: 1}}
	failed := func(r Route) bool { return r.Gateway == static.Gateway }
	got := Risks([]Route{ra, static, expired}, conf, failed, 30*time.Second)
	kinds := map[string]int{}
	for _, k := range got {
		kinds[k.Kind]++
	}
	if kinds[RiskForwardingAcceptRA] != 1 || kinds[RiskLifetimeLow] != 1 || kinds[RiskGatewayFailed] != 1 || len(got) != 3 {
		t.Fatalf("got %+v", got)
	}
	// accept_ra=2 keeps RA routes with forwarding on: no risk.
	if got := Risks([]Route{ra}, map[int]Conf{2: {Forwarding: 1, AcceptRA: 2}}, nil, 0); len(got) != 0 {
		t.Fatalf("accept_ra=2: %+v", got)
	}
}

func TestExplain(t *testing.T) {
	x := Explain(Snapshot{Family: 6, Dev: "s0", Conf: Conf{Forwarding: 1, AcceptRA: 1}})
	if len(x) != 1 || x[0].Reason != ForwardingEnabled || !x[0].AcceptRA2 || !strings.Contains(x[0].Text, "s0") {
		t.Fatalf("forwarding: %+v", x)
	}
	x = Explain(Snapshot{Family: 6, Dev: "s0", Conf: Conf{Forwarding: 0, AcceptRA: 1},
		Expired: []Route{{Family: 6, RA: true, Gateway: netip.MustParseAddr("fe80::1"), HasExpiry: true, Remaining: -7 * time.Second}}})
	if len(x) != 1 || x[0].Reason != RAExpired || !strings.Contains(x[0].Text, "7s ago") {
		t.Fatalf("expired: %+v", x)
	}
	x = Explain(Snapshot{Family: 4, Dev: "eth0", ResetAgo: 40 * time.Second})
	if len(x) != 1 || x[0].Reason != LinkDown {
		t.Fatalf("reset: %+v", x)
	}
	if x := Explain(Snapshot{Family: 4, Dev: "eth0"}); len(x) != 0 {
		t.Fatalf("nothing to say, said %+v", x)
	}
	if ResetAge(30*time.Second, 31*time.Second) != 0 || ResetAge(30*time.Second, time.Hour) != 30*time.Second || ResetAge(0, time.Hour) != 0 {
		t.Fatal("ResetAge")
	}
}

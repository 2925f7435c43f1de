package watch

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// attr is one route attribute for routePayload.
type attr struct {
	typ  uint16
	data []byte
}

// rtaCacheinfoExpires is the offset of rta_expires in struct rta_cacheinfo.
const rtaCacheinfoExpires = 8

// routePayload builds an RTM_NEWROUTE payload (rtmsg and attributes), as
// the kernel sends it: written here byte by byte, independent of the
// decoder under test.
func routePayload(fam, dstLen, srcLen uint8, attrs ...attr) []byte {
	p := make([]byte, unix.SizeofRtMsg)
	p[0], p[1], p[2] = fam, dstLen, srcLen
	p[4], p[5], p[7] = unix.RT_TABLE_MAIN, unix.RTPROT_RA, rtnUnicast
	for _, a := range attrs {
		n := unix.SizeofRtAttr + len(a.data)
		h := make([]byte, unix.SizeofRtAttr)
		binary.NativeEndian.PutUint16(h[0:], uint16(n))
		binary.NativeEndian.PutUint16(h[2:], a.typ)
		p = append(p, h...)
		p = append(p, a.data...)
		for len(p)%4 != 0 {
			p = append(p, 0)
		}
	}
	return p
}

// TestParseRouteDefaultAndExpiry pins what the decoder calls a default
// route (review mutant W3: a source route is not one) and reads
// rta_expires in clock ticks (W2: not milliseconds).
func TestParseRouteDefaultAndExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	ci := make([]byte, 32)
	binary.NativeEndian.PutUint32(ci[rtaCacheinfoExpires:], 600) // 600 ticks
	gw := attr{unix.RTA_GATEWAY, netip.MustParseAddr("fe80::1").AsSlice()}
	r, ok := parseRoute(routePayload(unix.AF_INET6, 0, 0, gw, attr{unix.RTA_CACHEINFO, ci}), now)
	if !ok || r.Family != 6 || r.Gateway != netip.MustParseAddr("fe80::1") || r.Protocol != unix.RTPROT_RA {
		t.Fatalf("default route: %+v ok=%v", r, ok)
	}
	if want := now.Add(600 * time.Second / userHZ); !r.HasExpiry || !r.ExpiresAt.Equal(want) {
		t.Errorf("expiry %v (has %v), want %v: rta_expires counts clock ticks (USER_HZ=%d)", r.ExpiresAt, r.HasExpiry, want, userHZ)
	}
	if _, ok := parseRoute(routePayload(unix.AF_INET6, 0, 64, gw), now); ok {
		t.Error("a source-specific route (src_len 64) taken as a default route")
	}
	if _, ok := parseRoute(routePayload(unix.AF_INET, 8, 0), now); ok {
		t.Error("10.0.0.0/8 taken as a default route")
	}
	if r, ok := parseRoute(routePayload(unix.AF_INET, 0, 0), now); !ok || r.HasExpiry {
		t.Errorf("permanent v4 default: %+v ok=%v", r, ok)
	}
}

// TestAssessGatewayFailed (W1): only a FAILED neighbour entry of the
// route's own gateway on its own device is the gateway-failed risk.
func TestAssessGatewayFailed(t *testing.T) {
	now := time.Unix(1000, 0)
	no := func(int, int) bool { return false }
	r := Route{Family: 4, Table: 254, Type: rtnUnicast, Gateway: netip.MustParseAddr("10.0.0.1"), Ifindex: 2}
	for _, tc := range []struct {
		name  string
		neigh map[neighKey]uint16
		want  bool
	}{
		{"failed", map[neighKey]uint16{{2, r.Gateway}: nudFailed}, true},
		{"reachable", map[neighKey]uint16{{2, r.Gateway}: unix.NUD_REACHABLE}, false},
		{"stale", map[neighKey]uint16{{2, r.Gateway}: unix.NUD_STALE}, false},
		{"failed on another device", map[neighKey]uint16{{3, r.Gateway}: nudFailed}, false},
		{"another address failed", map[neighKey]uint16{{2, netip.MustParseAddr("10.0.0.9")}: nudFailed}, false},
		{"no entry", nil, false},
	} {
		got := false
		for _, x := range assessRisks([]Route{r}, now, time.Minute, nil, tc.neigh, no) {
			if x.Kind == RiskGatewayFailed {
				got = true
			}
		}
		if got != tc.want {
			t.Errorf("%s: gateway-failed %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestCorrelationWindow (W4): a happening exactly at the window's start
// still explains the loss; one a nanosecond earlier does not.
func TestCorrelationWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	start := now.Add(-correlationWindow)
	var h history
	h.add(happening{At: start.Add(-time.Nanosecond), Kind: hapAddrRemoved, Ifindex: 3})
	h.add(happening{At: start, Kind: hapLinkDown, Ifindex: 2})
	got := h.since(start)
	if len(got) != 1 || got[0].Kind != hapLinkDown {
		t.Fatalf("since(start) = %+v, want only the link-down at the start instant", got)
	}
	r := Route{Family: 4, Table: 254, Type: rtnUnicast, Ifindex: 2}
	in := lossInput{Route: r, Now: now, Link: Link{Index: 2, Up: true, Carrier: true}, LinkKnown: true, Recent: got}
	if reason, _ := attribute(in); reason != ReasonLinkDown {
		t.Errorf("reason %s, want link-down", reason)
	}
	// The ring keeps the newest historySize happenings.
	for i := 0; i < historySize+10; i++ {
		h.add(happening{At: now.Add(time.Duration(i)), Kind: hapCarrierLost})
	}
	if n := len(h.since(time.Time{})); n != historySize {
		t.Errorf("ring holds %d, want %d", n, historySize)
	}
	if len(h.since(now.Add(time.Duration(historySize+9)))) != 1 {
		t.Error("the newest happening was dropped")
	}
}

// TestAwaitingReturn: fast re-checks run while a family/table that lost
// its route has none usable, and only within fastRecheckFor of the loss.
func TestAwaitingReturn(t *testing.T) {
	now := time.Unix(1000, 0)
	lost := Route{Family: 6, Table: 254, Type: rtnUnicast, Ifindex: 2, Gateway: netip.MustParseAddr("fe80::1"),
		HasExpiry: true, ExpiresAt: now.Add(-time.Second)}
	ft := famTable{6, 254}
	l := &nsLoop{routes: routeSet{lost.key(): lost}, lastErr: map[famTable]Route{ft: lost}, ignDev: map[[2]int]bool{}, lostAt: now}
	if !l.awaitingReturn(now) {
		t.Error("expired in place, still listed: not awaiting its return")
	}
	if !l.lostGateway(neighKey{2, lost.Gateway}) || l.lostGateway(neighKey{3, lost.Gateway}) {
		t.Error("lostGateway does not match the lost route's gateway on its device only")
	}
	if l.awaitingReturn(now.Add(fastRecheckFor + time.Second)) {
		t.Error("fast re-checks not bounded by fastRecheckFor")
	}
	renewed := lost
	renewed.ExpiresAt = now.Add(time.Minute)
	l.routes[renewed.key()] = renewed
	if l.awaitingReturn(now) {
		t.Error("the route is usable again, still awaiting")
	}
}

// TestNeedsFastRecheck: the fast re-check ticks whenever its tick could
// do something — awaitingReturn could be true, or a restored line waits
// for its sender — and not otherwise (an idle loop does not wake for it).
func TestNeedsFastRecheck(t *testing.T) {
	now := time.Unix(1000, 0)
	lost := Route{Family: 4, Table: 254, Type: rtnUnicast, Ifindex: 2}
	l := &nsLoop{routes: routeSet{}, lastErr: map[famTable]Route{}, unnamed: map[key]unnamedRestore{}, ignDev: map[[2]int]bool{}}
	if l.needsFastRecheck(now) {
		t.Error("nothing lost, nothing waiting: needs the fast re-check")
	}
	l.lastErr[famTable{4, 254}], l.lostAt = lost, now
	for _, at := range []time.Time{now, now.Add(fastRecheckFor)} {
		if l.awaitingReturn(at) && !l.needsFastRecheck(at) {
			t.Errorf("%s after the loss: awaiting the return, yet no fast re-check", at.Sub(now))
		}
	}
	if l.needsFastRecheck(now.Add(fastRecheckFor + time.Second)) {
		t.Error("fast re-check beyond fastRecheckFor")
	}
	clear(l.lastErr)
	l.unnamed[lost.key()] = unnamedRestore{route: lost, at: now}
	if !l.needsFastRecheck(now.Add(time.Hour)) {
		t.Error("a restored line waits for its sender, no fast re-check to flush it")
	}
}

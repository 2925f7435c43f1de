package watch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/routeloss"
)

// fakeKernel is a repairKernel whose answers a test sets; it records what
// was done to it.
type fakeKernel struct {
	links     map[int]Link
	linksErr  error
	links2    map[int]Link // second read (guard 8), nil: as links
	linkReads int
	routes    []Route
	routesErr error
	conf      routeloss.Conf
	confErr   error
	solicit   error
	raBack    bool
	resolve   error
	addErr    error
	verify    error
	owner     Owner
	ownerErr  error

	solicited, resolved bool
	added               []Route
}

func (k *fakeKernel) Links() (map[int]Link, error) {
	k.linkReads++
	if k.linkReads > 1 && k.links2 != nil {
		return k.links2, k.linksErr
	}
	return k.links, k.linksErr
}
func (k *fakeKernel) Routes(time.Time) ([]Route, error) { return k.routes, k.routesErr }
func (k *fakeKernel) DevConf(int, string) (routeloss.Conf, error) {
	return k.conf, k.confErr
}
func (k *fakeKernel) Solicit(Link) error { k.solicited = true; return k.solicit }
func (k *fakeKernel) WaitRoute(context.Context, Route, time.Duration) (bool, error) {
	return k.raBack, nil
}
func (k *fakeKernel) Resolve(context.Context, Route) (string, error) {
	k.resolved = true
	if k.resolve != nil {
		return "", k.resolve
	}
	return "neighbour entry REACHABLE", nil
}
func (k *fakeKernel) AddRoute(r Route) error {
	if k.addErr != nil {
		return k.addErr
	}
	k.added = append(k.added, r)
	return nil
}
func (k *fakeKernel) VerifyLookup(Route) error  { return k.verify }
func (k *fakeKernel) Owner(Link) (Owner, error) { return k.owner, k.ownerErr }

var (
	networkdActs = Owner{Name: MgrNetworkd, Running: true, Manages: true, How: "systemd-networkd runs in the namespace as pid 7"}
	networkdIdle = Owner{Name: MgrNetworkd, Running: true, How: "systemd-networkd runs in the namespace as pid 7; it keeps no state of the device"}
)

var (
	gwRoute4 = Route{Family: 4, Table: 254, Type: rtnUnicast, Protocol: 3, Ifindex: 2, Dev: "s0",
		Gateway: netip.MustParseAddr("10.0.0.1")}
	raRoute6 = Route{Family: 6, Table: 254, Type: rtnUnicast, Protocol: protoRA, Ifindex: 2, Dev: "s0",
		Gateway: netip.MustParseAddr("fe80::1")}
	upLink = Link{Index: 2, Name: "s0", Up: true, Carrier: true}
)

func bindErr(errno syscall.Errno) error {
	return fmt.Errorf("ndp: listen ip6:ipv6-icmp fe80::1%%s0: bind: %w", errno)
}

// TestGuardChain walks the guard chain over a fake kernel: each row is one
// state of the namespace and the outcome the guards must reach, and
// whether a route may be written.
func TestGuardChain(t *testing.T) {
	links := map[int]Link{2: upLink}
	for _, tc := range []struct {
		name   string
		route  Route
		k      fakeKernel
		dryRun bool
		kind   outcomeKind
		result string
		detail string // substring
		writes bool
	}{
		{name: "healthy v4: re-added", route: gwRoute4, k: fakeKernel{links: links},
			kind: outcomeFinal, result: RepairReadded, writes: true},
		{name: "link table unreadable: retried, nothing written", route: gwRoute4, k: fakeKernel{linksErr: syscall.EINTR},
			kind: outcomeTransient, detail: "reading the link table"},
		{name: "link table unreadable for good: refused", route: gwRoute4, k: fakeKernel{linksErr: syscall.EPERM},
			kind: outcomeFinal, result: RepairRefused},
		{name: "device gone: wait", route: gwRoute4, k: fakeKernel{links: map[int]Link{}},
			kind: outcomeWait, detail: "gone"},
		{name: "device down: wait", route: gwRoute4, k: fakeKernel{links: map[int]Link{2: {Index: 2, Name: "s0", Carrier: true}}},
			kind: outcomeWait, detail: "down"},
		{name: "no carrier: wait", route: gwRoute4, k: fakeKernel{links: map[int]Link{2: {Index: 2, Name: "s0", Up: true}}},
			kind: outcomeWait, detail: "carrier"},
		{name: "device renamed: refused", route: gwRoute4, k: fakeKernel{links: map[int]Link{2: {Index: 2, Name: "s1", Up: true, Carrier: true}}},
			kind: outcomeFinal, result: RepairRefused, detail: "another name"},
		{name: "tentative link-local (the seed's case): transient", route: Route{Family: 6, Table: 254, Type: rtnUnicast, Protocol: 3, Ifindex: 2, Dev: "s0", Gateway: netip.MustParseAddr("2001:db8::1")},
			k: fakeKernel{links: links, resolve: bindErr(syscall.EADDRNOTAVAIL)}, kind: outcomeTransient, detail: "tentative"},
		{name: "gateway silent: transient", route: gwRoute4, k: fakeKernel{links: links, resolve: noAnswer("no ARP reply from 10.0.0.1 within 2s")},
			kind: outcomeTransient, detail: "INCOMPLETE"},
		{name: "no v4 source yet: transient", route: gwRoute4, k: fakeKernel{links: links, resolve: errNoSource},
			kind: outcomeTransient, detail: "no IPv4 address"},
		{name: "gateway probe fails for good: failed", route: gwRoute4, k: fakeKernel{links: links, resolve: errors.New("device has no Ethernet address (ARP not used)")},
			kind: outcomeFinal, result: RepairFailed},
		{name: "RA back after the solicitation", route: raRoute6, k: fakeKernel{links: links, raBack: true},
			kind: outcomeFinal, result: RepairRestoredByRA},
		{name: "RA route, kernel accepts RAs, none came: transient, nothing written", route: raRoute6,
			k: fakeKernel{links: links, conf: routeloss.Conf{Forwarding: 0, AcceptRA: 1}}, kind: outcomeTransient, detail: "accepts RAs"},
		{name: "RA route, accept_ra=2 with forwarding: transient", route: raRoute6,
			k: fakeKernel{links: links, conf: routeloss.Conf{Forwarding: 1, AcceptRA: 2}}, kind: outcomeTransient, detail: "accepts RAs"},
		{name: "RA route, forwarding=1 accept_ra=1 (ignored RAs): re-added", route: raRoute6,
			k: fakeKernel{links: links, conf: routeloss.Conf{Forwarding: 1, AcceptRA: 1}}, kind: outcomeFinal, result: RepairReadded, writes: true},
		{name: "RA route, accept_ra=0: re-added", route: raRoute6,
			k: fakeKernel{links: links, conf: routeloss.Conf{Forwarding: 0, AcceptRA: 0}}, kind: outcomeFinal, result: RepairReadded, writes: true},
		{name: "RA route, conf unreadable: refused (never read as accept_ra=0)", route: raRoute6,
			k:    fakeKernel{links: links, conf: routeloss.Conf{Forwarding: -1, AcceptRA: -1}, confErr: syscall.ENOENT},
			kind: outcomeFinal, result: RepairRefused, detail: "cannot read the device's IPv6 configuration"},
		{name: "RA route, conf unreadable, dry run: refused too", route: raRoute6, dryRun: true,
			k:    fakeKernel{links: links, confErr: syscall.EACCES},
			kind: outcomeFinal, result: RepairRefused, detail: "cannot read"},
		{name: "solicitation from a tentative address, no RA: transient", route: raRoute6,
			k:    fakeKernel{links: links, solicit: bindErr(syscall.EADDRNOTAVAIL), conf: routeloss.Conf{Forwarding: 1, AcceptRA: 1}},
			kind: outcomeTransient, detail: "tentative"},
		{name: "route back before the write: not needed", route: gwRoute4, k: fakeKernel{links: links, routes: []Route{gwRoute4}},
			kind: outcomeFinal, result: RepairNotNeeded},
		{name: "an unusable route listed does not count as back", route: gwRoute4,
			k:    fakeKernel{links: links, routes: []Route{{Family: 4, Table: 254, Type: 2}}},
			kind: outcomeFinal, result: RepairReadded, writes: true},
		{name: "a route of the other family does not count", route: gwRoute4,
			k:    fakeKernel{links: links, routes: []Route{{Family: 6, Table: 254, Type: rtnUnicast}}},
			kind: outcomeFinal, result: RepairReadded, writes: true},
		{name: "routes unreadable before the write: retried, nothing written", route: gwRoute4, k: fakeKernel{links: links, routesErr: syscall.ENOBUFS},
			kind: outcomeTransient},
		{name: "device down between decision and write: wait, nothing written", route: gwRoute4,
			k:    fakeKernel{links: links, links2: map[int]Link{2: {Index: 2, Name: "s0", Carrier: true}}},
			kind: outcomeWait, detail: "between the decision and the write"},
		{name: "device replaced between decision and write: refused", route: gwRoute4,
			k:    fakeKernel{links: links, links2: map[int]Link{2: {Index: 2, Name: "other", Up: true, Carrier: true}}},
			kind: outcomeFinal, result: RepairRefused, detail: "between the decision and the write"},
		{name: "dry run writes nothing", route: gwRoute4, dryRun: true, k: fakeKernel{links: links},
			kind: outcomeFinal, result: RepairDryRun},
		{name: "EEXIST: not needed", route: gwRoute4, k: fakeKernel{links: links, addErr: syscall.EEXIST},
			kind: outcomeFinal, result: RepairNotNeeded},
		{name: "gateway not on link yet at the write: transient", route: gwRoute4, k: fakeKernel{links: links, addErr: syscall.ENETUNREACH},
			kind: outcomeTransient},
		{name: "write refused by the kernel: failed", route: gwRoute4, k: fakeKernel{links: links, addErr: syscall.EINVAL},
			kind: outcomeFinal, result: RepairFailed},
		{name: "networkd runs and configures the device: left to it, nothing written, its command named", route: gwRoute4,
			k:    fakeKernel{links: links, owner: networkdActs},
			kind: outcomeFinal, result: RepairLeftToOwner, detail: "owned by systemd-networkd (systemd-networkd runs in the namespace as pid 7): watch adds no route of its own; if the route does not come back run `networkctl reconfigure s0`"},
		{name: "networkd owns an RA route: the solicitation first, then left to it", route: raRoute6,
			k:    fakeKernel{links: links, owner: networkdActs, conf: routeloss.Conf{Forwarding: 0, AcceptRA: 0}},
			kind: outcomeFinal, result: RepairLeftToOwner, detail: "networkctl reconfigure s0"},
		{name: "networkd's RA client answered the solicitation: restored by RA", route: raRoute6,
			k:    fakeKernel{links: links, owner: networkdActs, raBack: true},
			kind: outcomeFinal, result: RepairRestoredByRA},
		{name: "networkd runs but does not configure the device: repaired", route: gwRoute4,
			k:    fakeKernel{links: links, owner: networkdIdle},
			kind: outcomeFinal, result: RepairReadded, writes: true},
		{name: "owner not readable: refused, nothing written", route: gwRoute4,
			k:    fakeKernel{links: links, ownerErr: errors.New("reading /proc: permission denied")},
			kind: outcomeFinal, result: RepairRefused, detail: "network manager"},
		{name: "dry run under networkd: left to it too", route: gwRoute4, dryRun: true,
			k:    fakeKernel{links: links, owner: networkdActs},
			kind: outcomeFinal, result: RepairLeftToOwner},
		{name: "lookup not through the route: verify-failed", route: gwRoute4, k: fakeKernel{links: links, verify: errors.New("leaves elsewhere")},
			kind: outcomeFinal, result: RepairVerifyFailed, writes: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.k
			g := guardChain{route: tc.route, dryRun: tc.dryRun, rsWait: time.Millisecond, logf: func(string, string) {}}
			out := g.run(context.Background(), &k)
			if out.Kind != tc.kind || (tc.kind == outcomeFinal && out.Result != tc.result) || !strings.Contains(out.Detail, tc.detail) {
				t.Fatalf("outcome %+v, want kind %d result %q detail ~%q", out, tc.kind, tc.result, tc.detail)
			}
			if (len(k.added) > 0) != tc.writes {
				t.Fatalf("wrote %v, want writes=%v", k.added, tc.writes)
			}
			if tc.dryRun && (k.solicited || k.resolved) {
				t.Fatal("dry run sent a solicitation or probed the gateway")
			}
		})
	}
}

// TestRepairPolicy pins the loop-side decisions: the back-off and which
// losses of watch's own route count as a fight.
func TestRepairPolicy(t *testing.T) {
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	var total time.Duration
	for i, w := range want {
		if got := retryDelay(i + 1); got != w {
			t.Errorf("retryDelay(%d) = %s, want %s", i+1, got, w)
		}
	}
	for n := 1; n < maxTransientTries; n++ {
		total += retryDelay(n)
	}
	if total < 30*time.Second || total > 2*time.Minute {
		t.Errorf("transient retries span %s: want longer than DAD and an RA interval, and bounded", total)
	}
	for _, r := range Reasons {
		want := r == ReasonDeletedByProcess || r == ReasonDeletedByProgram
		if got := countsAsFight(r); got != want {
			t.Errorf("countsAsFight(%s) = %v, want %v", r, got, want)
		}
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{bindErr(syscall.EADDRNOTAVAIL), true}, {noAnswer("x"), true}, {syscall.ENETDOWN, true},
		{fmt.Errorf("wrapped: %w", syscall.EHOSTUNREACH), true}, {errNoSource, true},
		{syscall.EPERM, false}, {syscall.EINVAL, false}, {errors.New("other"), false}, {nil, false},
	} {
		if _, got := transientCause(tc.err); got != tc.want {
			t.Errorf("transientCause(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestOwnerNames pins who is named for a restored route and an owner: the
// manager in the sending process's chain (networkd's comm is cut to 15
// bytes), the sender otherwise, the protocol when the kernel sent it.
func TestOwnerNames(t *testing.T) {
	for _, tc := range []struct {
		proto   uint8
		process string
		want    string
	}{
		{4, "systemd-network[412]", MgrNetworkd},
		{4, "ip[812] ← ifup[805] ← sh[800]", MgrIfupdown},
		{4, "ip[812] ← sh[805]", "ip"},
		{4, "", "static"},
		{protoRA, "", "ra"},
		{ProtoSynscope, "synscope[1]", "synscope"},
		{16, "NetworkManager[9]", MgrNetworkManager},
	} {
		if got := restorerName(tc.proto, tc.process); got != tc.want {
			t.Errorf("restorerName(%d, %q) = %q, want %q", tc.proto, tc.process, got, tc.want)
		}
	}
	if (Owner{Name: MgrNetworkd, Running: false, Manages: true}).Acts() {
		t.Error("a stopped networkd acts")
	}
}

// TestSentByProcess: an RA route on a device with accept_ra=0 came from a
// network manager's own RA client (its route-restored line waits for the
// sender); with accept_ra read as 1 or 2, or not read, it is the kernel's.
func TestSentByProcess(t *testing.T) {
	for _, tc := range []struct {
		proto    uint8
		acceptRA int
		want     bool
	}{
		{protoRA, 0, true}, {protoRA, 1, false}, {protoRA, 2, false}, {protoRA, -1, false},
		{unix.RTPROT_KERNEL, 0, false}, {unix.RTPROT_STATIC, 1, true}, {ProtoSynscope, -1, true},
	} {
		if got := sentByProcess(tc.proto, devConf{Forwarding: -1, AcceptRA: tc.acceptRA}); got != tc.want {
			t.Errorf("sentByProcess(%d, accept_ra=%d) = %v, want %v", tc.proto, tc.acceptRA, got, tc.want)
		}
	}
}

package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/safetext"
	"github.com/synscope/synscope/internal/testnet"
)

// Interface names a container may choose (IFNAMSIZ-1 bytes at most; no
// '/', ':' or white space): a shell injection, and escape bytes — CSI
// clear screen, DEL, a C1 CSI (U+009B), an OSC title ending in BEL.
const (
	hostileShell  = "e$(id>p)"
	hostileEscape = "\x1b[2J\x7f\u009b\x1b]0;x\x07"
)

// rawControl reports the first byte sequence in s a terminal could act
// on: C0 controls other than newline, DEL, C1 controls, invalid UTF-8 and
// the hidden format characters (safetext's definition).
func rawControl(s string) (string, bool) {
	for i, line := range strings.Split(s, "\n") {
		if !safetext.Safe(line) {
			return "line " + itoa(i+1) + ": " + safetext.Show(line), true
		}
	}
	return "", false
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// syncBuf is a goroutine-safe buffer for the text logger.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLabHostileInterfaceLogs: watched namespaces whose routes leave
// through devices named hostileShell and hostileEscape lose their IPv4
// default route. Both log formats carry the event; neither holds a raw
// control byte, the JSON line gives back the exact name, the text line
// shows it escaped.
func TestLabHostileInterfaceLogs(t *testing.T) {
	for _, dev := range []string{hostileShell, hostileEscape} {
		p := newPair(t, "hl", dev)
		ns := p.srv.Name
		d := startWatch(t, Options{Netns: []string{ns}, Interval: 200 * time.Millisecond})
		var text syncBuf
		lg, err := NewLogger(&text, "text")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, Options{Netns: []string{ns}, Interval: 200 * time.Millisecond, Logger: lg, Ready: func(net.Addr) { close(ready) }})
		}()
		select {
		case <-ready:
		case err := <-done:
			t.Fatal(err)
		case <-time.After(5 * time.Second):
			t.Fatal("text watch not ready")
		}
		rt := defaultRoute(t, p.hs, unix.AF_INET)
		if err := p.hs.RouteDel(&rt); err != nil {
			t.Fatal(err)
		}
		l := d.log.wait(t, 0, time.Second, "route-lost", eventIs(EventRouteLost, ns, "ipv4"))
		if got := field(l.f, "route", "dev"); got != dev {
			t.Errorf("JSON route.dev = %q, want %q", got, dev)
		}
		deadline := time.Now().Add(time.Second)
		for !strings.Contains(text.String(), "event=route-lost") {
			if time.Now().After(deadline) {
				t.Fatalf("text log has no route-lost line:\n%s", safetext.Lines(text.String()))
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if where, bad := rawControl(d.log.dump()); bad {
			t.Errorf("JSON log holds a raw control byte (%s)", where)
		}
		if where, bad := rawControl(text.String()); bad {
			t.Errorf("text log holds a raw control byte (%s)", where)
		}
		for _, line := range strings.Split(strings.TrimSpace(d.log.dump()), "\n") {
			if !json.Valid([]byte(line)) {
				t.Errorf("invalid JSON line: %s", safetext.Show(line))
			}
		}
		if dev == hostileEscape && !strings.Contains(text.String(), `route.dev="\x1b[2J\x7f\u009b\x1b]0;x\a"`) {
			t.Errorf("text line does not show the escaped name:\n%s", text.String())
		}
		if testing.Verbose() {
			t.Logf("JSON:\n%s\ntext:\n%s", d.log.dump(), text.String())
		}
	}
}

// TestHostileNetnsMetrics: --all-netns over namespaces whose names hold a
// quote, a backslash and braces (valid UTF-8: kept as they are), a
// newline and escape bytes, and invalid UTF-8 (shown as visible escapes):
// the exposition holds no raw control byte, parses (expfmt) into exactly
// the expected namespaces — nothing injected — with the label values
// back as watch named them, and watch does not panic on the invalid UTF-8
// (client_golang refuses such a label value).
func TestHostileNetnsMetrics(t *testing.T) {
	rd := newPrivateRunDir(t)
	names := []string{`q"\}{x="1"`, "n\n\x1b[31mFAKE 1\n", "bad\xff\xfe"}
	for i, n := range names {
		rd.add(t, testnet.NewNS(t, "watch-hm"+itoa(i)), n)
	}
	d := startWatch(t, Options{AllNetns: true, Interval: 200 * time.Millisecond, Listen: "127.0.0.1:0", deps: deps{netnsRunDir: rd.dir}})
	want := map[string]bool{"host": true}
	for _, n := range names {
		want[netnsLabel(n)] = true
	}
	if netnsLabel(names[0]) != names[0] {
		t.Fatalf("a printable name was changed: %q", netnsLabel(names[0]))
	}
	for n := range want {
		d.waitSeries(t, n, false, 2*time.Second)
	}
	body := scrape(t, d)
	if where, bad := rawControl(body); bad {
		t.Errorf("/metrics holds a raw control byte (%s)", where)
	}
	if !utf8.ValidString(body) {
		t.Error("/metrics is not valid UTF-8")
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "netns" {
					got[lp.GetValue()] = true
				}
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("netns label values %q, want %q", keys(got), keys(want))
	}
	for n := range want {
		if !got[n] {
			t.Errorf("no series for %q", n)
		}
	}
	if strings.Contains(body, "FAKE 1\n") || strings.Contains(body, "\nFAKE") {
		t.Error("a namespace name started a line of its own in the exposition")
	}
	if where, bad := rawControl(d.log.dump()); bad {
		t.Errorf("log holds a raw control byte (%s)", where)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestLabRepairRereadRace: every guard has said "write", and between the
// decision and the write the world changes, as another program could
// change it (a test hook runs at that point). watch re-reads and refuses:
// a default route that appeared meanwhile means not-needed (the other
// program's route stays, nothing is added); a device set down means
// refused. Then, with nothing changing, the repair of the route through a
// device named hostileShell goes through netlink with the route's exact
// attributes and no shell: the command in the name never runs.
func TestLabRepairRereadRace(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	injected := filepath.Join(cwd, "p")
	if _, err := os.Stat(injected); err == nil {
		t.Fatalf("%s exists before the test", injected)
	}
	p := newPair(t, "rr", hostileShell)
	ns := p.srv.Name
	dev := p.link(t, p.hs, hostileShell)
	idx := dev.Attrs().Index
	other := &netlink.Route{LinkIndex: idx, Gw: net.ParseIP("10.61.0.3"), Priority: 50}
	var step sync.Mutex
	var action func()
	beforeReread := func(r Route) {
		step.Lock()
		a := action
		action = nil
		step.Unlock()
		if a != nil && r.Family == 4 {
			a()
		}
	}
	setAction := func(a func()) {
		step.Lock()
		action = a
		step.Unlock()
	}
	hold := t.TempDir()
	holdFile := filepath.Join(hold, ns+"-ipv4")
	opts := repairOpts(ns, hold)
	opts.deps.beforeReread = beforeReread
	d := startWatch(t, opts)
	orig := defaultRoute(t, p.hs, unix.AF_INET)
	result := func(from int) logLine {
		return d.log.wait(t, from, 5*time.Second, "repair result", func(f map[string]any) bool {
			return f["event"] == EventRepair && f["family"] == "ipv4" && f["action"] == "result"
		})
	}
	noOurs := func() {
		for _, r := range p.ownDump(t) {
			if r.Protocol == ProtoSynscope {
				t.Errorf("watch wrote %s", r)
			}
		}
	}

	// 1. Another program adds a default route between decision and write.
	setAction(func() {
		if err := p.hs.RouteAdd(other); err != nil {
			t.Errorf("adding the other route: %v", err)
		}
	})
	from := d.log.count()
	if err := p.hs.RouteDel(&orig); err != nil {
		t.Fatal(err)
	}
	if r := result(from); r.f["result"] != RepairNotNeeded {
		t.Fatalf("with a route added before the write: result %v, want not-needed: %s", r.f["result"], r.raw)
	}
	noOurs()
	// Back to the original route, under an operator hold so that the
	// other route's removal is not repaired.
	if err := os.WriteFile(holdFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	from = d.log.count()
	if err := p.hs.RouteDel(other); err != nil {
		t.Fatalf("the other program's route is gone: %v", err)
	}
	d.log.wait(t, from, time.Second, "held", func(f map[string]any) bool {
		return f["event"] == EventRepair && f["result"] == RepairHeld
	})
	if err := p.hs.RouteAdd(&orig); err != nil {
		t.Fatal(err)
	}
	d.log.wait(t, from, time.Second, "route back", eventIs(EventRouteRestored, ns, "ipv4"))
	if err := os.Remove(holdFile); err != nil {
		t.Fatal(err)
	}

	// 2. The device goes down between decision and write.
	setAction(func() {
		if err := p.hs.LinkSetDown(dev); err != nil {
			t.Errorf("link down: %v", err)
		}
	})
	from = d.log.count()
	if err := p.hs.RouteDel(&orig); err != nil {
		t.Fatal(err)
	}
	// Not written, and not given up: the repair waits for the device.
	r := d.log.wait(t, from, 5*time.Second, "repair waiting", func(f map[string]any) bool {
		return f["event"] == EventRepair && f["family"] == "ipv4" && (f["action"] == "result" || f["action"] == "waiting")
	})
	if r.f["action"] != "waiting" || !strings.Contains(r.f["detail"].(string), "between the decision and the write") {
		t.Fatalf("with the device set down before the write: %s", r.raw)
	}
	noOurs()

	// 3. Nothing changes: the repair writes, by netlink, through the
	// hostile device, and nothing runs.
	if err := p.hs.LinkSetUp(dev); err != nil {
		t.Fatal(err)
	}
	res := d.log.wait(t, from, 5*time.Second, "readded", func(f map[string]any) bool {
		return f["event"] == EventRepair && f["family"] == "ipv4" && f["result"] == RepairReadded
	})
	if field(res.f, "route", "dev") != hostileShell {
		t.Errorf("repair line: %s", res.raw)
	}
	now := defaultRoute(t, p.hs, unix.AF_INET)
	if now.Protocol != ProtoSynscope || now.LinkIndex != idx || !now.Gw.Equal(orig.Gw) || now.Priority != orig.Priority {
		t.Errorf("repaired route %+v, want %+v with proto 0x53", now, orig)
	}
	if _, err := os.Stat(injected); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists: the name was run as a command", injected)
		_ = os.Remove(injected)
	}
	if testing.Verbose() {
		t.Logf("log:\n%s", d.log.dump())
	}
}

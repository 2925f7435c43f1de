package watch

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/testnet"
)

// TestLabDeleterExited is issue 18 item 2: a default route deleted by a
// program that exits at once (`ip` from a shell, as ifupdown, dhclient
// and cloud-init hooks run it) is named with its parent: the route-lost
// line carries `ip[<its pid>] ← sh[…]`, in at least 19 of 20 runs. The
// pid comes from the shell itself ($!), so a wrong process cannot pass.
func TestLabDeleterExited(t *testing.T) {
	p := newPair(t, "dx", "s0")
	ns := p.srv.Name
	d := startWatch(t, Options{Netns: []string{ns}, Interval: time.Minute})
	if n := len(d.log.all(func(f map[string]any) bool { return f["collector"] == "process-history" })); n != 0 {
		t.Fatalf("the eBPF process history did not load here (tracepoints load on this kernel):\n%s", d.log.dump())
	}
	const runs, need = 20, 19
	named := 0
	var misses []string
	for run := 1; run <= runs; run++ {
		from := d.log.count()
		out, err := testnet.Exec(p.srv, "", "sh", "-c", "ip route del default via "+p.gw4.String()+" & wait $!; echo $!")
		if err != nil {
			t.Fatalf("run %d: %v: %s", run, err, out)
		}
		pid := strings.TrimSpace(string(out))
		l := d.log.wait(t, from, 2*time.Second, "route-lost", eventIs(EventRouteLost, ns, "ipv4"))
		want := regexp.MustCompile(`^ip\[` + regexp.QuoteMeta(pid) + `\] ← sh\[\d+\]`)
		proc := fmt.Sprint(l.f["process"])
		if l.f["reason"] == string(ReasonDeletedByProcess) && want.MatchString(proc) {
			named++
		} else {
			misses = append(misses, fmt.Sprintf("run %d (ip pid %s): reason %v process %q", run, pid, l.f["reason"], proc))
		}
		testnet.MustExec(t, p.srv, "", "ip", "route", "add", "default", "via", p.gw4.String())
		d.log.wait(t, from, 2*time.Second, "route back", func(f map[string]any) bool {
			return (f["event"] == EventRouteRestored || f["event"] == EventRouteAdded) && f["family"] == "ipv4"
		})
	}
	t.Logf("%d/%d deletions by an exited ip named with its parent; e.g. %v", named, runs,
		d.log.all(eventIs(EventRouteLost, ns, "ipv4"))[0].f["process"])
	if named < need {
		t.Fatalf("%d/%d named, want at least %d:\n%s", named, runs, need, strings.Join(misses, "\n"))
	}
}

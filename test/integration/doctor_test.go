package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/report"
)

func TestDoctorHealthy(t *testing.T) {
	needRoot(t)
	t.Parallel()
	env := labUp(t, "healthy", "it-ok")
	rep, r := doctorJSON(t, "--netns", env.Server)
	assertHealthy(t, rep, r)
	if len(rep.Listeners) == 0 {
		t.Fatalf("no listener reported; the lab listens on :%d", env.Port)
	}
	fams := map[string]string{}
	for _, d := range rep.DefaultRoutes {
		fams[d.Family] = d.Via
	}
	if fams["ipv4"] != "10.77.2.1" || fams["ipv6"] != "fd77:2::1" {
		t.Fatalf("default routes %+v, want via 10.77.2.1 and fd77:2::1", rep.DefaultRoutes)
	}
	if rep.Sysctls["net.core.somaxconn"] == "" {
		t.Fatalf("sysctls lack somaxconn: %v", rep.Sysctls)
	}
	for _, c := range rep.Checks {
		if c.Status != report.Ran {
			t.Errorf("check %s did not run as root: %s", c.Name, c.Detail)
		}
	}
}

func TestDoctorMissingDefaultRoute(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		scenario, prefix, noRoutes string
		family                     int
	}{
		{"missing-default-route-v6", "it-mdr6", "Ip6OutNoRoutes", 6},
		{"missing-default-route-v4", "it-mdr4", "IpOutNoRoutes", 4},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Parallel()
			env := labUp(t, tc.scenario, tc.prefix)
			rep, r := doctorJSON(t, "--netns", env.Server)
			if r.code != 1 {
				t.Errorf("exit %d, want 1 (problems found)", r.code)
			}
			if len(rep.Findings) == 0 {
				t.Fatal("no findings")
			}
			top := rep.Findings[0]
			if top.Cause != causes.NoRouteToPeer || top.Severity != report.Critical {
				dumpReport(t, rep)
				t.Fatalf("top finding %s/%s, want no-route-to-peer/critical", top.Cause, top.Severity)
			}
			ev := evidenceText(top)
			client := env.ClientV4.String()
			if tc.family == 6 {
				client = env.ClientV6.String()
			}
			for _, want := range []string{"TcpExtListenDrops +", tc.noRoutes + " +", "SYN-ACK route lookup", client, "route get"} {
				if !strings.Contains(ev, want) {
					dumpReport(t, rep)
					t.Fatalf("evidence lacks %q", want)
				}
			}
			if top.Confidence != report.Confirmed {
				t.Errorf("confidence %s, want confirmed (packets, counters and lookup agree)", top.Confidence)
			}
			wantFix := fmt.Sprintf("ip -n %s", env.Server)
			if tc.family == 6 {
				wantFix += " -6"
			}
			if !strings.HasPrefix(top.Fix, wantFix+" route add default via ") {
				t.Fatalf("fix %q, want %q route add default via ...", top.Fix, wantFix)
			}
			applyFix(t, top.Fix)
			dialEventually(t, env, tc.family)
		})
	}
}

func TestDoctorForeignNamespace(t *testing.T) {
	needRoot(t)
	t.Parallel()
	// A namespace synscope did not create, made the way an operator would.
	name := fmt.Sprintf("it-foreign-%d", os.Getpid())
	if out, err := runCmd("ip", "netns", "add", name); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _, _ = runCmd("ip", "netns", "del", name) })
	rep, r := doctorJSON(t, "--netns", name, "--window", "200ms")
	if r.code != 0 {
		t.Fatalf("empty namespace: exit %d: %s", r.code, r.stderr)
	}
	if rep.Target.Netns != name || rep.Target.NetnsInode == 0 {
		t.Fatalf("target %+v", rep.Target)
	}
}

func TestDoctorBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"doctor", "--netns", "no-such-namespace-xyz"},
		{"doctor", "--peer", "not-an-address"},
		{"doctor", "--peer", "10.0.0.1:99999"},
		{"doctor", "--window", "soon"},
		{"doctor", "--window", "-1s"},
		{"doctor", "--netns", "pid:abc"},
		{"doctor", "--bogus-flag"},
		{"lab", "up", "no-such-scenario", "--prefix", "it-bad"},
	} {
		r := synscope(t, args...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "synscope: ") || strings.Contains(r.stderr, "goroutine") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, r.code, r.stderr)
		}
	}
}

// With no traffic at all, a named peer still gets its SYN-ACK lookup
// replayed: the finding says a SYN from it would be dropped.
func TestDoctorPeerWithoutTraffic(t *testing.T) {
	needRoot(t)
	t.Parallel()
	env := labUp(t, "missing-default-route-v4", "it-peer", "--no-client")
	rep, r := doctorJSON(t, "--netns", env.Server, "--window", "300ms", "--peer", env.ClientV4.String()+":40000")
	if r.code != 1 || len(rep.Findings) == 0 {
		dumpReport(t, rep)
		t.Fatalf("exit %d, findings %d", r.code, len(rep.Findings))
	}
	top := rep.Findings[0]
	if top.Cause != causes.NoRouteToPeer || top.Confidence != report.Possible || top.Severity != report.Warning {
		dumpReport(t, rep)
		t.Fatalf("top %s/%s/%s, want no-route-to-peer/warning/possible", top.Cause, top.Severity, top.Confidence)
	}
	if !strings.Contains(evidenceText(top), "port 40000") {
		t.Fatalf("the lookup should use the peer's port: %s", evidenceText(top))
	}
}

// pid:N targets the namespace of a process: here the lab's listener.
func TestDoctorPidNamespace(t *testing.T) {
	needRoot(t)
	t.Parallel()
	env := labUp(t, "healthy", "it-pid", "--no-client")
	pid := 0
	for _, a := range lab.AgentStatus(env.Prefix) {
		if strings.Contains(a.Name, "listener") && a.PID > 0 {
			pid = a.PID
		}
	}
	if pid == 0 {
		t.Fatalf("no listener agent in %+v", lab.AgentStatus(env.Prefix))
	}
	byPid, _ := doctorJSON(t, "--netns", fmt.Sprintf("pid:%d", pid), "--window", "200ms")
	byName, _ := doctorJSON(t, "--netns", env.Server, "--window", "200ms")
	if byPid.Target.NetnsInode != byName.Target.NetnsInode || len(byPid.Listeners) != 1 {
		t.Fatalf("pid:%d gave %+v with %d listeners; by name %+v", pid, byPid.Target, len(byPid.Listeners), byName.Target)
	}
}

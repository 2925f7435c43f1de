package probe

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/lab"
)

func TestMain(m *testing.M) {
	// lab.Up re-executes the test binary as its listener agent.
	lab.MaybeRunAgent()
	os.Exit(m.Run())
}

// labUp brings a lab scenario up for one test and removes it after.
func labUp(t *testing.T, scenario, tag string) *lab.Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds lab namespaces")
	}
	prefix := fmt.Sprintf("p%d%s", os.Getpid()%100000, tag)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := lab.Up(ctx, scenario, lab.Options{Prefix: prefix, NoClient: true})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Down(prefix); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return env
}

// labProbe probes the lab server (family 4 or 6) from the lab client with
// the options mod sets, and logs the text report.
func labProbe(t *testing.T, env *lab.Env, family int, mod func(*Options)) *Report {
	t.Helper()
	dst, err := env.ServerAddr(family)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Host: dst.String(), Port: env.Port, Count: 2, Interval: 100 * time.Millisecond,
		Timeout: 1500 * time.Millisecond, Netns: env.Client}
	mod(&o)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_ = Text(&b, rep)
	t.Log(b.String())
	return rep
}

// probeServer probes with --server.
func probeServer(t *testing.T, env *lab.Env, family int, server string) *Report {
	t.Helper()
	return labProbe(t, env, family, func(o *Options) { o.Server = server })
}

// The seed case: the server lost its IPv6 default route; its kernel
// consumes each SYN for want of a route back, and the probe says so.
func TestProbeServerNoRouteToPeer(t *testing.T) {
	env := labUp(t, "missing-default-route-v6", "m6")
	rep := probeServer(t, env, 6, env.Server)
	if rep.Server == nil || rep.Server.Status != ServerChecked {
		t.Fatalf("server side not checked: %+v", rep.Server)
	}
	if rep.Verdict != Confirmed || rep.Cause != causes.NoRouteToPeer {
		t.Fatalf("verdict %s [%s], want confirmed [no-route-to-peer]: %s", rep.Verdict, rep.Cause, rep.Summary)
	}
	if !strings.Contains(rep.Summary, "arrived, consumed: no route back to the client for the SYN-ACK") {
		t.Errorf("summary does not say what the server did: %s", rep.Summary)
	}
	if !strings.Contains(rep.Next, "on the server") || !strings.Contains(rep.NextCmd, "--netns "+env.Server) {
		t.Errorf("fix is not the server's: %q / %q", rep.Next, rep.NextCmd)
	}
	for _, at := range rep.Addresses[0].Attempts {
		if at.Server == nil || !at.Server.Seen || at.Server.Cause != causes.NoRouteToPeer {
			t.Errorf("attempt %d: server view %+v", at.Seq, at.Server)
		}
	}
}

// A server firewall drop, seen from the client with the server's drop
// named.
func TestProbeServerFirewallDrop(t *testing.T) {
	env := labUp(t, "firewall-drop-syn", "fw")
	rep := probeServer(t, env, 4, env.Server)
	if rep.Verdict != Confirmed || rep.Cause != causes.FirewallDrop {
		t.Fatalf("verdict %s [%s], want confirmed [firewall-drop]: %s", rep.Verdict, rep.Cause, rep.Summary)
	}
	// The server's rule named: the lab's input drop rule in table inet
	// synscope, its counter risen by this attempt's SYNs, with the
	// command that removes it in the server's namespace.
	for _, at := range rep.Addresses[0].Attempts {
		sv := at.Server
		if sv == nil || len(sv.Firewall) == 0 {
			t.Errorf("attempt %d: no server rule named: %+v", at.Seq, sv)
			continue
		}
		f := sv.Firewall[0]
		if !strings.Contains(f.Where, "synscope") || !strings.Contains(f.Where, "input") || f.Verdict != "drop" ||
			f.Delta < 1 || !strings.Contains(f.Fix, "delete rule") || !strings.Contains(f.Fix, env.Server) {
			t.Errorf("attempt %d: server rule %+v", at.Seq, f)
		}
	}
	var out strings.Builder
	if err := Text(&out, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.NextCmd, "delete rule") || !strings.Contains(rep.Next, "server's firewall drops the SYN") {
		t.Errorf("next step %q / %q, want the server rule's removal", rep.Next, rep.NextCmd)
	}
	if c := strings.Count(out.String(), "server firewall: "); c != 1 {
		t.Errorf("the server's rule is printed %d times, want once:\n%s", c, out.String())
	}
}

// Negative controls: a healthy server is connected, every attempt seen
// established at the server; a --server namespace that is not the
// server's sees nothing, and says "never seen", not a cause; a namespace
// that does not exist is "not checked" with the reason.
func TestProbeServerControls(t *testing.T) {
	env := labUp(t, "healthy", "ok")
	rep := probeServer(t, env, 4, env.Server)
	if rep.Verdict != Connected {
		t.Fatalf("healthy: verdict %s: %s", rep.Verdict, rep.Summary)
	}
	for _, at := range rep.Addresses[0].Attempts {
		if at.Server == nil || !at.Server.Seen || at.Server.Fate != "established" {
			t.Errorf("healthy attempt %d: server view %+v", at.Seq, at.Server)
		}
	}
	rep = probeServer(t, env, 4, env.Router)
	for _, at := range rep.Addresses[0].Attempts {
		if at.Server == nil || !at.Server.Checked || at.Server.Seen {
			t.Errorf("router as server, attempt %d: %+v", at.Seq, at.Server)
		}
	}
	rep = probeServer(t, env, 4, "no-such-ns-synscope")
	if rep.Server == nil || rep.Server.Status != ServerNotChecked || rep.Server.Reason == "" {
		t.Errorf("missing namespace: %+v", rep.Server)
	}
}

// nftIn loads an nftables script into a lab namespace (the test builds
// the fault with nft; the product never runs it).
func nftIn(t *testing.T, ns, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v: %s", ns, err, out)
	}
}

func rawProbe(t *testing.T, env *lab.Env) *Report {
	t.Helper()
	return labProbe(t, env, 4, func(o *Options) { o.Raw = true })
}

// The router forges RSTs in the server's name (reject with tcp reset on
// its forward chain) while the server listens: the resets are placed at
// hop 1, the server at hop 2.
func TestProbeRSTForgedByRouter(t *testing.T) {
	env := labUp(t, "healthy", "rst")
	nftIn(t, env.Router, "table inet synscope_forge {\n chain forge {\n  type filter hook forward priority 0;\n  tcp dport 8080 reject with tcp reset\n }\n}\n")
	rep := rawProbe(t, env)
	a := rep.Addresses[0]
	if rep.Verdict != ForgedReset || a.ResetHop != 1 || a.ServerHop != 2 || rep.ExitCode() != 1 {
		t.Fatalf("verdict %s, reset hop %d, server hop %d (%s): %s", rep.Verdict, a.ResetHop, a.ServerHop, a.ServerHopBy, rep.Summary)
	}
	if !strings.Contains(rep.Summary, "not from the server at hop 2") || !strings.Contains(rep.Summary, "1 hop away") {
		t.Errorf("summary: %s", rep.Summary)
	}
}

// Control: nothing listens on the server; its own resets (hop 2) are
// refused, not forged.
func TestProbeRSTFromServer(t *testing.T) {
	env := labUp(t, "no-listener", "nol")
	rep := rawProbe(t, env)
	a := rep.Addresses[0]
	if rep.Verdict != Refused || a.ForgedResets != 0 || a.ResetHop != 2 {
		t.Fatalf("verdict %s, reset hop %d, server hop %d: %s", rep.Verdict, a.ResetHop, a.ServerHop, rep.Summary)
	}
}

func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %v: %v: %s", ns, args, err, out)
	}
}

func connectProbe(t *testing.T, env *lab.Env) *Report {
	t.Helper()
	return labProbe(t, env, 4, func(o *Options) { o.Count = 1 })
}

// The client's own policy routing prohibits the flow: the rule is named
// by priority and selector, with its removal; a prohibit rule for another
// port (negative control) is not named and the probe connects; a
// blackhole route for the server's prefix is named as a route.
func TestProbeRuleNamed(t *testing.T) {
	env := labUp(t, "healthy", "rule")
	ipIn(t, env.Client, "rule", "add", "priority", "40", "ipproto", "tcp", "dport", "9999", "prohibit")
	rep := connectProbe(t, env)
	if rep.Verdict != Connected || rep.Addresses[0].Local.Blocker != nil {
		t.Fatalf("control: verdict %s, blocker %+v", rep.Verdict, rep.Addresses[0].Local.Blocker)
	}

	ipIn(t, env.Client, "rule", "add", "priority", "50", "ipproto", "tcp", "dport", "8080", "prohibit")
	rep = connectProbe(t, env)
	b := rep.Addresses[0].Local.Blocker
	if rep.Verdict != LocalNoRoute || b == nil || b.Kind != "rule" || b.Priority != 50 || b.Action != "prohibit" ||
		!strings.Contains(b.Rule, "ipproto tcp dport 8080") {
		t.Fatalf("verdict %s, blocker %+v: %s", rep.Verdict, b, rep.Summary)
	}
	if !strings.Contains(rep.Summary, "policy rule 50") || !strings.Contains(rep.NextCmd, "rule del priority 50") {
		t.Errorf("summary %q, next %q", rep.Summary, rep.NextCmd)
	}
	ipIn(t, env.Client, "rule", "del", "priority", "50")

	pfx := netip.PrefixFrom(env.ServerV4, 32).String()
	ipIn(t, env.Client, "route", "add", "blackhole", pfx)
	rep = connectProbe(t, env)
	b = rep.Addresses[0].Local.Blocker
	if rep.Verdict != LocalNoRoute || b == nil || b.Kind != "route" || b.RouteType != "blackhole" ||
		!strings.Contains(rep.NextCmd, "route del blackhole "+pfx+" table 254") {
		t.Fatalf("blackhole: verdict %s, blocker %+v, next %q", rep.Verdict, b, rep.NextCmd)
	}
}

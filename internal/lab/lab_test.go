package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/counters"
	"github.com/synscope/synscope/internal/netns"
)

func TestMain(m *testing.M) {
	// Up re-executes the test binary as listener/client agents.
	MaybeRunAgent()
	if p := os.Getenv(crashUpEnv); p != "" {
		crashingUp(p)
	}
	os.Exit(m.Run())
}

// crashUpEnv makes the test binary a creator process that brings a lab up
// and dies without cleaning up (TestLabCrashRecovery).
const crashUpEnv = "SYNSCOPE_LAB_TEST_CRASH_UP"

func crashingUp(prefix string) {
	if _, err := Up(context.Background(), "missing-default-route-v4", Options{Prefix: prefix}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(3) // "crash": no Down, no cleanup of any kind
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root: they create network namespaces")
	}
}

// testPrefix is unique per test process and purpose, and short enough for
// the 12-character limit.
func testPrefix(tag string) string {
	return fmt.Sprintf("l%d%s", os.Getpid()%100000, tag)
}

// readCounters returns the nstat-style counters (TcpExtListenDrops,
// IpOutNoRoutes, Ip6InDiscards, ...) of namespace ns.
// readCounters reads the namespace's nstat counters with the parser
// doctor uses (internal/counters).
func readCounters(ns string) (map[string]uint64, error) {
	t, err := netns.Open(ns)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	var snap *counters.Snapshot
	err = t.Do(func() error {
		var err error
		snap, err = counters.Read(netns.ProcNet)
		return err
	})
	if err != nil {
		return nil, err
	}
	return snap.Values, nil
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netns.RunDir, name))
	return err == nil
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestPrefixValidation(t *testing.T) {
	for _, p := range []string{"UPPER", "has space", "waytoolongprefix", "a/b", "x_y"} {
		if err := ValidatePrefix(p); err == nil {
			t.Errorf("ValidatePrefix(%q) accepted", p)
		}
		if _, err := Up(context.Background(), "healthy", Options{Prefix: p}); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("Up with prefix %q: want one-line error, got %v", p, err)
		}
	}
	for _, p := range []string{"", "synscope", "a-1", "abcdefghijkl"} {
		if err := ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q): %v", p, err)
		}
	}
	if _, err := Up(context.Background(), "no-such-scenario", Options{}); err == nil || !strings.Contains(err.Error(), "healthy") {
		t.Errorf("unknown scenario: want error listing names, got %v", err)
	}
}

func TestScenarioCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Scenarios() {
		if seen[s.Name] {
			t.Errorf("duplicate scenario %s", s.Name)
		}
		seen[s.Name] = true
		if s.Family != 4 && s.Family != 6 {
			t.Errorf("%s: family %d", s.Name, s.Family)
		}
		if s.Description == "" {
			t.Errorf("%s: no description", s.Name)
		}
	}
	for _, n := range []string{"healthy", "missing-default-route-v4", "missing-default-route-v6"} {
		if !seen[n] {
			t.Errorf("missing scenario %s", n)
		}
	}
}

// TestCauseCoverage: every catalog cause has a scenario, except the ones
// the lab cannot reproduce safely, which are named here with the reason.
func TestCauseCoverage(t *testing.T) {
	exempt := map[causes.ID]string{
		causes.ConntrackFull:    "nf_conntrack_max is global, filling the table would hit the host",
		causes.UnexplainedDrops: "by definition the doctor's fallback when no cause is confirmed; every scenario has a confirmable cause",
		causes.PortScan:         "information on a healthy server, not a fault a scenario keeps up; internal/doctor TestPortScanLab scans the healthy lab for real",
	}
	have := map[causes.ID]bool{}
	for _, s := range Scenarios() {
		if s.Expect != "" {
			if _, ok := causes.Lookup(s.Expect); !ok {
				t.Errorf("%s expects %q, not in the catalog", s.Name, s.Expect)
			}
			have[s.Expect] = true
		}
	}
	for _, c := range causes.All() {
		if !have[c.ID] && exempt[c.ID] == "" {
			t.Errorf("cause %s has no lab scenario", c.ID)
		}
		if have[c.ID] && exempt[c.ID] != "" {
			t.Errorf("cause %s has a scenario now: drop its exemption", c.ID)
		}
	}
}

// TestLabCore brings up healthy and both missing-default-route scenarios in
// parallel and checks each really behaves as described.
func TestLabCore(t *testing.T) {
	needRoot(t)
	cases := []struct {
		scenario string
		tag      string
		badFam   int // family whose handshake must fail; 0 = none
	}{
		{"healthy", "h", 0},
		{"missing-default-route-v6", "m6", 6},
		{"missing-default-route-v4", "m4", 4},
	}
	for _, tc := range cases {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Parallel()
			prefix := testPrefix(tc.tag)
			env, ctx := upForTest(t, tc.scenario, Options{Prefix: prefix})
			if env.Server != prefix+"-srv" || env.Client != prefix+"-cli" || env.Router != prefix+"-rtr" {
				t.Fatalf("namespace names: %+v", env)
			}
			for _, fam := range []int{4, 6} {
				err := env.Dial(ctx, fam, 2*time.Second)
				if fam == tc.badFam && err == nil {
					t.Errorf("v%d handshake completed, want failure", fam)
				}
				if fam != tc.badFam && err != nil {
					t.Errorf("v%d: %v", fam, err)
				}
			}
			if tc.badFam == 0 {
				c, err := readCounters(env.Server)
				if err != nil {
					t.Fatal(err)
				}
				if c["TcpExtListenDrops"] != 0 {
					t.Errorf("healthy lab has ListenDrops=%d", c["TcpExtListenDrops"])
				}
				return
			}
			noRoutes := "IpOutNoRoutes"
			if tc.badFam == 6 {
				noRoutes = "Ip6OutNoRoutes"
			}
			// The background client keeps sending SYNs: drops must rise.
			first, err := readCounters(env.Server)
			if err != nil {
				t.Fatal(err)
			}
			if err := waitFor(10*time.Second, func() error {
				c, err := readCounters(env.Server)
				if err != nil {
					return err
				}
				if c["TcpExtListenDrops"] <= first["TcpExtListenDrops"] || c[noRoutes] == 0 {
					return fmt.Errorf("ListenDrops %d -> %d, %s %d", first["TcpExtListenDrops"], c["TcpExtListenDrops"], noRoutes, c[noRoutes])
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
			if err := Down(prefix); err != nil {
				t.Fatal(err)
			}
			for _, ns := range []string{env.Client, env.Router, env.Server} {
				if nsExists(ns) {
					t.Errorf("%s still exists after Down", ns)
				}
			}
			if _, err := Load(prefix); err == nil {
				t.Error("state file survives Down")
			}
			for _, left := range []string{filepath.Join(StateDir, "."+prefix+".lock"), agentDir(prefix)} {
				if _, err := os.Stat(left); err == nil {
					t.Errorf("%s survives Down", left)
				}
			}
			if err := Down(prefix); err != nil {
				t.Errorf("second Down: %v", err)
			}
		})
	}
}

// TestLabCrashRecovery: a lab whose creator process died is still usable
// (agents are detached) and is removed by Down from its name alone, and a
// creator killed in the middle of Up leaves nothing Down cannot remove.
func TestLabCrashRecovery(t *testing.T) {
	needRoot(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	prefix := testPrefix("c")
	t.Cleanup(func() { _ = Down(prefix) })
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashUpEnv+"="+prefix)
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("creator: %v: %s", err, out)
	}
	env, err := Load(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if env.Scenario != "missing-default-route-v4" || env.Port != Port || env.ServerV6 != ServerV6 || env.Server != prefix+"-srv" {
		t.Fatalf("loaded %+v", env)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := env.Dial(ctx, 6, 2*time.Second); err != nil {
		t.Fatalf("v6 dial in the orphaned lab: %v", err)
	}
	if err := env.Dial(ctx, 4, time.Second); err == nil {
		t.Fatal("v4 dial in the orphaned lab should fail")
	}
	agents := AgentStatus(prefix)
	if len(agents) != 2 {
		t.Fatalf("want listener and client agents, got %+v", agents)
	}
	for _, a := range agents {
		if !alive(a.PID) {
			t.Errorf("agent %s died with its creator", a.Name)
		}
	}
	if err := Down(prefix); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		if alive(a.PID) {
			t.Errorf("agent %s (pid %d) survives Down", a.Name, a.PID)
		}
	}
	for _, ns := range []string{prefix + "-cli", prefix + "-rtr", prefix + "-srv"} {
		if nsExists(ns) {
			t.Errorf("%s still exists", ns)
		}
	}
	if err := Down(prefix); err != nil {
		t.Errorf("Down on nothing: %v", err)
	}

	// Killed half way through Up, at several points.
	for _, delay := range []time.Duration{20 * time.Millisecond, 60 * time.Millisecond, 150 * time.Millisecond} {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashUpEnv+"="+prefix)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err := Down(prefix); err != nil {
			t.Fatalf("Down after a creator killed at %v: %v", delay, err)
		}
		for _, ns := range []string{prefix + "-cli", prefix + "-rtr", prefix + "-srv"} {
			if nsExists(ns) {
				t.Errorf("killed at %v: %s still exists after Down", delay, ns)
			}
		}
	}
	// Agents started by killed creators before they wrote a pidfile
	// notice that their namespace is gone and exit by themselves.
	if err := waitFor(4*time.Second, func() error {
		if pids := agentsOf(prefix); len(pids) > 0 {
			return fmt.Errorf("agents still running after Down: %v", pids)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// agentsOf scans /proc for live agent processes of a prefix.
func agentsOf(prefix string) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err == nil && alive(pid) && isOurAgent(pid, prefix) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestUpReplaces: Up with a prefix in use replaces the old lab.
func TestUpReplaces(t *testing.T) {
	needRoot(t)
	prefix := testPrefix("r")
	_, ctx := upForTest(t, "healthy", Options{Prefix: prefix})
	old := AgentStatus(prefix)
	env, err := Up(ctx, "no-listener", Options{Prefix: prefix, NoClient: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range old {
		if alive(a.PID) {
			t.Errorf("agent %s (pid %d) of the replaced lab still alive", a.Name, a.PID)
		}
	}
	if err := env.Dial(ctx, 4, time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("no-listener dial: want connection refused, got %v", err)
	}
}

// TestLabNAT: with NAT the server sees the router's address as source.
func TestLabNAT(t *testing.T) {
	needRoot(t)
	prefix := testPrefix("n")
	env, ctx := upForTest(t, "healthy", Options{Prefix: prefix, NAT: true, NoClient: true})
	for _, fam := range []int{4, 6} {
		if err := env.Dial(ctx, fam, 2*time.Second); err != nil {
			t.Fatalf("v%d: %v", fam, err)
		}
	}
	ctr, err := NftCounters(env.Router)
	if err != nil {
		t.Fatal(err)
	}
	if ctr["postrouting"] < 2 {
		t.Errorf("masquerade counter %d, want >= 2", ctr["postrouting"])
	}
	// Verify with ss that the server saw the router as peer (TIME_WAIT or
	// closed sockets keep the peer address).
	out, _ := exec.Command("ip", "netns", "exec", env.Server, "ss", "-tan").CombinedOutput()
	if strings.Contains(string(out), "10.77.1.2") {
		t.Errorf("server sees the client address despite NAT:\n%s", out)
	}
}

// faultCheck proves a scenario's fault happened, from the kernel's own
// counters (or nft rule counters) in the server namespace.
type faultCheck struct {
	// counters that must be > 0 in the server namespace
	positive []string
	// counters that must stay 0
	zero []string
	// nft chain (in the server or, with nftNS "cli", client) whose rule
	// counters must be > 0
	nftChain string
	nftCli   bool
	// dialOK: the scenario's family still completes handshakes
	dialOK bool
	// anyDial: the client's handshakes may or may not complete
	anyDial bool
	extra   func(env *Env) error
}

var faultChecks = map[string]faultCheck{
	"policy-rule-no-route":     {positive: []string{"TcpExtListenDrops", "IpOutNoRoutes"}},
	"unreachable-route-v4":     {positive: []string{"TcpExtListenDrops", "IpOutNoRoutes"}},
	"blackhole-route-v4":       {positive: []string{"TcpExtListenDrops", "IpOutNoRoutes"}},
	"prohibit-route-v4":        {positive: []string{"TcpExtListenDrops", "IpOutNoRoutes"}},
	"unreachable-route-v6":     {positive: []string{"TcpExtListenDrops"}},
	"blackhole-route-v6":       {positive: []string{"TcpExtListenDrops"}},
	"prohibit-route-v6":        {positive: []string{"TcpExtListenDrops"}},
	"fwmark-no-route":          {positive: []string{"TcpExtListenDrops", "IpOutNoRoutes"}},
	"accept-queue-overflow":    {positive: []string{"TcpExtListenOverflows", "TcpExtListenDrops"}},
	"backlog-capped":           {dialOK: true, zero: []string{"TcpExtListenDrops"}, extra: checkSomaxconn},
	"default-route-at-risk":    {dialOK: true, zero: []string{"Ip6OutNoRoutes"}, extra: checkRAAtRisk},
	"missing-default-route-v4": {positive: []string{"TcpExtListenDrops", "IpOutNoRoutes"}},
	"missing-default-route-v6": {positive: []string{"TcpExtListenDrops", "Ip6OutNoRoutes"}},
	"syn-queue-overflow":       {positive: []string{"TcpExtTCPReqQFullDrop", "TcpExtListenDrops"}},
	"syn-flood-cookies":        {dialOK: true, positive: []string{"TcpExtTCPReqQFullDoCookies", "TcpExtSyncookiesSent"}},
	"firewall-drop-syn":        {nftChain: "input"},
	"firewall-drop-synack":     {nftChain: "output", positive: []string{"TcpExtTCPTimeouts"}, zero: []string{"TcpExtTCPSynRetrans"}},
	"firewall-reject":          {nftChain: "input"},
	"rp-filter-strict":         {positive: []string{"TcpExtIPReversePathFilter"}},
	"no-listener":              {positive: []string{"TcpOutRsts"}},
	"listener-wrong-address":   {positive: []string{"TcpOutRsts"}},
	"listener-bound-device":    {positive: []string{"TcpOutRsts"}},
	"neighbor-unreachable-v4":  {positive: []string{"TcpExtTCPSynRetrans", "TcpExtListenDrops"}},
	// IPv6 lookups prefer routes whose neighbour is reachable
	// (RT6_LOOKUP_F_REACHABLE): while the gateway's entry is FAILED the
	// default route carries the SYN-ACK and a dial completes; once the
	// entry is gone the route to the dead gateway is tried again. Either
	// outcome is the kernel's; the counter proves the fault.
	"neighbor-unreachable-v6": {anyDial: true, positive: []string{"TcpExtTCPSynRetrans"}},
	"synack-unanswered":       {positive: []string{"TcpExtTCPSynRetrans"}, nftChain: "input", nftCli: true},
	// Only the background client's pinned source port is affected, so
	// Dial (another port) still works.
	"conntrack-invalid":        {dialOK: true, nftChain: "input", extra: checkCtInvalid},
	"synack-egress-drop":       {positive: []string{"TcpExtTCPTimeouts"}, zero: []string{"TcpExtTCPSynRetrans", "TcpExtListenDrops"}},
	"syn-backlog-last-quarter": {anyDial: true, positive: []string{"TcpExtListenDrops"}, zero: []string{"TcpExtTCPReqQFullDrop", "TcpExtListenOverflows", "IpOutNoRoutes"}},
	// Only the colliding 4-tuples fail; a fresh Dial works.
	"paws-reject":      {dialOK: true, positive: []string{"TcpExtPAWSTimewait"}},
	"ipv6-disabled":    {positive: []string{"Ip6InDiscards"}},
	"tcp-minttl":       {positive: []string{"TcpExtTCPMinTTLDrop"}},
	"tcp-md5-mismatch": {positive: []string{"TcpExtTCPMD5NotFound"}},
	// Beside nftables: the client cannot connect; the legacy rule's own
	// counter proves it is the rule.
	"iptables-legacy-drop-syn":  {extra: checkXTCounter("iptables-legacy")},
	"ip6tables-legacy-drop-syn": {extra: checkXTCounter("ip6tables-legacy")},
	"tc-ingress-drop-syn":       {},
	"xdp-drop-syn":              {},
	"socket-filter-drop":        {},
	"cgroup-skb-drop":           {},
	"healthy-under-load":        {dialOK: true, zero: []string{"TcpExtListenDrops"}, extra: checkLoad},
}

// checkRAAtRisk: iproute2 sees what doctor must: an RA-learned IPv6
// default route with a lifetime, on s0 where forwarding=1 and accept_ra=1.
func checkRAAtRisk(env *Env) error {
	out, err := exec.Command("ip", "-n", env.Server, "-6", "route", "show", "default").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "proto ra") || !strings.Contains(string(out), "expires") {
		return fmt.Errorf("want an RA default route with a lifetime: %v %q", err, out)
	}
	for k, want := range map[string]string{"net.ipv6.conf.s0.forwarding": "1", "net.ipv6.conf.s0.accept_ra": "1"} {
		v, err := exec.Command("ip", "netns", "exec", env.Server, "sysctl", "-n", k).CombinedOutput()
		if err != nil || strings.TrimSpace(string(v)) != want {
			return fmt.Errorf("%s = %q (%v), want %s", k, v, err, want)
		}
	}
	return nil
}

// TestEveryFaultScenarioIsChecked: a fault scenario missing from
// faultChecks would silently drop out of TestScenarioFaults.
func TestEveryFaultScenarioIsChecked(t *testing.T) {
	for _, s := range Scenarios() {
		if _, ok := faultChecks[s.Name]; !ok && s.Expect != "" {
			t.Errorf("scenario %s (expect %s) has no fault check", s.Name, s.Expect)
		}
	}
}

// checkXTCounter: the legacy rule counted packets.
func checkXTCounter(tool string) func(*Env) error {
	return func(env *Env) error {
		out, err := exec.Command("ip", "netns", "exec", env.Server, tool, "-w", "-L", "INPUT", "1", "-v", "-x", "-n").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", tool, err, out)
		}
		if f := strings.Fields(string(out)); len(f) == 0 || f[0] == "0" {
			return fmt.Errorf("%s rule 1 of INPUT counted nothing: %q", tool, out)
		}
		return nil
	}
}

func checkSomaxconn(env *Env) error {
	out, err := exec.Command("ip", "netns", "exec", env.Server, "ss", "-Hltn", "sport = :8080").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ss: %v: %s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) < 3 || f[2] != "128" {
		return fmt.Errorf("listener Send-Q (max backlog) want 128: %q", out)
	}
	return nil
}

// checkCtInvalid: conntrack found packets INVALID in the server namespace
// (internal/counters reads the statistics, as doctor does).
func checkCtInvalid(env *Env) error {
	t, err := netns.Open(env.Server)
	if err != nil {
		return err
	}
	defer t.Close()
	var ct counters.Conntrack
	err = t.Do(func() error {
		var err error
		ct, err = counters.ReadConntrack(netns.ProcNet, "/proc/sys")
		return err
	})
	switch {
	case err != nil:
		return err
	case !ct.Available:
		return fmt.Errorf("nf_conntrack is not loaded")
	case ct.Invalid == 0:
		return fmt.Errorf("conntrack invalid=0")
	}
	return nil
}

func checkLoad(env *Env) error {
	c, err := readCounters(env.Server)
	if err != nil {
		return err
	}
	if c["TcpPassiveOpens"] < 300 {
		return fmt.Errorf("only %d passive opens under load", c["TcpPassiveOpens"])
	}
	return nil
}

// check proves the fault from what the counters did since base, a
// reading taken when the scenario was up: the lab's warm-up handshakes
// before the fault (a SYN-ACK retransmitted under load, say) are not the
// scenario's doing.
func (fc faultCheck) check(env *Env, base map[string]uint64) error {
	now, err := readCounters(env.Server)
	if err != nil {
		return err
	}
	c := map[string]uint64{}
	for k, v := range now {
		if v > base[k] {
			c[k] = v - base[k]
		}
	}
	var miss []string
	benign := benignAllowance(c)
	for _, k := range fc.positive {
		if c[k] <= benign[k] {
			miss = append(miss, fmt.Sprintf("%s=%d (want more than %d, what a healthy lab may show)", k, c[k], benign[k]))
		}
	}
	for _, k := range fc.zero {
		if c[k] != 0 {
			miss = append(miss, fmt.Sprintf("%s=%d (want 0)", k, c[k]))
		}
	}
	if fc.nftChain != "" {
		ns := env.Server
		if fc.nftCli {
			ns = env.Client
		}
		ctr, err := NftCounters(ns)
		if err != nil {
			return err
		}
		if ctr[fc.nftChain] == 0 {
			miss = append(miss, "nft "+fc.nftChain+" counter=0")
		}
	}
	if fc.extra != nil {
		if err := fc.extra(env); err != nil {
			miss = append(miss, err.Error())
		}
	}
	if len(miss) > 0 {
		return fmt.Errorf("%s", strings.Join(miss, ", "))
	}
	return nil
}

// TestScenarioFaults brings up every fault scenario (several at a time,
// each with its own prefix) and proves with kernel counters that the fault
// really happens on this kernel.
func TestScenarioFaults(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("-short: skipping the full scenario sweep")
	}
	var list []Scenario
	for _, s := range Scenarios() {
		if _, ok := faultChecks[s.Name]; ok {
			list = append(list, s)
		}
	}
	type result struct {
		err  error
		logs string
	}
	results := make([]chan result, len(list))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, s := range list {
		results[i] = make(chan result, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] <- runFaultScenario(s, fmt.Sprintf("l%d-%d", os.Getpid()%10000, i))
		}()
	}
	for i, s := range list {
		t.Run(s.Name, func(t *testing.T) {
			r := <-results[i]
			if r.err != nil {
				t.Errorf("%v%s", r.err, r.logs)
			}
		})
	}
	wg.Wait()
}

func runFaultScenario(s Scenario, prefix string) (res struct {
	err  error
	logs string
}) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	env, err := Up(ctx, s.Name, Options{Prefix: prefix})
	if err != nil {
		res.err = err
		return res
	}
	defer Down(prefix)
	fc := faultChecks[s.Name]
	base, err := readCounters(env.Server)
	if err != nil {
		res.err = err
		return res
	}
	res.err = waitFor(12*time.Second, func() error { return fc.check(env, base) })
	dialErr := env.Dial(ctx, s.Family, 1500*time.Millisecond)
	switch {
	case fc.anyDial:
	case fc.dialOK && dialErr != nil:
		res.err = fmt.Errorf("%v; v%d dial should work: %v", res.err, s.Family, dialErr)
	case !fc.dialOK && dialErr == nil:
		res.err = fmt.Errorf("%v; v%d dial completed, want failure", res.err, s.Family)
	}
	if res.err != nil {
		logs, _ := filepath.Glob(filepath.Join(agentDir(prefix), "*.log"))
		for _, l := range logs {
			if b, _ := os.ReadFile(l); len(b) > 0 {
				res.logs += "\n" + filepath.Base(l) + ": " + string(b)
			}
		}
	}
	return res
}

// TestAgentsExitWhenLabGone: agents notice their namespace was deleted
// behind the lab's back (ip netns del, a crashed Down) and exit by themselves.
func TestAgentsExitWhenLabGone(t *testing.T) {
	needRoot(t)
	prefix := testPrefix("g")
	upForTest(t, "syn-flood-cookies", Options{Prefix: prefix})
	agents := AgentStatus(prefix)
	if len(agents) != 3 {
		t.Fatalf("want listener, client and syngen, got %+v", agents)
	}
	for _, ns := range []string{prefix + "-cli", prefix + "-rtr", prefix + "-srv"} {
		tg, err := netns.Open(ns)
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.Delete(); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitFor(4*time.Second, func() error {
		for _, a := range agents {
			if alive(a.PID) {
				return fmt.Errorf("agent %s (pid %d) still running", a.Name, a.PID)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if err := Down(prefix); err != nil {
		t.Errorf("Down after the namespaces vanished: %v", err)
	}
}

// benignAllowance is how much of the counters a healthy lab may move under
// load: a client may retransmit its SYN and the server then re-sends its
// SYN-ACK, or a connection torn down mid-exchange draws one RST. Benign and
// rare: a few, growing with the connections made. The healthy control
// allows this much and a fault check must see more, so that no fault check
// passes on what a healthy lab does.
func benignAllowance(c map[string]uint64) map[string]uint64 {
	few := 2 + c["TcpPassiveOpens"]/10
	return map[string]uint64{"TcpExtTCPSynRetrans": few, "TcpExtTCPTimeouts": few, "TcpOutRsts": few}
}

// TestHealthyControl is the negative control for TestScenarioFaults: in a
// healthy lab none of the counters the fault checks rely on moves, so a
// passing fault check means the fault, not the warm-up or the client.
func TestHealthyControl(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct{ scenario, tag string }{{"healthy", "hc4"}, {"healthy-v6", "hc6"}} {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Parallel()
			prefix := testPrefix(tc.tag)
			env, _ := upForTest(t, tc.scenario, Options{Prefix: prefix})
			time.Sleep(3 * time.Second) // ~15 background connections
			c, err := readCounters(env.Server)
			if err != nil {
				t.Fatal(err)
			}
			if c["TcpPassiveOpens"] < 5 {
				t.Errorf("background client made only %d connections", c["TcpPassiveOpens"])
			}
			timing := benignAllowance(c)
			for name, fc := range faultChecks {
				for _, k := range fc.positive {
					if c[k] > timing[k] {
						t.Errorf("%s=%d in a healthy lab: the %s check proves nothing", k, c[k], name)
					}
				}
			}
		})
	}
}

// upForTest brings a scenario up for one test, with a minute's deadline
// for the test's lab operations, and tears it down when the test ends.
func upForTest(t *testing.T, scenario string, opts Options) (*Env, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	env, err := Up(ctx, scenario, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Down(opts.Prefix) })
	return env, ctx
}

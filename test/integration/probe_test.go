package integration

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/probe"
)

// probeRun runs the synscope binary with a controlled environment: no proxy
// variable leaks in from the test's own environment, env adds some.
func probeRun(t *testing.T, env []string, args ...string) result {
	t.Helper()
	var clean []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasSuffix(strings.ToLower(k), "_proxy") {
			clean = append(clean, kv)
		}
	}
	return synscopeEnv(t, append(clean, env...), args...)
}

// probeJSON runs `synscope probe --json` and decodes the report.
func probeJSON(t *testing.T, env []string, args ...string) (*probe.Report, result) {
	t.Helper()
	r := probeRun(t, env, append([]string{"probe", "--json"}, args...)...)
	if r.code == 2 {
		t.Fatalf("probe %v: exit 2: %s", args, r.stderr)
	}
	var rep probe.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("probe output is not JSON: %v\n%s%s", err, r.stdout, r.stderr)
	}
	if rep.Schema != probe.Schema {
		t.Fatalf("schema %q", rep.Schema)
	}
	return &rep, r
}

func dumpProbe(t *testing.T, rep *probe.Report) {
	t.Helper()
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("probe report:\n%s", b)
}

func nftApply(t *testing.T, ns, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", ns, err, out)
	}
}

func nftDelete(t *testing.T, ns, table string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", table).CombinedOutput(); err != nil {
		t.Fatalf("nft delete in %s: %v\n%s", ns, err, out)
	}
}

// TestProbeLab runs the probe from the lab client against a working server,
// then breaks the path in three ways on the same lab: the client's own
// output rule, the router rejecting with ICMP, the router dropping.
func TestProbeLab(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft")
	}
	env := labUp(t, "healthy", "pr-lab", "--no-client")
	target := env.ServerV4.String() + ":8080"
	base := []string{"--netns", env.Client, "--count", "2", "--interval", "50ms", "--timeout", "1s"}

	t.Run("healthy", func(t *testing.T) {
		rep, r := probeJSON(t, nil, append([]string{target, "--path"}, base...)...)
		if rep.Verdict != probe.Connected || r.code != 0 || len(rep.Addresses) != 1 {
			dumpProbe(t, rep)
			t.Fatalf("verdict %s exit %d", rep.Verdict, r.code)
		}
		a := rep.Addresses[0]
		if a.Stats.Connected != 2 || a.Stats.MedianMs <= 0 || !a.Local.RouteOK || a.Local.Source != env.ClientV4.String() || a.Local.Dev != "c0" {
			dumpProbe(t, rep)
			t.Fatal("attempts or local path wrong")
		}
		if a.Local.Neighbor == nil || a.Local.Neighbor.Addr != "10.77.1.1" {
			dumpProbe(t, rep)
			t.Fatal("next hop neighbour missing")
		}
		if len(a.Path) != 2 || a.Path[0].Answer != "time-exceeded" || a.Path[0].Addr != "10.77.1.1" ||
			a.Path[1].Answer != "syn-ack" || !a.Reached || a.ReachTTL != 2 || a.LastHop != 1 {
			dumpProbe(t, rep)
			t.Fatal("path: want hop 1 = router (time exceeded), the server reached at hop 2")
		}
	})

	t.Run("local-firewall", func(t *testing.T) {
		nftApply(t, env.Client, "table inet prt { chain out { type filter hook output priority 0; tcp dport 8080 counter drop; }\n}\n")
		defer nftDelete(t, env.Client, "prt")
		rep, r := probeJSON(t, nil, append([]string{target}, base...)...)
		if rep.Verdict != probe.LocalFirewall || rep.Cause != "firewall-drop" || r.code != 1 {
			dumpProbe(t, rep)
			t.Fatalf("verdict %s cause %s exit %d", rep.Verdict, rep.Cause, r.code)
		}
		fw := rep.Addresses[0].Local.Firewall
		if len(fw) != 1 || !strings.HasPrefix(fw[0].Where, "inet prt out handle") || fw[0].Delta < 2 ||
			!strings.Contains(fw[0].Fix, "nft delete rule inet prt out handle") {
			dumpProbe(t, rep)
			t.Fatal("the dropping rule is not named with its counter and removal")
		}
	})

	t.Run("router-reject", func(t *testing.T) {
		nftApply(t, env.Router, "table inet prt { chain pfwd { type filter hook forward priority 0; tcp dport 8080 counter reject with icmpx admin-prohibited; }\n}\n")
		defer nftDelete(t, env.Router, "prt")
		rep, r := probeJSON(t, nil, append(append([]string{target}, base...), "--count", "1")...)
		a := rep.Addresses[0]
		if rep.Verdict != probe.PathReject || r.code != 1 || len(a.Attempts) != 1 ||
			a.Attempts[0].ICMPFrom != "10.77.1.1" || a.Attempts[0].ICMPType != 3 || a.Attempts[0].ICMPCode != 13 {
			dumpProbe(t, rep)
			t.Fatal("want path-reject naming the router (ICMP 3/13 from 10.77.1.1)")
		}
		if !strings.Contains(rep.Summary, "10.77.1.1") {
			t.Fatalf("summary does not name the router: %s", rep.Summary)
		}
	})

	t.Run("router-drop", func(t *testing.T) {
		nftApply(t, env.Router, "table inet prt { chain pfwd { type filter hook forward priority 0; tcp dport 8080 counter drop; }\n}\n")
		defer nftDelete(t, env.Router, "prt")
		rep, r := probeJSON(t, nil, append(append([]string{target, "--path"}, base...), "--count", "1")...)
		a := rep.Addresses[0]
		// The router's TTL check runs before its forward hook: the SYN is
		// seen to reach hop 1 and dies after it. Whether the router's
		// forwarding or the server dropped it looks the same from here.
		if r.code != 1 || a.Reached || a.LastHop != 1 || a.LastAddr != "10.77.1.1" || a.Stats.Timeouts != 1 {
			dumpProbe(t, rep)
			t.Fatal("want: timed out, last hop 1 = the router, not reached")
		}
		if rep.Verdict != probe.ServerSilent && rep.Verdict != probe.PathDrop {
			dumpProbe(t, rep)
			t.Fatalf("verdict %s", rep.Verdict)
		}
	})
}

// TestProbeNoListener: RST → refused, catalog cause no-listener.
func TestProbeNoListener(t *testing.T) {
	needRoot(t)
	env := labUp(t, "no-listener", "pr-nol", "--no-client")
	rep, r := probeJSON(t, nil, env.ServerV4.String()+":8080", "--netns", env.Client, "--count", "2", "--interval", "50ms", "--timeout", "1s")
	if rep.Verdict != probe.Refused || rep.Cause != "no-listener" || r.code != 1 || rep.Addresses[0].Stats.Refused != 2 {
		dumpProbe(t, rep)
		t.Fatalf("verdict %s cause %s exit %d", rep.Verdict, rep.Cause, r.code)
	}
}

// TestProbeServerDrops: the server's nft input drops the SYNs; with --path
// the SYN is seen to pass the router and ping reaches the server one hop
// further: server-silent.
func TestProbeServerDrops(t *testing.T) {
	needRoot(t)
	env := labUp(t, "firewall-drop-syn", "pr-fw", "--no-client")
	rep, r := probeJSON(t, nil, env.ServerV4.String()+":8080", "--netns", env.Client, "--count", "1", "--timeout", "1s", "--path")
	a := rep.Addresses[0]
	if rep.Verdict != probe.ServerSilent || r.code != 1 || a.Stats.Timeouts != 1 || a.LastHop != 1 ||
		a.LastAddr != "10.77.1.1" || a.Reached || a.PingTTL != 2 {
		dumpProbe(t, rep)
		t.Fatalf("verdict %s exit %d", rep.Verdict, r.code)
	}
	if !strings.Contains(rep.NextCmd, "synscope doctor") {
		t.Fatalf("next command: %q", rep.NextCmd)
	}
}

// TestProbeDualStackDNS is the seed case from the client: the server lost
// its IPv6 default route, the name has A and AAAA, served by a real
// resolver (dnsmasq) the test runs on the lab router's client-side address
// and configures through /etc/netns/<client>/resolv.conf, as `ip netns
// exec` would. The resolver also serves a hostile PTR name for the router
// and a name that does not exist.
func TestProbeDualStackDNS(t *testing.T) {
	needRoot(t)
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("needs dnsmasq (.ci/run installs it)")
	}
	env := labUp(t, "missing-default-route-v6", "pr-dns", "--no-client")

	dir := t.TempDir()
	// PTR for the router: escape sequences and a bell in a label.
	evil := []byte("rtr\x1b[2J\x1b[31mFAKE-OK\x07")
	wire := append(append([]byte{byte(len(evil))}, evil...), append([]byte{3}, "lab"...)...)
	wire = append(wire, 0)
	conf := strings.Join([]string{
		"no-resolv", "no-hosts", "bind-interfaces", "listen-address=10.77.1.1", "port=53",
		"host-record=dual.lab,10.77.2.2,fd77:2::2",
		"host-record=hosts-wins.lab,10.77.2.99",
		"cname=alias.lab,dual.lab",
		"local=/lab/",
		"dns-rr=1.1.77.10.in-addr.arpa,12," + hex.EncodeToString(wire),
	}, "\n") + "\n"
	confPath := filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var dlog bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := exec.CommandContext(ctx, "ip", "netns", "exec", env.Router, dnsmasq, "--no-daemon",
		"--conf-file="+confPath, "--pid-file="+filepath.Join(dir, "pid"), "--log-queries")
	d.Stdout, d.Stderr = &dlog, &dlog
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Process.Kill()
		_ = d.Wait()
		t.Logf("dnsmasq log:\n%s", dlog.String())
	})

	etc := filepath.Join("/etc/netns", env.Client)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.RemoveAll(etc)
		_ = os.Remove("/etc/netns") // only if empty
	})
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver 10.77.1.1\nsearch lab\noptions timeout:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte("127.0.0.1 localhost\n10.77.2.2 hosts-wins.lab\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Wait (bounded) for the resolver to answer.
	var rep *probe.Report
	var r result
	for i := 0; i < 20; i++ {
		rep, r = probeJSON(t, nil, "alias.lab:8080", "--netns", env.Client, "--count", "2", "--interval", "50ms", "--timeout", "1s")
		if rep.DNS != nil && len(rep.DNS.Addresses) > 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if rep.Verdict != probe.FamilyBroken || r.code != 1 || len(rep.Addresses) != 2 {
		dumpProbe(t, rep)
		t.Fatalf("verdict %s exit %d", rep.Verdict, r.code)
	}
	if !strings.HasPrefix(rep.Summary, "IPv6 times out while IPv4 works") {
		t.Fatalf("summary not plain: %q", rep.Summary)
	}
	q := rep.DNS.Queries
	if rep.DNS.ResolvConf != filepath.Join(etc, "resolv.conf") || len(q) != 2 || q[0].Server != "10.77.1.1:53" ||
		q[0].Outcome != "answer" || len(q[0].CNAMEs) != 1 || q[0].RTTms <= 0 {
		dumpProbe(t, rep)
		t.Fatal("DNS: want answers from 10.77.1.1 through the namespace's resolv.conf, with the CNAME")
	}
	for _, a := range rep.Addresses {
		want := map[string]probe.Outcome{"ipv4": probe.OutConnected, "ipv6": probe.OutTimeout}[a.Family]
		for _, at := range a.Attempts {
			if at.Outcome != want {
				dumpProbe(t, rep)
				t.Fatalf("%s: attempt %s, want %s", a.Addr, at.Outcome, want)
			}
		}
	}

	// Text output of the same, with --path: the router's PTR name carries
	// escape sequences; nothing raw may reach the terminal.
	tr := probeRun(t, nil, "probe", "dual.lab:8080", "--netns", env.Client, "--count", "1", "--timeout", "1s", "--path", "--family", "4")
	if tr.code != 0 {
		t.Fatalf("text run: exit %d\n%s%s", tr.code, tr.stdout, tr.stderr)
	}
	if !strings.Contains(tr.stdout, `rtr\x1b[2J\x1b[31mFAKE-OK\x07.lab`) {
		t.Fatalf("hostile PTR name not shown escaped:\n%s", tr.stdout)
	}
	for i, c := range []byte(tr.stdout) {
		if (c < 0x20 && c != '\n') || c == 0x7f {
			t.Fatalf("raw control byte 0x%02x at %d in text output:\n%q", c, i, tr.stdout)
		}
	}
	t.Logf("text:\n%s", tr.stdout)

	// A name that does not exist: NXDOMAIN named, dns-failure.
	rep, r = probeJSON(t, nil, "nothere.lab:8080", "--netns", env.Client)
	if rep.Verdict != probe.DNSFailure || r.code != 1 || len(rep.DNS.Queries) == 0 || rep.DNS.Queries[0].Rcode != "NXDOMAIN" {
		dumpProbe(t, rep)
		t.Fatalf("verdict %s exit %d", rep.Verdict, r.code)
	}

	// The namespace's hosts file overrides DNS (which says 10.77.2.99).
	rep, _ = probeJSON(t, nil, "hosts-wins.lab:8080", "--netns", env.Client, "--count", "1", "--family", "4")
	if !rep.DNS.HostsOverride || len(rep.DNS.Addresses) != 1 || rep.DNS.Addresses[0] != "10.77.2.2" || rep.Verdict != probe.Connected {
		dumpProbe(t, rep)
		t.Fatal("hosts entry should override DNS")
	}
	dnsSaid := false
	for _, q := range rep.DNS.Queries {
		dnsSaid = dnsSaid || (len(q.Answers) > 0 && q.Answers[0] == "10.77.2.99")
	}
	if !dnsSaid {
		dumpProbe(t, rep)
		t.Fatal("the DNS answer beside the hosts entry is not shown")
	}

	// A proxy variable that applies is reported, with its password hidden;
	// NO_PROXY exempts the name.
	rep, _ = probeJSON(t, []string{"HTTPS_PROXY=http://user:s3cret@10.77.1.1:3128"}, "dual.lab:443", "--netns", env.Client, "--count", "1", "--family", "4", "--timeout", "500ms")
	if !rep.Proxy.Applies || rep.Proxy.HTTPS == "" || strings.Contains(rep.Proxy.HTTPS+rep.Proxy.Set[0].Value, "s3cret") || rep.Verdict != probe.Proxy {
		dumpProbe(t, rep)
		t.Fatal("proxy not reported (or password shown)")
	}
	rep, _ = probeJSON(t, []string{"https_proxy=http://10.77.1.1:3128", "no_proxy=.lab"}, "dual.lab:8080", "--netns", env.Client, "--count", "1", "--family", "4")
	if rep.Proxy.Applies || rep.Proxy.NoProxy != ".lab" {
		dumpProbe(t, rep)
		t.Fatal("NO_PROXY should exempt the name")
	}
}

// TestProbeBadInput: one-line errors, exit 2.
func TestProbeBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"probe", "somehost"},
		{"probe", "somehost:0"},
		{"probe", "somehost:65536"},
		{"probe", ":80"},
		{"probe", ""},
		{"probe", "somehost:80", "--count", "-1"},
		{"probe", "somehost", "--port", "70000"},
		{"probe", "somehost:80", "--family", "5"},
		{"probe", "127.0.0.1:80", "--netns", "synscope-no-such-ns"},
	} {
		r := probeRun(t, nil, args...)
		if r.code != 2 || strings.Count(strings.TrimRight(r.stderr, "\n"), "\n") != 0 || r.stderr == "" {
			t.Errorf("%q: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

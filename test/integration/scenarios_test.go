package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/report"
)

// expectation is what a scenario's doctor report must contain beyond the
// top cause the lab scenario declares.
type expectation struct {
	evidence []string // substrings of the top finding's evidence, summary or fix
	fix      bool     // the printed fix is safe to apply and must make a client connect
}

var expectations = map[string]expectation{
	"accept-queue-overflow":     {evidence: []string{"TcpExtListenOverflows +", "accept queue"}},
	"backlog-capped":            {evidence: []string{"net.core.somaxconn = 128"}},
	"blackhole-route-v4":        {evidence: []string{"route blackhole 10.77.1.0/24", "IpOutNoRoutes +"}, fix: true},
	"blackhole-route-v6":        {evidence: []string{"route blackhole fd77:1::/64", "TcpExtListenDrops +"}, fix: true},
	"unreachable-route-v4":      {evidence: []string{"route unreachable 10.77.1.0/24", "IpOutNoRoutes +"}, fix: true},
	"unreachable-route-v6":      {evidence: []string{"route unreachable fd77:1::/64", "TcpExtListenDrops +"}, fix: true},
	"prohibit-route-v4":         {evidence: []string{"route prohibit 10.77.1.0/24", "IpOutNoRoutes +"}, fix: true},
	"prohibit-route-v6":         {evidence: []string{"route prohibit fd77:1::/64", "TcpExtListenDrops +"}, fix: true},
	"policy-rule-no-route":      {evidence: []string{"lookup 100", "IpOutNoRoutes +"}, fix: true},
	"fwmark-no-route":           {evidence: []string{"fwmark 0x1", "SO_MARK 0x1", "IpOutNoRoutes +"}, fix: true},
	"missing-default-route-v4":  {evidence: []string{"IpOutNoRoutes +", "default"}, fix: true},
	"missing-default-route-v6":  {evidence: []string{"Ip6OutNoRoutes +", "default"}, fix: true},
	"conntrack-invalid":         {evidence: []string{"ct state invalid", "handle"}},
	"firewall-drop-syn":         {evidence: []string{"inet synscope input handle", "drop", "counter +"}, fix: true},
	"firewall-drop-synack":      {evidence: []string{"inet synscope output handle", "drop", "counter +"}, fix: true},
	"firewall-reject":           {evidence: []string{"inet synscope input handle", "reject", "counter +"}, fix: true},
	"rp-filter-strict":          {evidence: []string{"TcpExtIPReversePathFilter +", "rp_filter = 1"}},
	"no-listener":               {evidence: []string{"nothing listens on port 8080"}},
	"listener-wrong-address":    {evidence: []string{"bound to 127.0.0.1"}},
	"listener-bound-device":     {evidence: []string{"SO_BINDTODEVICE", "s1"}},
	"neighbor-unreachable-v4":   {evidence: []string{"10.77.2.99", "ARP"}, fix: true},
	"neighbor-unreachable-v6":   {evidence: []string{"fd77:2::99", "neighbour discovery"}, fix: true},
	"synack-unanswered":         {evidence: []string{"SYN-ACK retransmitted", "TcpExtTCPSynRetrans +"}},
	"ipv6-disabled":             {evidence: []string{"disable_ipv6 = 1"}},
	"tcp-minttl":                {evidence: []string{"TcpExtTCPMinTTLDrop +", "TTL 63"}},
	"tcp-md5-mismatch":          {evidence: []string{"TcpExtTCPMD5NotFound +"}},
	"syn-queue-overflow":        {evidence: []string{"TcpExtTCPReqQFullDrop +", "SYN-RECV"}},
	"syn-flood-cookies":         {evidence: []string{"TcpExtSyncookiesSent +"}},
	"syn-backlog-last-quarter":  {evidence: []string{"last quarter", "tcp_max_syn_backlog = 8"}},
	"synack-egress-drop":        {evidence: []string{"TcpExtTCPTimeouts +", "SYN-RECV", "egress pref 1 bpf"}},
	"paws-reject":               {evidence: []string{"TcpExtPAWSTimewait +"}},
	"iptables-legacy-drop-syn":  {evidence: []string{"-A INPUT -p tcp -m tcp --dport 8080 --tcp-flags FIN,SYN,RST,ACK SYN -j DROP", "counter +", "iptables-legacy -t filter -D INPUT 1"}, fix: true},
	"ip6tables-legacy-drop-syn": {evidence: []string{"-A INPUT -p tcp -m tcp --dport 8080 --tcp-flags FIN,SYN,RST,ACK SYN -j DROP", "counter +", "ip6tables-legacy -t filter -D INPUT 1"}, fix: true},
	"tc-ingress-drop-syn":       {evidence: []string{`"lab_syn_drop"`, "tc ingress on s0 pref 1", "TC_ACT_SHOT"}, fix: true},
	"xdp-drop-syn":              {evidence: []string{`"lab_xdp_drop"`, "xdp (driver) on s0", "XDP_DROP"}, fix: true},
	"socket-filter-drop":        {evidence: []string{"socket filter on the listener", "returns 0 (drop)", "listener drops +"}},
	"cgroup-skb-drop":           {evidence: []string{`"lab_cg_deny"`, "cgroup_skb ingress on cgroup /synscope-lab-it-", "returns 0 (deny)"}, fix: true},
	"default-route-at-risk":     {evidence: []string{"proto ra", "accept_ra = 1", "forwarding-accept-ra", "accept_ra=2"}, fix: true},
}

// innocent lists the programs a healthy scenario carries: the report's
// dataplane inventory must list each (present programs are inventory) while
// no finding names them.
var innocent = map[string][]string{
	"healthy-bpf-pass": {`xdp (driver) on s0: program "lab_xdp_pass"`, `tc ingress on s0 pref 1: program "lab_tc_pass"`,
		`cgroup_skb ingress on cgroup /synscope-lab-it-`, `program "lab_cg_allow"`, "XDP_PASS", "TC_ACT_OK", "returns 1 (allow)"},
}

func assertInventory(t *testing.T, rep *report.Report, want []string) {
	t.Helper()
	detail := strings.Join(rep.Dataplane, "\n")
	for _, w := range want {
		if !strings.Contains(detail, w) {
			dumpReport(t, rep)
			t.Fatalf("dataplane inventory lacks %q: %s", w, detail)
		}
	}
	for _, f := range rep.Findings {
		for _, w := range want {
			if strings.HasPrefix(w, "program ") && strings.Contains(findingText(f), w) {
				t.Fatalf("finding %s blames an innocent program: %s", f.Cause, f.Summary)
			}
		}
	}
}

func findingText(f report.Finding) string {
	return f.Summary + "\n" + evidenceText(f) + f.Fix
}

// TestScenarios runs the real doctor against every lab scenario while the
// lab's client tries to connect, and checks the top finding.
func TestScenarios(t *testing.T) {
	needRoot(t)
	for i, sc := range lab.Scenarios() {
		sc := sc
		prefix := fmt.Sprintf("it-s%d", i)
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			skipIfNotApplicable(t, sc.Name)
			env := labUp(t, sc.Name, prefix)
			rep, r := doctorJSON(t, "--netns", env.Server)
			if sc.Expect == "" {
				assertHealthy(t, rep, r)
				assertInventory(t, rep, innocent[sc.Name])
				return
			}
			if r.code != 1 || len(rep.Findings) == 0 {
				dumpReport(t, rep)
				t.Fatalf("exit %d with %d findings, want 1 and findings", r.code, len(rep.Findings))
			}
			top := rep.Findings[0]
			if top.Cause != sc.Expect {
				dumpReport(t, rep)
				t.Fatalf("top finding %s (%s), want %s", top.Cause, top.Summary, sc.Expect)
			}
			x, ok := expectations[sc.Name]
			if !ok {
				t.Fatalf("scenario %s has no expectation in this test: add one", sc.Name)
			}
			text := findingText(top)
			for _, want := range x.evidence {
				if !strings.Contains(text, want) {
					dumpReport(t, rep)
					t.Fatalf("top finding lacks %q", want)
				}
			}
			if len(top.Evidence) == 0 || top.Fix == "" || top.Why == "" {
				t.Fatalf("top finding without evidence, fix or why: %+v", top)
			}
			if x.fix {
				applyFix(t, top.Fix)
				dialEventually(t, env, sc.Family)
			}
		})
	}
}

// TestEveryCauseHasAScenario keeps the catalog and the lab in step: a cause
// nobody can reproduce is a cause nobody has seen detected.
func TestEveryCauseHasAScenario(t *testing.T) {
	covered := map[causes.ID]bool{}
	for _, sc := range lab.Scenarios() {
		covered[sc.Expect] = true
	}
	// Not reproducible inside a namespace on this kernel, or not a
	// doctor-level cause: documented in docs/lab.md.
	exempt := map[causes.ID]string{
		causes.ConntrackFull:    "nf_conntrack_max is global: filling it would affect the host",
		causes.UnexplainedDrops: "the remainder when nothing else explains ListenDrops",
	}
	for _, c := range causes.All() {
		if !covered[c.ID] && exempt[c.ID] == "" {
			t.Errorf("cause %s has no lab scenario", c.ID)
		}
	}
}

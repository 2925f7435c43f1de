package lab

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
)

var updateReadme = flag.Bool("update-readme", false, "rewrite the drop-reason coverage table in docs/lab.md")

// reasonRow is one skb drop reason a SYN (or its SYN-ACK) can meet on its
// way, from the listener path of the SYN-drop reference: the scenario
// that produces it ("" = none) or why there is none.
type reasonRow struct {
	reason   string
	synack   bool
	scenario string
	gap      string
}

var synReasons = []reasonRow{
	{reason: "NETFILTER_DROP", scenario: "firewall-drop-syn"},
	{reason: "TC_INGRESS", scenario: "tc-ingress-drop-syn"},
	{reason: "XDP", scenario: "xdp-drop-syn", gap: "native XDP on veth and real NICs frees no skb (doctor names the program; trace sees nothing); generic XDP frees with this reason"},
	{reason: "SOCKET_FILTER", scenario: "socket-filter-drop"},
	{reason: "IP_RPFILTER", scenario: "rp-filter-strict"},
	{reason: "IPV6DISABLED", scenario: "ipv6-disabled"},
	{reason: "NO_SOCKET", scenario: "no-listener"},
	{reason: "TCP_MINTTL", scenario: "tcp-minttl"},
	{reason: "TCP_MD5NOTFOUND", scenario: "tcp-md5-mismatch"},
	{reason: "TCP_MD5UNEXPECTED", gap: "needs a client signing when the listener has no key"},
	{reason: "TCP_MD5FAILURE", gap: "needs both ends keyed with different keys"},
	{reason: "TCP_AONOTFOUND", gap: "no TCP-AO in the lab kernels' configs"},
	{reason: "TCP_AOUNEXPECTED", gap: "no TCP-AO in the lab kernels' configs"},
	{reason: "TCP_AOKEYNOTFOUND", gap: "no TCP-AO in the lab kernels' configs"},
	{reason: "TCP_AOFAILURE", gap: "no TCP-AO in the lab kernels' configs"},
	{reason: "TCP_CSUM", gap: "needs corrupted segments on the wire; veth offloads checksums"},
	{reason: "TCP_LISTEN_OVERFLOW", scenario: "accept-queue-overflow"},
	{reason: "TCP_RFC7323_TW_PAWS", scenario: "paws-reject"},
	{reason: "TCP_INVALID_SYN", gap: "a SYN hitting an ESTABLISHED socket (stale half-open): no catalog cause, trace reports the reason"},
	{reason: "IP_LOCAL_SOURCE", gap: "spoofed local source: no catalog cause"},
	{reason: "IP_INVALID_SOURCE", gap: "martian source: no catalog cause"},
	{reason: "IP_INADDRERRORS", gap: "destination not local: no catalog cause"},
	{reason: "IP_CSUM", gap: "corrupted IP header: no catalog cause"},
	{reason: "OTHERHOST", gap: "frame for another MAC: no catalog cause"},
	{reason: "CPU_BACKLOG", gap: "per-CPU backlog full: no catalog cause"},
	{reason: "SECURITY_HOOK", gap: "LSM sock_rcv_skb: no LSM in the lab kernels"},
	{reason: "XFRM_POLICY", gap: "inbound IPsec policy: no catalog cause"},
	{reason: "NOT_SPECIFIED", gap: "what drops with no reason (veth native XDP among them) names no cause"},
	{reason: "NETFILTER_DROP", synack: true, scenario: "firewall-drop-synack"},
	{reason: "TC_EGRESS", synack: true, scenario: "synack-egress-drop"},
	{reason: "BPF_CGROUP_EGRESS", synack: true, gap: "no scenario yet (cgroup_skb egress on the listener's cgroup); synack-egress-drop names it from counters"},
	{reason: "QDISC_DROP", synack: true, gap: "needs a full qdisc; synack-egress-drop names it from counters"},
	{reason: "NEIGH_FAILED", synack: true, scenario: "neighbor-unreachable-v4"},
	{reason: "IPV6DISABLED", synack: true, gap: "the SYN is dropped first in the lab (ipv6-disabled)"},
}

// TestDropReasonCoverage checks docs/lab.md's coverage table of the drop
// reasons a SYN or SYN-ACK can meet against the running kernel's BTF
// (enum skb_drop_reason), the catalog (which cause each reason names) and
// the lab (the scenario expects that cause). -update-readme rewrites it.
func TestDropReasonCoverage(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("kernel BTF: %v", err)
	}
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		t.Fatalf("enum skb_drop_reason: %v", err)
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	release := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	_, _ = fmt.Sscanf(release, "%d.%d", &major, &minor)
	older := major < 6 || (major == 6 && minor < 18)
	inKernel := map[string]bool{}
	for _, v := range enum.Values {
		inKernel[strings.TrimPrefix(v.Name, "SKB_DROP_REASON_")] = true
	}
	var b strings.Builder
	b.WriteString("| reason | packet | cause | scenario | note |\n|---|---|---|---|---|\n")
	for _, r := range synReasons {
		if !inKernel[r.reason] {
			// The table documents 6.18 (the host); older kernels in the
			// matrix lack some reasons (TCP_RFC7323_TW_PAWS is 6.16+).
			if older {
				t.Logf("%s is not a drop reason of this kernel (%s)", r.reason, release)
			} else {
				t.Errorf("%s is not a drop reason of this kernel (%s)", r.reason, release)
			}
		}
		cause := causes.ForDropReason(r.reason)
		pkt := "SYN"
		if r.synack {
			cause, pkt = causes.ForSynackDropReason(r.reason), "SYN-ACK"
		}
		if r.scenario != "" {
			sc, err := Lookup(r.scenario)
			if err != nil {
				t.Errorf("%s: %v", r.reason, err)
			} else if sc.Expect != cause {
				t.Errorf("%s names %q in the catalog, but scenario %s expects %q", r.reason, cause, r.scenario, sc.Expect)
			}
		}
		if r.scenario == "" && r.gap == "" {
			t.Errorf("%s: no scenario and no gap stated", r.reason)
		}
		c, s := string(cause), r.scenario
		if c == "" {
			c = "—"
		}
		if s == "" {
			s = "—"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.reason, pkt, c, s, r.gap)
	}
	table := b.String()
	path := filepath.Join("..", "..", "docs", "lab.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- drop-reason-coverage -->\n", "<!-- /drop-reason-coverage -->"
	i, j := strings.Index(string(readme), begin), strings.Index(string(readme), end)
	if i < 0 || j < i {
		t.Fatalf("docs/lab.md lacks the %q ... %q block", begin, end)
	}
	cur := string(readme[i+len(begin) : j])
	if cur == table {
		return
	}
	if *updateReadme {
		out := string(readme[:i+len(begin)]) + table + string(readme[j:])
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("docs/lab.md drop-reason table is stale: go test ./internal/lab -run TestDropReasonCoverage -update-readme")
}

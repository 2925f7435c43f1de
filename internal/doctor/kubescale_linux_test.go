package doctor

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/bench/load/kuberules"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/report"
	"github.com/synscope/synscope/internal/testnet"
)

// overheadBudget is issue 20's target for doctor's time beyond its window
// on a kube-proxy-sized ruleset (5,000 rules).
const overheadBudget = 100 * time.Millisecond

// TestKubeProxyScaleLab: the lab's healthy server, its client connecting
// throughout, carrying a kube-proxy-sized ruleset — 5,000 iptables-nft
// rules as kube-proxy's iptables mode writes them, then 5,000 rules of its
// nftables mode (sets, verdict maps, a chain per service and endpoint).
// Doctor, trace and capture on as users run it, must stay healthy (exit 0,
// no finding: none of kube-proxy's drops and rejects touches the server's
// traffic) with every rule read, and its median time beyond the window
// over five runs must stay within the 100 ms budget.
func TestKubeProxyScaleLab(t *testing.T) {
	for _, tool := range []string{"iptables-nft-restore", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s to load the ruleset: %v", tool, err)
		}
	}
	ctx, env := labUp(t, "healthy", "kube")
	srv, err := netns.Open(env.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	variants := []struct {
		name  string
		rules int
		load  func()
		clear func()
	}{
		{"iptables-nft", kuberules.IPTablesRules(2500),
			func() { testnet.MustExec(t, srv, kuberules.IPTables(2500), "iptables-nft-restore") },
			func() {
				testnet.MustExec(t, srv, "", "nft", "delete", "table", "ip", "nat")
				testnet.MustExec(t, srv, "", "nft", "delete", "table", "ip", "filter")
			}},
		{"nftables", kuberules.NFTablesRules(1250),
			func() { testnet.MustExec(t, srv, kuberules.NFTables(1250), "nft", "-f", "-") },
			func() { testnet.MustExec(t, srv, "", "nft", "delete", "table", "ip", "kube-proxy") }},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			v.load()
			defer v.clear()
			var over []float64
			for i := range 5 {
				rep, err := Run(ctx, Options{Netns: env.Server, Window: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				if rep.ExitCode() != report.ExitHealthy || len(rep.Findings) > 0 {
					t.Fatalf("run %d: exit %d on a healthy server with %d kube-proxy rules: %+v", i, rep.ExitCode(), v.rules, rep.Findings)
				}
				checks := map[string]report.Check{}
				for _, c := range rep.Checks {
					checks[c.Name] = c
				}
				for _, name := range []string{"firewall-start", "firewall", "trace", "capture"} {
					if c := checks[name]; c.Status != report.Ran {
						t.Fatalf("run %d: check %s %s: %s", i, name, c.Status, c.Detail)
					}
				}
				if want := fmt.Sprintf("%d rules", v.rules); !strings.HasPrefix(checks["firewall-start"].Detail, want) {
					t.Fatalf("run %d: firewall read %q, want %s", i, checks["firewall-start"].Detail, want)
				}
				// Nothing committed during the window: the end read must be
				// the cheap one (firewall.Refresh), not all chains again.
				if !strings.Contains(checks["firewall"].Detail, "unchanged since the first read") {
					t.Fatalf("run %d: end firewall read %q is not the refresh", i, checks["firewall"].Detail)
				}
				if !strings.Contains(checks["capture"].Detail, "flows") || strings.HasPrefix(checks["capture"].Detail, "0 handshake") {
					t.Fatalf("run %d: the lab client's handshakes were not seen: %s", i, checks["capture"].Detail)
				}
				over = append(over, rep.OverheadMS)
				t.Logf("run %d: %.1f ms beyond the window; end firewall read %.1f ms (%s)", i, rep.OverheadMS, checks["firewall"].DurationMS, checks["firewall"].Detail)
			}
			slices.Sort(over)
			load, _ := os.ReadFile("/proc/loadavg")
			t.Logf("%s, %d rules: beyond the window %v ms, median %.1f (load average %s)", v.name, v.rules, over, over[2], strings.TrimSpace(string(load)))
			if over[2] > float64(overheadBudget.Milliseconds()) {
				t.Errorf("median %.1f ms beyond the window, budget %v", over[2], overheadBudget)
			}
		})
	}
}

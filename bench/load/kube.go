package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/synscope/synscope/bench/load/kuberules"
)

// This file loads a kube-proxy-shaped iptables-nft ruleset into the
// server's namespace (-kube-services), so that doctor's cost can be
// measured at fleet-host scale.

// loadKubeRules loads n services' rules with iptables-nft-restore in the
// server namespace and returns the rule count.
func loadKubeRules(ctx context.Context, n int) (int, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nsSrv, "iptables-nft-restore")
	cmd.Stdin = strings.NewReader(kuberules.IPTables(n))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("iptables-nft-restore: %w: %s", err, bytes.TrimSpace(out))
	}
	return kuberules.IPTablesRules(n), nil
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// This file loads a kube-proxy-shaped iptables-nft ruleset into the
// server's namespace (-kube-services), so that doctor's cost can be
// measured at fleet-host scale.

// kubeRules renders n services as kube-proxy's iptables mode writes them
// in the nat table: a KUBE-SERVICES rule matching the cluster IP and port
// jumps to the service's chain, which DNATs to its endpoint — two rules
// per service (2,500 services: 5,000 rules).
func kubeRules(n int) string {
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n")
	for i := range n {
		fmt.Fprintf(&b, ":KUBE-SVC-%06d - [0:0]\n", i)
	}
	b.WriteString("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	b.WriteString("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	for i := range n {
		fmt.Fprintf(&b, "-A KUBE-SERVICES -d 10.96.%d.%d/32 -p tcp -m comment --comment \"default/svc-%d:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-%06d\n", i/250, i%250+1, i, i)
		fmt.Fprintf(&b, "-A KUBE-SVC-%06d -p tcp -m comment --comment \"default/svc-%d:http\" -m tcp -j DNAT --to-destination 10.244.%d.%d:8080\n", i, i, i/250, i%250+1)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// loadKubeRules loads n services' rules with iptables-nft-restore in the
// server namespace and returns the rule count.
func loadKubeRules(ctx context.Context, n int) (int, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nsSrv, "iptables-nft-restore")
	cmd.Stdin = strings.NewReader(kubeRules(n))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("iptables-nft-restore: %w: %s", err, bytes.TrimSpace(out))
	}
	return 2*n + 2, nil
}

package kuberules

import (
	"strings"
	"testing"
)

func TestIPTables(t *testing.T) {
	rs := IPTables(2500)
	if n := strings.Count(rs, "\n-A "); n != IPTablesRules(2500) {
		t.Errorf("%d rules, IPTablesRules says %d", n, IPTablesRules(2500))
	}
	if n := strings.Count(rs, "\n-A KUBE-S"); n != 5001 {
		t.Errorf("%d service rules, want 5,000 and the no-endpoint reject", n)
	}
	if strings.Count(rs, "COMMIT\n") != 2 || strings.Count(rs, ":KUBE-SVC-") != 2500 {
		t.Error("tables not closed, or chains missing")
	}
}

func TestNFTables(t *testing.T) {
	rs := NFTables(1250)
	// Per service: the cluster-ips and service-ips elements, the two
	// chains and their four rules.
	if n := strings.Count(rs, "  chain service-0"); n != 1250 {
		t.Errorf("%d service chains", n)
	}
	if n := strings.Count(rs, "  chain endpoint-"); n != 1250 {
		t.Errorf("%d endpoint chains", n)
	}
	if n := strings.Count(rs, "add element ip kube-proxy service-ips"); n != 1250 {
		t.Errorf("%d service-ips elements", n)
	}
	if NFTablesRules(1250) != 5023 {
		t.Errorf("NFTablesRules(1250) = %d", NFTablesRules(1250))
	}
	// Addresses stay distinct past 65,536 services.
	if clusterIP(65536) == clusterIP(0) || endpointIP(70000) == endpointIP(70000-65536) {
		t.Error("addresses wrap")
	}
}

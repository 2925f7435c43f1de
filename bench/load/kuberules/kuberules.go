// Package kuberules renders rulesets shaped like the ones kube-proxy
// writes on a Kubernetes node — its iptables mode (through iptables-nft)
// and its nftables mode — so that benchmarks and tests can load a
// fleet-host-sized firewall into a namespace they made. Only the shape
// matters: chains, jumps, sets and verdict maps as kube-proxy lays them
// out, with service and endpoint addresses that no test traffic uses.
package kuberules

import (
	"fmt"
	"strings"
)

// IPTablesRules is how many rules IPTables(n) loads.
func IPTablesRules(n int) int { return 2*n + 2 + len(iptFilter) }

// iptFilter is kube-proxy's filter table on a node (iptables mode): the
// firewall chain drops connections to 127/8 from elsewhere, and the
// service chains reject what has no endpoint. A healthy server outside
// 127/8 passes all of it.
var iptFilter = []string{
	`-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL`,
	`-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS`,
	`-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally visible service portals" -j KUBE-EXTERNAL-SERVICES`,
	`-A INPUT -j KUBE-FIREWALL`,
	`-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
	`-A OUTPUT -j KUBE-FIREWALL`,
	`-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
	`-A KUBE-SERVICES -d 10.96.255.254/32 -p tcp -m comment --comment "default/no-endpoints:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable`,
}

// IPTables renders n services as kube-proxy's iptables mode writes them,
// as iptables-restore input: in the nat table a KUBE-SERVICES rule
// matching the cluster IP and port jumps to the service's chain, which
// DNATs to its endpoint — two rules per service (2,500 services: 5,000
// rules) — and the filter table above.
func IPTables(n int) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	b.WriteString(":KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-SERVICES - [0:0]\n")
	for _, r := range iptFilter {
		b.WriteString(r + "\n")
	}
	b.WriteString("COMMIT\n")
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n")
	for i := range n {
		fmt.Fprintf(&b, ":KUBE-SVC-%06d - [0:0]\n", i)
	}
	b.WriteString("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	b.WriteString("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	for i := range n {
		fmt.Fprintf(&b, "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"default/svc-%d:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-%06d\n", clusterIP(i), i, i)
		fmt.Fprintf(&b, "-A KUBE-SVC-%06d -p tcp -m comment --comment \"default/svc-%d:http\" -m tcp -j DNAT --to-destination %s:8080\n", i, i, endpointIP(i))
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// clusterIP and endpointIP give service i its addresses (10.96/12 and
// 10.112/12: up to a million services).
func clusterIP(i int) string  { return fmt.Sprintf("10.%d.%d.%d", 96+i>>16, i>>8&255, i&255) }
func endpointIP(i int) string { return fmt.Sprintf("10.%d.%d.%d", 112+i>>16, i>>8&255, i&255) }

// NFTablesRules is how many rules NFTables(n) loads.
func NFTablesRules(n int) int { return 4*n + nftFixedRules }

const nftFixedRules = 23

// NFTables renders n services as kube-proxy's nftables mode writes them
// (pkg/proxy/nftables), as `nft -f` input: one table "ip kube-proxy" with
// the cluster-ips and nodeport-ips sets, the service-ips verdict map
// (address . protocol . port : goto service chain), the no-endpoint and
// firewall maps, the hooked filter and nat chains, and per service a
// service chain (masquerade mark for off-cluster sources, then a numgen
// verdict map to its endpoint chains) and one endpoint chain (masquerade
// mark for hairpin, DNAT): four rules per service (1,250 services: 5,000
// rules). The last service has no endpoints: its traffic is rejected
// through no-endpoint-services, as kube-proxy does.
func NFTables(n int) string {
	var b strings.Builder
	b.WriteString("add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\nflush table ip kube-proxy\n")
	b.WriteString("table ip kube-proxy {\n")
	b.WriteString("  set cluster-ips { type ipv4_addr; comment \"Active ClusterIPs\"; }\n")
	b.WriteString("  set nodeport-ips { type ipv4_addr; comment \"IPs that accept NodePort traffic\"; }\n")
	b.WriteString("  map firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict; }\n")
	b.WriteString("  map no-endpoint-nodeports { type inet_proto . inet_service : verdict; }\n")
	b.WriteString("  map no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }\n")
	b.WriteString("  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }\n")
	b.WriteString("  map service-nodeports { type inet_proto . inet_service : verdict; }\n")
	b.WriteString(`  chain cluster-ips-check {
    ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
    ip daddr { 10.96.0.0/12 } drop comment "Drop traffic to unallocated ClusterIPs"
  }
  chain filter-prerouting { type filter hook prerouting priority -110; policy accept;
    ct state new jump firewall-check
  }
  chain filter-input { type filter hook input priority -110; policy accept;
    ct state new jump nodeport-endpoints-check
    ct state new jump service-endpoints-check
  }
  chain filter-forward { type filter hook forward priority -110; policy accept;
    ct state new jump service-endpoints-check
    ct state new jump cluster-ips-check
  }
  chain filter-output { type filter hook output priority -110; policy accept;
    ct state new jump service-endpoints-check
    ct state new jump firewall-check
  }
  chain filter-output-post-dnat { type filter hook output priority -90; policy accept;
    ct state new jump cluster-ips-check
  }
  chain firewall-check {
    ip daddr . meta l4proto . th dport vmap @firewall-ips
  }
  chain mark-for-masquerade {
    meta mark set meta mark or 0x4000
  }
  chain masquerading {
    meta mark & 0x4000 == 0 return
    meta mark set meta mark xor 0x4000
    masquerade fully-random
  }
  chain nat-output { type nat hook output priority -100; policy accept;
    jump services
  }
  chain nat-postrouting { type nat hook postrouting priority 100; policy accept;
    jump masquerading
  }
  chain nat-prerouting { type nat hook prerouting priority -100; policy accept;
    jump services
  }
  chain nodeport-endpoints-check {
    ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
  }
  chain reject-chain {
    reject
  }
  chain service-endpoints-check {
    ip daddr . meta l4proto . th dport vmap @no-endpoint-services
  }
  chain services {
    ip daddr . meta l4proto . th dport vmap @service-ips
    ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
  }
`)
	for i := range n {
		fmt.Fprintf(&b, "  chain service-%06d-default/svc-%d/tcp/http {\n", i, i)
		fmt.Fprintf(&b, "    ip daddr %s tcp dport 80 ip saddr != 10.112.0.0/12 jump mark-for-masquerade\n", clusterIP(i))
		fmt.Fprintf(&b, "    numgen random mod 1 vmap { 0 : goto endpoint-%06d-default/svc-%d/tcp/http__%s/8080 }\n  }\n", i, i, endpointIP(i))
		fmt.Fprintf(&b, "  chain endpoint-%06d-default/svc-%d/tcp/http__%s/8080 {\n", i, i, endpointIP(i))
		fmt.Fprintf(&b, "    ip saddr %s jump mark-for-masquerade\n", endpointIP(i))
		fmt.Fprintf(&b, "    meta l4proto tcp dnat to %s:8080\n  }\n", endpointIP(i))
	}
	b.WriteString("}\n")
	for i := range n {
		fmt.Fprintf(&b, "add element ip kube-proxy cluster-ips { %s }\n", clusterIP(i))
		fmt.Fprintf(&b, "add element ip kube-proxy service-ips { %s . tcp . 80 : goto service-%06d-default/svc-%d/tcp/http }\n", clusterIP(i), i, i)
	}
	fmt.Fprintf(&b, "add element ip kube-proxy no-endpoint-services { %s . tcp . 80 : goto reject-chain }\n", "10.96.255.254")
	return b.String()
}

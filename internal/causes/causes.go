// Package causes is synscope's single catalog of the ways a TCP handshake
// dies. Every mode (doctor, trace, pcap, watch) names causes by these IDs, so
// the IDs are stable API: add new ones, never rename.
package causes

import "sort"

// ID is a stable kebab-case cause identifier.
type ID string

// The catalog IDs. Keep in sync with the table in catalog.
const (
	NoRouteToPeer       ID = "no-route-to-peer"
	AcceptQueueOverflow ID = "accept-queue-overflow"
	SynQueueOverflow    ID = "syn-queue-overflow"
	SynFloodCookies     ID = "syn-flood-cookies"
	FirewallDrop        ID = "firewall-drop"
	RPFilterDrop        ID = "rp-filter-drop"
	NoListener          ID = "no-listener"
	NeighborUnreachable ID = "neighbor-unreachable"
	ConntrackFull       ID = "conntrack-full"
	ConntrackInvalid    ID = "conntrack-invalid"
	IPv6Disabled        ID = "ipv6-disabled"
	TCPReject           ID = "tcp-reject"
	SynackUnanswered    ID = "synack-unanswered"
	BacklogCapped       ID = "backlog-capped"
	SynackEgressDrop    ID = "synack-egress-drop"
	PAWSReject          ID = "paws-reject"
	UnexplainedDrops    ID = "unexplained-listen-drops"
)

// Cause describes one way a handshake dies.
type Cause struct {
	ID    ID     `json:"id"`
	Title string `json:"title"`
	// Mechanism: what the kernel does, in one or two sentences.
	Mechanism string `json:"mechanism"`
	// Counters that move (nstat names), most specific first.
	Counters []string `json:"counters"`
	// Confirm: how a human confirms it by hand.
	Confirm string `json:"confirm"`
	// Fix: what to do about it, in general terms; findings carry the
	// concrete command.
	Fix string `json:"fix"`
	// Reference: section of the SYN-drop reference (shared/reference).
	Reference string `json:"reference"`
}

var catalog = []Cause{
	{
		ID:        NoRouteToPeer,
		Title:     "No route back to the client for the SYN-ACK",
		Mechanism: "tcp_conn_request asks route_req (inet_csk_route_req / inet6_csk_route_req) for a route from the listener to the client; when the lookup fails (missing default route, unreachable/blackhole/prohibit route, a policy rule or fwmark steering into a table without a route) the SYN is dropped and consumed, so drop-reason tracers never see it.",
		Counters:  []string{"TcpExtListenDrops", "IpOutNoRoutes", "Ip6OutNoRoutes"},
		Confirm:   "ip route get <client> from <local> mark <M> uid <U> ipproto tcp sport <lport> dport <rport> inside the server's namespace returns an error; ListenDrops and OutNoRoutes rise together.",
		Fix:       "Restore the missing route (usually the default route), or fix the policy rule / fwmark so the reply table can reach the client.",
		Reference: "1, 2.B1",
	},
	{
		ID:        AcceptQueueOverflow,
		Title:     "Accept queue full: the application is not calling accept() fast enough",
		Mechanism: "When a listener's accept queue holds more than its backlog, new SYNs (and final ACKs) are dropped; ListenOverflows and ListenDrops rise and the listener's sk_drops counts them.",
		Counters:  []string{"TcpExtListenOverflows", "TcpExtListenDrops"},
		Confirm:   "ss -lnt shows Recv-Q >= Send-Q+1 on the listener; ss -tlm shows its drop counter d<N> rising.",
		Fix:       "Make the application accept faster (more workers, fix a stall) and raise its listen() backlog together with net.core.somaxconn.",
		Reference: "2.A1, 2.A2",
	},
	{
		ID:        SynQueueOverflow,
		Title:     "SYN queue full with syncookies off: SYNs dropped",
		Mechanism: "With net.ipv4.tcp_syncookies=0, a listener whose request queue exceeds its backlog drops new SYNs (TCPReqQFullDrop); the 'last quarter' rule also drops SYNs from unproven peers when tcp_max_syn_backlog is nearly used up.",
		Counters:  []string{"TcpExtTCPReqQFullDrop", "TcpExtListenDrops"},
		Confirm:   "Many SYN-RECV sockets on the listener (ss -tn state syn-recv), TCPReqQFullDrop rising, 'Possible SYN flooding' in the kernel log.",
		Fix:       "Enable syncookies (sysctl -w net.ipv4.tcp_syncookies=1), raise the listen backlog and net.core.somaxconn, and find the source of the SYN burst.",
		Reference: "2.A3, 2.A4",
	},
	{
		ID:        SynFloodCookies,
		Title:     "SYN queue full: the kernel is answering with syncookies",
		Mechanism: "With syncookies on, a full request queue makes the kernel answer with cookies instead of dropping; connections still complete but lose TCP options negotiated in the SYN (window scaling, SACK without timestamps). Either a SYN flood or a queue too small for the load.",
		Counters:  []string{"TcpExtTCPReqQFullDoCookies", "TcpExtSyncookiesSent", "TcpExtSyncookiesFailed"},
		Confirm:   "SyncookiesSent rising; 'Possible SYN flooding ... Sending cookies' in the kernel log; many SYN-RECV sockets.",
		Fix:       "If the load is legitimate raise the listen backlog and net.core.somaxconn; if it is a flood, filter it upstream.",
		Reference: "2.A3",
	},
	{
		ID:        FirewallDrop,
		Title:     "A firewall rule drops or rejects the SYN or the SYN-ACK",
		Mechanism: "A netfilter (nftables or iptables-nft) rule in input/prerouting drops the SYN before TCP sees it, or one in output/postrouting drops the SYN-ACK; the latter leaves the request in place and TCPTimeouts rises while TCPSynRetrans stays flat.",
		Counters:  []string{"TcpExtTCPTimeouts", "IpOutDiscards"},
		Confirm:   "nft -a list ruleset shows a drop/reject rule matching the port whose counter rises while clients retry.",
		Fix:       "Remove or narrow the rule (nft delete rule <family> <table> <chain> handle <N>), or add an accept rule before it.",
		Reference: "2.C1, 2.E",
	},
	{
		ID:        RPFilterDrop,
		Title:     "Reverse-path filter drops the SYN",
		Mechanism: "With strict rp_filter (1), a packet whose source would be routed back out of another interface is dropped in ip_rcv_finish_core (IP_RPFILTER). The effective value is max(all, interface).",
		Counters:  []string{"TcpExtIPReversePathFilter"},
		Confirm:   "sysctl net.ipv4.conf.{all,<dev>}.rp_filter is 1 and ip route get <client> leaves through another interface than the SYN arrived on.",
		Fix:       "Use loose mode (sysctl -w net.ipv4.conf.<dev>.rp_filter=2 and .all.rp_filter=2) or make the routing symmetric.",
		Reference: "2.E",
	},
	{
		ID:        NoListener,
		Title:     "Nothing listens on that address and port: the SYN is answered with RST",
		Mechanism: "No socket matches the SYN's destination (no listener, a listener bound to another address, SO_BINDTODEVICE on another device, a reuseport/sk_lookup program returning drop), so TCP replies with RST and the client sees 'connection refused'.",
		Counters:  []string{"TcpOutRsts", "TcpAttemptFails"},
		Confirm:   "ss -lnt shows no listener covering the address, port and device; the capture shows RST answering the SYN.",
		Fix:       "Start the service, or bind it to the address/device the clients use (0.0.0.0 / ::, or the right interface).",
		Reference: "2.G",
	},
	{
		ID:        NeighborUnreachable,
		Title:     "The SYN-ACK's next hop does not answer ARP / neighbour discovery",
		Mechanism: "The route back to the client points at a gateway (or an on-link client) whose neighbour entry never resolves; the SYN-ACK waits in the neighbour queue and is dropped (NEIGH_FAILED), retransmits count as sent.",
		Counters:  []string{"TcpExtTCPSynRetrans", "TcpExtListenDrops"},
		Confirm:   "ip neigh shows the next hop FAILED or INCOMPLETE; ip route get <client> names that next hop.",
		Fix:       "Fix the gateway address in the route, or the link to it.",
		Reference: "2.C5",
	},
	{
		ID:        ConntrackFull,
		Title:     "Connection tracking table full: new flows dropped",
		Mechanism: "When nf_conntrack_count reaches nf_conntrack_max, conntrack cannot create an entry for the SYN and netfilter drops it ('nf_conntrack: table full, dropping packet').",
		Counters:  []string{"conntrack drop", "conntrack early_drop"},
		Confirm:   "/proc/sys/net/netfilter/nf_conntrack_count close to nf_conntrack_max; drop column rising in /proc/net/stat/nf_conntrack.",
		Fix:       "Raise net.netfilter.nf_conntrack_max (and the hash size), shorten timeouts, or exempt the service with a notrack rule.",
		Reference: "2.E",
	},
	{
		ID:        ConntrackInvalid,
		Title:     "Conntrack marks the packets INVALID and a rule drops them",
		Mechanism: "Conntrack classifies packets it cannot fit into a known flow (out-of-window, unexpected flags) as INVALID; a 'ct state invalid drop' rule then drops them.",
		Counters:  []string{"conntrack invalid"},
		Confirm:   "The invalid column of /proc/net/stat/nf_conntrack rises; a ct state invalid drop rule's counter rises.",
		Fix:       "Find why conntrack loses track (asymmetric routing, offload); loosen nf_conntrack_tcp_loose or scope the rule.",
		Reference: "2.E",
	},
	{
		ID:        IPv6Disabled,
		Title:     "IPv6 is disabled on the interface",
		Mechanism: "With disable_ipv6=1 on the receiving interface, ip6_rcv_core drops every IPv6 packet (IPV6DISABLED) and the interface has no IPv6 address to answer from.",
		Counters:  []string{"Ip6InDiscards"},
		Confirm:   "sysctl net.ipv6.conf.<dev>.disable_ipv6 is 1.",
		Fix:       "sysctl -w net.ipv6.conf.<dev>.disable_ipv6=0 (and re-add the addresses and routes the reset removed).",
		Reference: "2.E, 2.C6",
	},
	{
		ID:        TCPReject,
		Title:     "TCP drops the SYN before the listener (MINTTL, MD5/AO, checksum, socket filter)",
		Mechanism: "tcp_v4_rcv / tcp_v6_rcv reject the SYN when its TTL is below the listener's IP_MINTTL, when TCP-MD5 / TCP-AO signatures are missing or wrong, when the checksum is bad, or when a socket filter drops it; the listener's drop counter rises.",
		Counters:  []string{"TcpExtTCPMinTTLDrop", "TcpExtTCPMD5NotFound", "TcpExtTCPMD5Unexpected", "TcpExtTCPMD5Failure", "TcpExtTCPAORequired", "TcpExtTCPAOBad", "TcpInCsumErrors"},
		Confirm:   "The named counter rises with each client attempt; ss -tlm shows the listener's d<N> rising.",
		Fix:       "Make both ends agree: lower IP_MINTTL, configure the same MD5/AO key on the client, or fix the checksum offload.",
		Reference: "2.F",
	},
	{
		ID:        SynackUnanswered,
		Title:     "SYN-ACKs leave but the client's final ACK never arrives",
		Mechanism: "The server answers and retransmits the SYN-ACK (tcp_synack_retries) but the ACK never comes back: the SYN-ACK or the ACK is lost on the path (a firewall or route problem on the way back, asymmetric NAT).",
		Counters:  []string{"TcpExtTCPSynRetrans", "TcpExtTCPTimeouts", "TcpRetransSegs"},
		Confirm:   "ss -tn state syn-recv shows request sockets with retransmits; a capture on the client shows no SYN-ACK arriving.",
		Fix:       "Follow the SYN-ACK on the path: capture on the client side (synscope pcap --client --server) and check firewalls and NAT between.",
		Reference: "2.D1",
	},
	{
		ID:        BacklogCapped,
		Title:     "listen() backlog silently capped by net.core.somaxconn",
		Mechanism: "The kernel uses min(backlog, net.core.somaxconn) as the queue size; an application asking for a large backlog gets a smaller one without any error.",
		Counters:  []string{"TcpExtListenOverflows"},
		Confirm:   "ss -lnt Send-Q (the effective backlog) is below what the application requested and equals somaxconn.",
		Fix:       "sysctl -w net.core.somaxconn=<backlog> (per network namespace) and restart the listener.",
		Reference: "1",
	},
	{
		ID:        SynackEgressDrop,
		Title:     "The SYN-ACK is dropped on the way out of this host",
		Mechanism: "tcp_conn_request ignores send_synack's result: a SYN-ACK dropped by tc, a qdisc or a cgroup BPF program leaves the request in place, TCPTimeouts rises and TCPSynRetrans stays flat.",
		Counters:  []string{"TcpExtTCPTimeouts"},
		Confirm:   "TCPTimeouts rises while TCPSynRetrans does not; skb:kfree_skb shows TC_EGRESS, QDISC_DROP or BPF_CGROUP_EGRESS.",
		Fix:       "Inspect tc filters, qdiscs and cgroup egress programs on the path out.",
		Reference: "2.C",
	},
	{
		ID:        PAWSReject,
		Title:     "SYN collides with a TIME_WAIT socket and fails PAWS",
		Mechanism: "A SYN on a 4-tuple still in TIME_WAIT with an older timestamp is answered with an ACK instead of a SYN-ACK; the client resets and retries. Typical behind NAT with per-host timestamp clocks.",
		Counters:  []string{"TcpExtPAWSTimewait"},
		Confirm:   "PAWSTimewait rising; captures show ACK answered instead of SYN-ACK.",
		Fix:       "Avoid NAT port reuse across hosts with different timestamp clocks, or let the server not close first.",
		Reference: "2.H1",
	},
	{
		ID:        UnexplainedDrops,
		Title:     "SYNs to a listener dropped with no cause confirmed",
		Mechanism: "ListenDrops rose without ListenOverflows, TCPReqQFullDrop or OutNoRoutes: the remaining candidates are the last-quarter SYN backlog rule, IPv6 unreachable/blackhole/prohibit routes, an LSM denial, broadcast destinations, an ICMP abort or an allocation failure.",
		Counters:  []string{"TcpExtListenDrops"},
		Confirm:   "Replay the SYN-ACK route lookup for each client; check tcp_max_syn_backlog and security modules; run synscope trace.",
		Fix:       "Run synscope trace during the failures to see each SYN's fate.",
		Reference: "3",
	},
}

// All returns the catalog in a stable order (by ID).
func All() []Cause {
	out := make([]Cause, len(catalog))
	copy(out, catalog)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Lookup returns the cause with the given ID.
func Lookup(id ID) (Cause, bool) {
	for _, c := range catalog {
		if c.ID == id {
			return c, true
		}
	}
	return Cause{}, false
}

// MustLookup is Lookup for IDs known at compile time; an unknown ID is a
// programming error caught by the package tests.
func MustLookup(id ID) Cause {
	c, ok := Lookup(id)
	if !ok {
		panic("causes: unknown cause " + string(id))
	}
	return c
}

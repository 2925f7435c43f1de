// Package causes is synscope's single catalog of the ways a TCP handshake
// dies. Every mode (doctor, trace, pcap, watch) names causes by these IDs, so
// the IDs are stable API: add new ones, never rename.
package causes

import (
	"sort"
	"strconv"
	"strings"
	"syscall"
)

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
	DefaultRouteAtRisk  ID = "default-route-at-risk"
	BPFDrop             ID = "bpf-drop"
	PortScan            ID = "port-scan"
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
	// DropCounters are the counters that count the SYNs this cause drops,
	// each with its semantics, so that an interval's counter deltas are
	// split into causes in one place (Attribute, AttributeDrops).
	DropCounters []DropCounter `json:"drop_counters,omitempty"`
	// ListenDrop: the kernel drops this cause's SYNs through
	// tcp_listendrop, so each of them is also a TcpExtListenDrops
	// increment: the cause's DropCounters are sub-counts of ListenDrops
	// and never get more than ListenDrops holds. Causes without it (TCP's
	// own checks in tcp_v4_rcv, PAWS, rp_filter) drop before the listener
	// and never move ListenDrops.
	ListenDrop bool `json:"listen_drop,omitempty"`
	// Tracepoints are the kernel tracepoints that fire when this cause
	// drops a SYN, with what each means (trace attaches them and shows
	// the text).
	Tracepoints []Tracepoint `json:"tracepoints,omitempty"`
	// DropReasons are the skb drop reasons (enum skb_drop_reason without
	// the SKB_DROP_REASON_ prefix, as the running kernel's BTF names them)
	// that name this cause when the SYN is freed with them. A trailing '*'
	// matches a prefix; a lone "*" catches every reason no other entry
	// names.
	DropReasons []string `json:"drop_reasons,omitempty"`
	// SynackDropReasons: the same for the SYN-ACK.
	SynackDropReasons []string `json:"synack_drop_reasons,omitempty"`
	// DropSites are the kernel functions that free this cause's SYNs with
	// kfree_skb, for kernels whose kfree_skb has no drop reason (before
	// 5.17): there the free's location, resolved through /proc/kallsyms,
	// is what names the drop (ForDropSite).
	DropSites []DropSite `json:"drop_sites,omitempty"`
	// ICMP lists the ICMP errors quoting the SYN that name this cause.
	ICMP []ICMP `json:"icmp,omitempty"`
	// RouteTypes lists the route types whose lookup fails, with the error
	// the kernel's lookup returns for each.
	RouteTypes []RouteType `json:"route_types,omitempty"`
}

// DropCounter is one nstat counter that counts a cause's drops.
type DropCounter struct {
	Name string `json:"name"`
	// Shared: the counter also counts packets that are not handshake
	// packets of a listener (OutNoRoutes counts every unroutable packet,
	// TcpInCsumErrors every segment with a bad checksum). A shared
	// counter of a ListenDrop cause takes only what the exact counters
	// leave of ListenDrops; a shared counter of another cause is taken
	// whole, as an upper bound.
	Shared bool `json:"shared,omitempty"`
	// What a rise means and what to do about it, for a finding.
	What string `json:"what,omitempty"`
	Fix  string `json:"fix,omitempty"`
}

// DropSite is a kernel function that frees a SYN with kfree_skb (its
// location names the function on every kernel; before 5.17 it is all
// kfree_skb says). Read from Linux 5.10's net/ (checked in Debian's
// 5.10.0-32 by test/matrix): most sites free for one reason, some for
// several that the site cannot tell apart.
type DropSite struct {
	// Func is the function as /proc/kallsyms names it, without the
	// compiler's suffixes (.constprop.0, .isra.0, .cold).
	Func string `json:"func"`
	// WithRST: the function frees SYNs for several causes and only the
	// ones TCP answered with a RST are this cause's.
	WithRST bool `json:"with_rst,omitempty"`
	// Candidate: the function frees SYNs for this cause among others the
	// site cannot tell apart: the cause is listed, never named.
	Candidate bool `json:"candidate,omitempty"`
	// What a SYN freed there means for this cause.
	What string `json:"what"`
}

// Tracepoint is a kernel tracepoint that names a cause, and what it means.
type Tracepoint struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// DropReasonNotSpecified is the drop reason of a packet freed without one
// (kfree_skb's SKB_DROP_REASON_NOT_SPECIFIED).
const DropReasonNotSpecified = "NOT_SPECIFIED"

// ListenDropsCounter is the counter every tcp_listendrop moves.
const ListenDropsCounter = "TcpExtListenDrops"

// ICMP is a class of ICMP error: destination unreachable (type 3 in ICMP,
// 1 in ICMPv6) or time exceeded (11 / 3), with some codes or, when Codes is
// empty, any code no other entry names.
type ICMP struct {
	V6    bool    `json:"v6"`
	Type  uint8   `json:"type"`
	Codes []uint8 `json:"codes,omitempty"`
	// Text is how it is shown ("port unreachable"); empty for catch-alls,
	// which show the code.
	Text string `json:"text,omitempty"`
}

// RouteType is a route type whose lookups fail, and the errno the kernel
// returns for it (fib_props in net/ipv4/fib_semantics.c,
// ip6_rt_type_to_error in net/ipv6/route.c).
type RouteType struct {
	Type  string        `json:"type"`
	Errno syscall.Errno `json:"errno"`
}

var catalog = []Cause{
	{
		ID:           NoRouteToPeer,
		Title:        "No route back to the client for the SYN-ACK",
		Mechanism:    "tcp_conn_request asks route_req (inet_csk_route_req / inet6_csk_route_req) for a route from the listener to the client; when the lookup fails (missing default route, unreachable/blackhole/prohibit route, a policy rule or fwmark steering into a table without a route) the SYN is dropped and consumed, so drop-reason tracers never see it.",
		Counters:     []string{"TcpExtListenDrops", "IpOutNoRoutes", "Ip6OutNoRoutes"},
		Confirm:      "ip route get <client> from <local> mark <M> uid <U> ipproto tcp sport <lport> dport <rport> inside the server's namespace returns an error; ListenDrops and OutNoRoutes rise together.",
		Fix:          "Restore the missing route (usually the default route), or fix the policy rule / fwmark so the reply table can reach the client.",
		Reference:    "1, 2.B1",
		DropCounters: []DropCounter{{Name: "IpOutNoRoutes", Shared: true}, {Name: "Ip6OutNoRoutes", Shared: true}}, ListenDrop: true,
		ICMP: []ICMP{
			{Type: 3, Codes: []uint8{0, 6}, Text: "network unreachable"},
			{Type: 11, Text: "time exceeded"},
			{Type: 3, Text: ""},
			{V6: true, Type: 1, Codes: []uint8{0}, Text: "no route to destination"},
			{V6: true, Type: 3, Text: "time exceeded"},
			{V6: true, Type: 1, Text: ""},
		},
		RouteTypes: []RouteType{
			{Type: "unreachable", Errno: syscall.EHOSTUNREACH},
			{Type: "blackhole", Errno: syscall.EINVAL},
			{Type: "prohibit", Errno: syscall.EACCES},
			{Type: "throw", Errno: syscall.EAGAIN},
		},
	},
	{
		ID:           AcceptQueueOverflow,
		Title:        "Accept queue full: the application is not calling accept() fast enough",
		Mechanism:    "When a listener's accept queue holds more than its backlog, new SYNs (and final ACKs) are dropped; ListenOverflows and ListenDrops rise and the listener's sk_drops counts them.",
		Counters:     []string{"TcpExtListenOverflows", "TcpExtListenDrops"},
		Confirm:      "ss -lnt shows Recv-Q >= Send-Q+1 on the listener; ss -tlm shows its drop counter d<N> rising.",
		Fix:          "Make the application accept faster (more workers, fix a stall) and raise its listen() backlog together with net.core.somaxconn.",
		Reference:    "2.A1, 2.A2",
		DropCounters: []DropCounter{{Name: "TcpExtListenOverflows"}}, ListenDrop: true,
		DropReasons: []string{"TCP_LISTEN_OVERFLOW"},
	},
	{
		ID:           SynQueueOverflow,
		Title:        "SYN queue full with syncookies off: SYNs dropped",
		Mechanism:    "With net.ipv4.tcp_syncookies=0, a listener whose request queue exceeds its backlog drops new SYNs (TCPReqQFullDrop); the 'last quarter' rule also drops SYNs from unproven peers when tcp_max_syn_backlog is nearly used up.",
		Counters:     []string{"TcpExtTCPReqQFullDrop", "TcpExtListenDrops"},
		Confirm:      "Many SYN-RECV sockets on the listener (ss -tn state syn-recv), TCPReqQFullDrop rising, 'Possible SYN flooding' in the kernel log.",
		Fix:          "Enable syncookies (sysctl -w net.ipv4.tcp_syncookies=1), raise the listen backlog and net.core.somaxconn, and find the source of the SYN burst.",
		Reference:    "2.A3, 2.A4",
		DropCounters: []DropCounter{{Name: "TcpExtTCPReqQFullDrop"}}, ListenDrop: true,
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
		ID:                FirewallDrop,
		Title:             "A firewall rule drops or rejects the SYN or the SYN-ACK",
		Mechanism:         "A netfilter (nftables or iptables-nft) rule in input/prerouting drops the SYN before TCP sees it, or one in output/postrouting drops the SYN-ACK; the latter leaves the request in place and TCPTimeouts rises while TCPSynRetrans stays flat.",
		Counters:          []string{"TcpExtTCPTimeouts", "IpOutDiscards"},
		Confirm:           "nft -a list ruleset shows a drop/reject rule matching the port whose counter rises while clients retry.",
		Fix:               "Remove or narrow the rule (nft delete rule <family> <table> <chain> handle <N>), or add an accept rule before it.",
		Reference:         "2.C1, 2.E",
		DropReasons:       []string{"NETFILTER_DROP"},
		SynackDropReasons: []string{"NETFILTER_DROP"},
		DropSites: []DropSite{
			{Func: "nf_hook_slow", What: "a netfilter hook's verdict was NF_DROP (a drop or reject rule; conntrack refusing the packet ends here too)"},
		},
		// A closed TCP port answers with RST, never with ICMP: a port
		// unreachable quoting a SYN comes from a REJECT rule (iptables'
		// and ip6tables' default reject-with).
		ICMP: []ICMP{
			{Type: 3, Codes: []uint8{9, 10, 13}, Text: "administratively prohibited"},
			{Type: 3, Codes: []uint8{3}, Text: "port unreachable (a REJECT rule: closed TCP ports answer RST)"},
			{V6: true, Type: 1, Codes: []uint8{1, 5, 6}, Text: "administratively prohibited"},
			{V6: true, Type: 1, Codes: []uint8{4}, Text: "port unreachable (a REJECT rule: closed TCP ports answer RST)"},
		},
	},
	{
		ID:           RPFilterDrop,
		Title:        "Reverse-path filter drops the SYN",
		Mechanism:    "With strict rp_filter (1), a packet whose source would be routed back out of another interface is dropped in ip_rcv_finish_core (IP_RPFILTER). The effective value is max(all, interface).",
		Counters:     []string{"TcpExtIPReversePathFilter"},
		Confirm:      "sysctl net.ipv4.conf.{all,<dev>}.rp_filter is 1 and ip route get <client> leaves through another interface than the SYN arrived on.",
		Fix:          "Use loose mode (sysctl -w net.ipv4.conf.<dev>.rp_filter=2 and .all.rp_filter=2) or make the routing symmetric.",
		Reference:    "2.E",
		DropCounters: []DropCounter{{Name: "TcpExtIPReversePathFilter"}},
		DropReasons:  []string{"IP_RPFILTER"},
		DropSites: []DropSite{
			{Func: "ip_rcv_finish_core", Candidate: true, What: "the input route lookup refused the SYN: strict rp_filter (TcpExtIPReversePathFilter rises), a martian source, or no route to forward it"},
		},
	},
	{
		ID:          NoListener,
		Title:       "Nothing listens on that address and port: the SYN is answered with RST",
		Mechanism:   "No socket matches the SYN's destination (no listener, a listener bound to another address, SO_BINDTODEVICE on another device, a reuseport/sk_lookup program returning drop), so TCP replies with RST and the client sees 'connection refused'.",
		Counters:    []string{"TcpOutRsts", "TcpAttemptFails"},
		Confirm:     "ss -lnt shows no listener covering the address, port and device; the capture shows RST answering the SYN.",
		Fix:         "Start the service, or bind it to the address/device the clients use (0.0.0.0 / ::, or the right interface).",
		Reference:   "2.G",
		DropReasons: []string{"NO_SOCKET"},
		// tcp_v4_rcv / tcp_v6_rcv free every SYN they refuse at one
		// place (discard_it); the RST TCP sends from there is what only
		// the no-socket path does (besides a SYN meeting a FIN-WAIT-2
		// TIME-WAIT socket in its window, which is rare).
		DropSites: []DropSite{
			{Func: "tcp_v4_rcv", WithRST: true, What: "no socket took the SYN, and TCP answered it with a RST"},
			{Func: "tcp_v6_rcv", WithRST: true, What: "no socket took the SYN, and TCP answered it with a RST"},
		},
	},
	{
		ID:        PortScan,
		Title:     "A source is scanning ports: closed ones are refused with RST, as they should be",
		Mechanism: "A scanner sends one SYN to each of many ports, often without TCP options, and resets the SYN-ACK of an open port instead of completing it (a half-open scan). The kernel answers closed ports with RST; nothing is wrong on the host.",
		Counters:  []string{"TcpOutRsts", "TcpExtEmbryonicRsts"},
		Confirm:   "The capture shows one source sending a single, never retransmitted SYN to each of several ports; no client retries a closed port.",
		Fix:       "Nothing on this host; filter the source upstream if it should not reach the host.",
		Reference: "2.G",
	},
	{
		ID:          NeighborUnreachable,
		Title:       "The SYN-ACK's next hop does not answer ARP / neighbour discovery",
		Mechanism:   "The route back to the client points at a gateway (or an on-link client) whose neighbour entry never resolves; the SYN-ACK waits in the neighbour queue and is dropped (NEIGH_FAILED), retransmits count as sent.",
		Counters:    []string{"TcpExtTCPSynRetrans", "TcpExtListenDrops"},
		Confirm:     "ip neigh shows the next hop FAILED or INCOMPLETE; ip route get <client> names that next hop.",
		Fix:         "Fix the gateway address in the route, or the link to it.",
		Reference:   "2.C5",
		DropReasons: []string{"NEIGH_*"},
		// v6 neighbour failures free the SYN-ACK with NOT_SPECIFIED
		// (reference 2.C5); neigh_destroy purges a dead entry's queue with
		// QUEUE_PURGE, which is how a SYN-ACK still waiting for resolution
		// dies when the failed entry is garbage-collected first.
		SynackDropReasons: []string{"NEIGH_*", DropReasonNotSpecified, "QUEUE_PURGE"},
		ICMP: []ICMP{
			{Type: 3, Codes: []uint8{1, 7}, Text: "host unreachable"},
			{V6: true, Type: 1, Codes: []uint8{3}, Text: "address unreachable"},
		},
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
		ID:                IPv6Disabled,
		Title:             "IPv6 is disabled on the interface",
		Mechanism:         "With disable_ipv6=1 on the receiving interface, ip6_rcv_core drops every IPv6 packet (IPV6DISABLED) and the interface has no IPv6 address to answer from.",
		Counters:          []string{"Ip6InDiscards"},
		Confirm:           "sysctl net.ipv6.conf.<dev>.disable_ipv6 is 1.",
		Fix:               "sysctl -w net.ipv6.conf.<dev>.disable_ipv6=0 (and re-add the addresses and routes the reset removed).",
		Reference:         "2.E, 2.C6",
		DropReasons:       []string{"IPV6DISABLED"},
		SynackDropReasons: []string{"IPV6DISABLED"},
		DropSites: []DropSite{
			{Func: "ip6_rcv_core", Candidate: true, What: "IPv6 input refused the packet: disable_ipv6 on the device, or a malformed or martian header"},
		},
	},
	{
		ID:        TCPReject,
		Title:     "TCP drops the SYN before the listener (MINTTL, MD5/AO, checksum)",
		Mechanism: "tcp_v4_rcv / tcp_v6_rcv reject the SYN when its TTL is below the listener's IP_MINTTL, when TCP-MD5 / TCP-AO signatures are missing or wrong, or when the checksum is bad; the listener's drop counter rises. (A socket filter or cgroup program dropping it there is bpf-drop.)",
		Counters:  []string{"TcpExtTCPMinTTLDrop", "TcpExtTCPMD5NotFound", "TcpExtTCPMD5Unexpected", "TcpExtTCPMD5Failure", "TcpExtTCPAORequired", "TcpExtTCPAOBad", "TcpExtTCPAOKeyNotFound", "TcpInCsumErrors"},
		Confirm:   "The named counter rises with each client attempt; ss -tlm shows the listener's d<N> rising.",
		Fix:       "Make both ends agree: lower IP_MINTTL, configure the same MD5/AO key on the client, or fix the checksum offload.",
		Reference: "2.F",
		// tcp_v4_rcv / tcp_v6_rcv drop these before the listener
		// (discard_and_relse, csum_error): the listener's sk_drops rises
		// but TcpExtListenDrops does not.
		DropCounters: []DropCounter{
			{Name: "TcpExtTCPMinTTLDrop", What: "the listener's IP_MINTTL is higher than the TTL the SYNs arrive with", Fix: "lower or remove the listener's IP_MINTTL / IPV6_MINHOPCOUNT (setsockopt), or move the client closer"},
			{Name: "TcpExtTCPMD5NotFound", What: "the listener expects a TCP-MD5 signature (TCP_MD5SIG) the client does not send", Fix: "configure the same TCP_MD5SIG key on the client, or remove it from the listener"},
			{Name: "TcpExtTCPMD5Unexpected", What: "the client signs with TCP-MD5 and the listener has no key for it", Fix: "configure the key on the listener, or stop signing on the client"},
			{Name: "TcpExtTCPMD5Failure", What: "TCP-MD5 signatures do not verify (key mismatch)", Fix: "make the MD5 keys on both ends equal"},
			{Name: "TcpExtTCPAORequired", What: "the listener requires TCP-AO and the SYN has none", Fix: "configure matching TCP-AO keys"},
			{Name: "TcpExtTCPAOBad", What: "TCP-AO signatures do not verify", Fix: "configure matching TCP-AO keys"},
			{Name: "TcpExtTCPAOKeyNotFound", What: "no TCP-AO key matches the SYN", Fix: "configure matching TCP-AO keys"},
			{Name: "TcpInCsumErrors", Shared: true, What: "TCP segments arrive with bad checksums", Fix: "check NIC checksum offload and the path for corruption"},
		},
		DropReasons: []string{"TCP_MINTTL", "TCP_CSUM", "TCP_MD5*", "TCP_AO*"},
		DropSites: []DropSite{
			{Func: "tcp_v4_rcv", Candidate: true, What: "TCP refused the SYN without a RST: a bad checksum, the listener's IP_MINTTL, or a TCP-MD5 check"},
			{Func: "tcp_v6_rcv", Candidate: true, What: "TCP refused the SYN without a RST: a bad checksum, the listener's IPV6_MINHOPCOUNT, or a TCP-MD5 check"},
		},
		Tracepoints: []Tracepoint{
			{"tcp_bad_csum", "TCP checksum wrong"},
			{"tcp_hash_md5_required", "the listener requires a TCP-MD5 signature from this peer and the SYN has none"},
			{"tcp_hash_md5_unexpected", "the SYN carries a TCP-MD5 signature but the listener has no key for this peer"},
			{"tcp_hash_md5_mismatch", "the SYN's TCP-MD5 signature does not match the listener's key"},
			{"tcp_hash_ao_required", "the listener requires TCP-AO from this peer and the SYN has no AO option"},
			{"tcp_hash_bad_header", "the SYN's TCP-MD5/TCP-AO options are malformed or conflicting"},
			{"tcp_ao_handshake_failure", "the SYN's TCP-AO MAC or key id does not match"},
		},
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
		ID:                SynackEgressDrop,
		Title:             "The SYN-ACK is dropped on the way out of this host",
		Mechanism:         "tcp_conn_request ignores send_synack's result: a SYN-ACK dropped by tc, a qdisc or a cgroup BPF program leaves the request in place, TCPTimeouts rises and TCPSynRetrans stays flat.",
		Counters:          []string{"TcpExtTCPTimeouts"},
		Confirm:           "TCPTimeouts rises while TCPSynRetrans does not; skb:kfree_skb shows TC_EGRESS, QDISC_DROP or BPF_CGROUP_EGRESS.",
		Fix:               "Inspect tc filters, qdiscs and cgroup egress programs on the path out.",
		Reference:         "2.C",
		SynackDropReasons: []string{"*"},
	},
	{
		ID:           PAWSReject,
		Title:        "SYN collides with a TIME_WAIT socket and fails PAWS",
		Mechanism:    "A SYN on a 4-tuple still in TIME_WAIT with an older timestamp is answered with an ACK instead of a SYN-ACK; the client resets and retries. Typical behind NAT with per-host timestamp clocks.",
		Counters:     []string{"TcpExtPAWSTimewait"},
		Confirm:      "PAWSTimewait rising; captures show ACK answered instead of SYN-ACK.",
		Fix:          "Avoid NAT port reuse across hosts with different timestamp clocks, or let the server not close first.",
		Reference:    "2.H1",
		DropCounters: []DropCounter{{Name: "TcpExtPAWSTimewait"}},
		DropReasons:  []string{"TCP_RFC7323_TW_PAWS", "TCP_RFC7323_PAWS"},
		DropSites: []DropSite{
			{Func: "tcp_v4_rcv", Candidate: true, What: "a TIME-WAIT socket answered the SYN with an ACK and TCP freed it"},
			{Func: "tcp_v6_rcv", Candidate: true, What: "a TIME-WAIT socket answered the SYN with an ACK and TCP freed it"},
		},
	},
	{
		ID:        DefaultRouteAtRisk,
		Title:     "A default route is about to disappear",
		Mechanism: "Handshakes work now, but the host's configuration will remove its default route: an RA-learned IPv6 default route on a device with forwarding=1 and accept_ra=1 is no longer refreshed by router advertisements, so it expires, and the next write of forwarding=1 purges it at once (rt6_purge_dflt_routers); a default route whose gateway's neighbour entry is FAILED carries nothing. Once it is gone every SYN from an off-link client is dropped as no-route-to-peer.",
		Counters:  []string{"Ip6OutNoRoutes", "IpOutNoRoutes"},
		Confirm:   "ip -6 route show default shows 'proto ra ... expires Nsec' on a device where sysctl net.ipv6.conf.<dev>.forwarding is 1 and accept_ra is 1; or ip neigh shows the gateway FAILED.",
		Fix:       "Set net.ipv6.conf.<dev>.accept_ra=2 where forwarding must stay on, or configure a static default route; run synscope watch to catch the loss the moment it happens.",
		Reference: "route-loss 1.1, 1.2",
	},
	{
		ID:           UnexplainedDrops,
		Title:        "SYNs to a listener dropped with no cause confirmed",
		Mechanism:    "ListenDrops rose without ListenOverflows, TCPReqQFullDrop or OutNoRoutes: the remaining candidates are the last-quarter SYN backlog rule, IPv6 unreachable/blackhole/prohibit routes, an LSM denial, broadcast destinations, an ICMP abort or an allocation failure.",
		Counters:     []string{"TcpExtListenDrops"},
		Confirm:      "Replay the SYN-ACK route lookup for each client; check tcp_max_syn_backlog and security modules; run synscope trace.",
		Fix:          "Run synscope trace during the failures to see each SYN's fate.",
		Reference:    "3",
		DropCounters: []DropCounter{{Name: ListenDropsCounter}}, ListenDrop: true,
	},
	{
		ID:          BPFDrop,
		Title:       "A BPF program or filter drops the SYN",
		Mechanism:   "A program attached where the SYN passes returns its drop verdict: XDP on the device (XDP_DROP, before any capture or counter), a tc/tcx ingress program (TC_ACT_SHOT), a cgroup_skb ingress program on the listener's cgroup or an ancestor (systemd's IPAddressDeny= is one), or the listener's own socket filter (returns 0). No nstat counter moves; the listener's drop counter (ss -tlm d<N>) rises for the cgroup and socket-filter cases. An eBPF dataplane or DDoS filter left behind, or one whose map lost an entry, does this.",
		Counters:    []string{"TcpExtTCPTimeouts"},
		Confirm:     "ip link show (xdp/xdpgeneric prog/xdp id N), tc filter show dev <dev> ingress, bpftool net and bpftool cgroup tree list the programs; bpftool prog run (BPF_PROG_TEST_RUN) of a SYN frame for the listener returns the drop verdict; synscope trace shows the SYN freed with TC_INGRESS or SOCKET_FILTER (XDP drops on a real NIC leave no skb).",
		Fix:         "Remove the program from its hook (ip link set dev <dev> xdp off; tc filter del dev <dev> ingress pref <N>; bpftool cgroup detach <cgroup> ingress id <N>), or fix its rules/maps so it passes the listener's SYNs; a socket filter belongs to the application, which must be fixed or restarted without it.",
		Reference:   "2.E, 2.F",
		DropReasons: []string{"TC_INGRESS", "SOCKET_FILTER", "XDP"},
		DropSites: []DropSite{
			{Func: "tcp_v4_rcv", Candidate: true, What: "the listener's socket filter refused the SYN (tcp_filter)"},
			{Func: "tcp_v6_rcv", Candidate: true, What: "the listener's socket filter refused the SYN (tcp_filter)"},
			{Func: "__netif_receive_skb_core", Candidate: true, What: "a tc ingress filter returned TC_ACT_SHOT (or no protocol took the packet)"},
		},
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

// ContextCounters are counters a handshake investigation reads for
// context — they name no cause on their own (opens, discards, resets).
// With every cause's Counters they make the set doctor reports.
var contextCounters = []string{
	"TcpPassiveOpens", "TcpActiveOpens", "TcpRetransSegs", "TcpExtSyncookiesRecv",
	"TcpExtTCPAbortOnOverflow", "TcpExtEmbryonicRsts", "IpInDiscards", "Ip6OutDiscards",
	"TcpExtTCPDeferAcceptDrop", "TcpExtTCPACKSkippedSynRecv",
}

// Counters returns every nstat counter the catalog names, causes' and
// context counters, sorted. Pseudo-counters of conntrack's statistics
// ("conntrack drop") are left out: they are not nstat names.
func Counters() []string {
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if !seen[n] && !strings.HasPrefix(n, "conntrack ") {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, c := range catalog {
		for _, n := range c.Counters {
			add(n)
		}
	}
	for _, n := range contextCounters {
		add(n)
	}
	sort.Strings(out)
	return out
}

// Known reports whether the catalog lists counter name.
func Known(name string) bool {
	for _, n := range Counters() {
		if n == name {
			return true
		}
	}
	return false
}

// ForDropReason names the cause of a SYN freed with reason (an skb drop
// reason name), or "" when the catalog names none.
func ForDropReason(reason string) ID {
	return matchReason(reason, func(c Cause) []string { return c.DropReasons })
}

// ForSynackDropReason names the cause of a SYN-ACK freed with reason.
func ForSynackDropReason(reason string) ID {
	return matchReason(reason, func(c Cause) []string { return c.SynackDropReasons })
}

// matchReason: an exact name wins over the longest prefix, which wins
// over a catch-all.
func matchReason(reason string, list func(Cause) []string) ID {
	var best ID
	bestLen := -1
	for _, c := range catalog {
		for _, r := range list(c) {
			n := -1
			switch {
			case r == reason:
				return c.ID
			case r == "*":
				n = 0
			case strings.HasSuffix(r, "*") && strings.HasPrefix(reason, strings.TrimSuffix(r, "*")):
				n = len(r)
			}
			if n > bestLen {
				best, bestLen = c.ID, n
			}
		}
	}
	return best
}

// DropSiteMatch is one catalog entry for a kernel function that freed a SYN.
type DropSiteMatch struct {
	Cause ID
	Site  DropSite
}

// ForDropSite names the cause of a SYN freed (kfree_skb) in the kernel
// function fn ("tcp_v4_rcv", or as kallsyms shows it,
// "ip_rcv_finish_core.constprop.0"); rst says whether a RST answered the
// SYN. named is "" when the site cannot tell its causes apart; candidates
// are then the causes it frees SYNs for (empty: the catalog knows none).
func ForDropSite(fn string, rst bool) (named ID, site DropSite, candidates []DropSiteMatch) {
	fn, _, _ = strings.Cut(fn, ".")
	for _, c := range catalog {
		for _, s := range c.DropSites {
			if s.Func != fn {
				continue
			}
			switch {
			case s.Candidate:
				candidates = append(candidates, DropSiteMatch{c.ID, s})
			case !s.WithRST || rst:
				return c.ID, s, nil
			}
		}
	}
	return "", DropSite{}, candidates
}

// DropSiteFuncs lists every kernel function the catalog names a drop site.
func DropSiteFuncs() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range catalog {
		for _, s := range c.DropSites {
			if !seen[s.Func] {
				seen[s.Func] = true
				out = append(out, s.Func)
			}
		}
	}
	sort.Strings(out)
	return out
}

// ForICMP names the cause of an ICMP error quoting a SYN, and how to show
// it. It reports false for ICMP types the catalog does not list.
func ForICMP(v6 bool, typ, code uint8) (ID, string, bool) {
	var fallback *ICMP
	var fbID ID
	for _, c := range catalog {
		for i := range c.ICMP {
			m := &c.ICMP[i]
			if m.V6 != v6 || m.Type != typ {
				continue
			}
			if len(m.Codes) == 0 {
				if fallback == nil {
					fallback, fbID = m, c.ID
				}
				continue
			}
			for _, k := range m.Codes {
				if k == code {
					return c.ID, m.Text, true
				}
			}
		}
	}
	if fallback == nil {
		return "", "", false
	}
	if fallback.Text != "" {
		return fbID, fallback.Text, true
	}
	return fbID, unreachableText(code), true
}

func unreachableText(code uint8) string {
	return "unreachable code " + strconv.Itoa(int(code))
}

// RouteTypeErrno returns the error a lookup ending on a route of type t
// returns, and false for route types that do not fail.
func RouteTypeErrno(t string) (syscall.Errno, bool) {
	for _, c := range catalog {
		for _, rt := range c.RouteTypes {
			if rt.Type == t {
				return rt.Errno, true
			}
		}
	}
	return 0, false
}

// Attribution is one interval's counter deltas split into causes.
type Attribution struct {
	// ByCause: SYNs (or, for shared counters of causes outside
	// ListenDrops, packets) each cause dropped.
	ByCause map[ID]uint64
	// ByCounter: how much of each DropCounter's rise was attributed (a
	// ListenDrop sub-count may get less than it rose when ListenDrops
	// holds less). The unexplained share of ListenDrops is under
	// ListenDropsCounter.
	ByCounter map[string]uint64
}

// Attribute splits one interval's counter deltas into causes by the
// catalog's DropCounters; delta returns a counter's change (<= 0: none).
// The kernel facts it follows (net/ipv4/tcp_input.c tcp_conn_request,
// net/ipv4/tcp_ipv4.c tcp_v4_rcv):
//   - every drop inside tcp_conn_request goes through tcp_listendrop, so
//     ListenOverflows, TCPReqQFullDrop and the route failures' OutNoRoutes
//     are sub-counts of ListenDrops: the exact ones take their share out
//     of it first, the shared ones (OutNoRoutes) what is left, none more
//     than ListenDrops holds, and unexplained-listen-drops keeps the rest;
//   - drops before the listener (MINTTL, MD5/AO, checksum, PAWS,
//     rp_filter) never move ListenDrops and are taken whole.
func Attribute(delta func(name string) int64) Attribution {
	a := Attribution{ByCause: map[ID]uint64{}, ByCounter: map[string]uint64{}}
	pos := func(name string) uint64 {
		if v := delta(name); v > 0 {
			return uint64(v)
		}
		return 0
	}
	give := func(c Cause, counter string, n uint64) {
		if n > 0 {
			a.ByCause[c.ID] += n
			a.ByCounter[counter] += n
		}
	}
	listen := pos(ListenDropsCounter)
	// Pass 0: counters outside ListenDrops; 1: exact sub-counts of
	// ListenDrops; 2: shared sub-counts.
	for pass := 0; pass < 3; pass++ {
		for _, c := range catalog {
			if c.ID == UnexplainedDrops {
				continue
			}
			for _, dc := range c.DropCounters {
				switch {
				case !c.ListenDrop && pass == 0:
					give(c, dc.Name, pos(dc.Name))
				case c.ListenDrop && !dc.Shared && pass == 1, c.ListenDrop && dc.Shared && pass == 2:
					n := min(pos(dc.Name), listen)
					listen -= n
					give(c, dc.Name, n)
				}
			}
		}
	}
	give(MustLookup(UnexplainedDrops), ListenDropsCounter, listen)
	return a
}

// AttributeDrops is Attribute's split by cause: what doctor's findings,
// watch's metrics and every other mode report for the same deltas.
func AttributeDrops(delta func(name string) int64) map[ID]uint64 {
	return Attribute(delta).ByCause
}

// DropCounterOf finds the cause a counter counts drops for.
func DropCounterOf(name string) (ID, DropCounter, bool) {
	for _, c := range catalog {
		for _, dc := range c.DropCounters {
			if dc.Name == name {
				return c.ID, dc, true
			}
		}
	}
	return "", DropCounter{}, false
}

// TracepointText returns what the tracepoint named tp means for the cause
// it names, and "" when the catalog does not list it.
func TracepointText(tp string) (ID, string) {
	for _, c := range catalog {
		for _, t := range c.Tracepoints {
			if t.Name == tp {
				return c.ID, t.Text
			}
		}
	}
	return "", ""
}

// Tracepoints lists the tracepoints cause id names, in catalog order.
func Tracepoints(id ID) []Tracepoint {
	c, _ := Lookup(id)
	return append([]Tracepoint(nil), c.Tracepoints...)
}

// ErrnoRouteType returns the route type whose lookups fail with errno,
// for showing a failed lookup's error ("EINVAL (blackhole)").
func ErrnoRouteType(errno syscall.Errno) (string, bool) {
	for _, c := range catalog {
		for _, rt := range c.RouteTypes {
			if rt.Errno == errno {
				return rt.Type, true
			}
		}
	}
	return "", false
}

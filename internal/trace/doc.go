// Package trace watches TCP handshakes as they happen and tells, per SYN,
// whether it was answered, refused or dropped and why, using only tracepoints
// (tp_btf): it works where kprobes and fentry are unavailable.
//
// Drops decided inside tcp_conn_request (no route for the SYN-ACK, accept
// queue full) consume the SYN instead of freeing it with a drop reason, so
// skb:kfree_skb alone is blind to them. The BPF side keeps a per-CPU context
// for the SYN being processed, lets fib_table_lookup / fib6_table_lookup,
// net_dev_queue, tcp_send_reset and kfree_skb annotate it, and emits one
// event when the SYN skb is freed; user space (Engine) combines those events
// with the later SYN-ACK retransmits and the final ACK into a fate per SYN,
// named by the causes catalog.
//
// A netfilter reject (nft "reject with tcp reset") answers the SYN with a
// RST built by nf_send_reset, which fires no TCP tracepoint; the RST's
// transmit (net_dev_queue) inside the SYN's window is what tells it from a
// silent firewall drop, so such SYNs are refused with cause firewall-drop.
//
// TCP's own rejects have tracepoints naming the failure: tcp_bad_csum and
// tcp_hash_md5_required / _unexpected / _mismatch, tcp_hash_ao_required,
// tcp_hash_bad_header, tcp_ao_handshake_failure (the hash ones since 6.7).
// Seen for the SYN in its window, the tracepoint's name is evidence of
// tcp-reject; without them the SYN's drop reason still names tcp-reject.
//
// Every program is optional except the four that give a SYN its fate
// (netif_receive_skb, net_dev_queue, consume_skb, kfree_skb). Open reads
// each tracepoint's prototype from the kernel's BTF, loads the program
// variant that fits (kfree_skb without its drop reason before 5.17,
// tcp_send_reset without its reason before 6.10, consume_skb without its
// location before 6.3), then loads and attaches every program on its own.
//
// Without drop reasons (before 5.17) a dropped SYN is named by where it was
// freed: kfree_skb's location, resolved once per kernel through
// /proc/kallsyms (Kallsyms) to function+offset, and the catalog's drop
// sites (causes.ForDropSite) name the cause only where the site, with the
// RST evidence, tells it apart; otherwise the SYN is dropped with no cause
// and the site and its candidate causes as evidence. What could not be
// hooked is a Capability that is not available, with cilium/ebpf's answer
// (not supported, not permitted, inconclusive) and the kernel that has it;
// the tracer runs with the rest. Below the minimum Open fails with
// ErrKernelUnsupported and one line naming the missing hook.
//
// A syncookie SYN-ACK is the one tcp_make_synack leaves without an owning
// socket (TCP_SYNACK_COOKIE: no request socket is kept), so skb->sk == NULL
// at net_dev_queue marks a handshake answered with a cookie; when its final
// ACK arrives it is established "with a syncookie".
//
// Conntrack has no tracepoint, and "ct state invalid drop" ends like any
// rule's drop (kfree_skb NETFILTER_DROP from nf_hook_slow). What differs is
// skb->_nfct at that moment, read through CO-RE: nf_conntrack_in clears it
// for a packet it finds INVALID, while a valid SYN carries its NEW entry.
// An empty _nfct also means "conntrack not hooked in this namespace", so
// user space counts it as conntrack-invalid only where the namespace's
// conntrack statistics (/proc/net/stat/nf_conntrack) show INVALID packets.
// Left ambiguous: a namespace whose conntrack marked packets INVALID earlier
// but is hooked for only the other address family, or no longer hooked.
//
// At start the tracer probes whether a do-nothing fexit program loads and
// attaches on tcp_conn_request (or inet_csk_route_req) and reports the
// answer in the summary (available, not permitted, not supported, or
// inconclusive, after cilium/ebpf's ErrNotSupported / EPERM contract).
// Nothing depends on it: no fexit program is used even where it attaches.
package trace

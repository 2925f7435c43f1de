// SPDX-License-Identifier: GPL-2.0
/* synscope trace: per-SYN fate from tracepoints only (tp_btf).
 *
 * Every program is loaded and attached on its own (loader.go): one whose
 * tracepoint a kernel lacks is left out and reported as a missing
 * capability, and where a tracepoint's arguments changed between kernels
 * there is one program per prototype (on_kfree / on_kfree_noreason,
 * on_reset / on_reset_noreason, on_consume / on_consume_noloc); the loader
 * reads the prototype from the kernel's BTF and loads the one that fits.
 *
 * Why this shape: drops decided inside tcp_conn_request (no route for the
 * SYN-ACK, accept queue full) end in consume_skb, so skb:kfree_skb never sees
 * them. A listener's SYN is processed synchronously in softirq on one CPU, from
 * netif_receive_skb to the free of the skb, and the SYN-ACK's route lookup and
 * first transmit happen inside that window. So we keep one "current SYN"
 * context per CPU, let the fib lookup, SYN-ACK transmit, RST and drop
 * tracepoints annotate it, and emit one event when the SYN skb is freed.
 */
#include "core.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6
#define AF_INET 2
#define AF_INET6 10

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10

#define MAX_PORTS 16
#define MAX_PEERS 16

/* Event kinds; keep in sync with events.go. */
enum {
	EV_SYN = 1,       /* a SYN's processing ended (freed) */
	EV_SYNACK = 2,    /* a SYN-ACK of a tracked flow left (retransmit or late) */
	EV_ACK = 3,       /* the handshake's final ACK arrived */
	EV_RETRANS = 4,   /* tcp_retransmit_synack for a tracked flow */
	EV_DROP = 5,      /* kfree_skb of a handshake packet outside the SYN window */
};

/* EV_SYN flags. */
enum {
	F_CONSUMED = 1 << 0,    /* SYN freed by consume_skb (not kfree_skb) */
	F_SYNACK = 1 << 1,      /* SYN-ACK queued to a device while processing */
	F_RST = 1 << 2,         /* tcp_send_reset answered the SYN */
	F_FIB = 1 << 3,         /* a reply route lookup was seen; fib_err valid */
	F_SYNACK_DROP = 1 << 4, /* SYN-ACK freed by kfree_skb while processing */
	F_SAMPLED = 1 << 5,
	F_NEIGH_QUEUED = 1 << 6, /* SYN-ACK handed to an unresolved neighbour */
	F_RST_TX = 1 << 7,       /* a RST answering the SYN was queued to a device */
	F_COOKIE = 1 << 8,       /* the SYN-ACK carries a syncookie (no request kept) */
};

/* Which TCP reject tracepoint saw the SYN; keep in sync with events.go. */
enum {
	R_BAD_CSUM = 1,
	R_MD5_REQUIRED,
	R_MD5_UNEXPECTED,
	R_MD5_MISMATCH,
	R_AO_REQUIRED,
	R_HASH_BAD_HEADER,
	R_AO_HANDSHAKE,
};

/* event.nfct: what conntrack had attached to the SYN when it was dropped.
 * nf_conntrack_in clears skb->_nfct for a packet it finds INVALID, which
 * nft's "ct state invalid" then matches; a tracked packet carries its ct
 * pointer and ctinfo (the low 3 bits; 7 alone is IP_CT_UNTRACKED). */
enum {
	NFCT_KNOWN = 1 << 8, /* the kernel has skb->_nfct (CONFIG_NF_CONNTRACK) */
	NFCT_CT = 1 << 9,    /* a conntrack entry was attached */
	/* low 3 bits: ctinfo */
};

/* Counter indexes; keep in sync with events.go. */
enum {
	C_SYN = 0,
	C_SYN_UNSAMPLED,
	C_SYN_SYNACK,
	C_SYN_ROUTE_FAIL,
	C_SYN_CONSUMED_SILENT,
	C_SYN_RST,
	C_SYN_DROPPED,
	C_SYNACK_DROPPED,
	C_SYNACK_RETRANS,
	C_ACK,
	C_LOST,
	C_SYN_COOKIE,
	C_MAX,
};

#define DROP_SLOTS 1024 /* [0,512) SYN reasons, [512,1024) SYN-ACK reasons */

struct config {
	__u32 netns;        /* 0: every namespace */
	__u32 nports;
	__u16 ports[MAX_PORTS]; /* server ports, host order */
	__u32 npeers;
	__u8 peers[MAX_PEERS][16]; /* client addresses, v4 as ::ffff:a.b.c.d */
	__u32 events_per_sec; /* sampled SYNs per second per CPU; 0 = unlimited */
};

volatile const struct config cfg = {};

struct tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* host order */
	__u16 dport;
	__u8 family;
	__u8 flags; /* TCP flags */
	__u8 pad[2];
};

struct event {
	__u64 ts;
	__u64 ts_end;
	__u64 location;
	__u32 netns;
	__u32 kind;
	struct tuple t; /* as on the wire for the packet concerned */
	__u32 reason;   /* kfree_skb reason of the SYN (EV_SYN) or packet */
	__u32 rst_reason;
	__s32 fib_err;
	__u32 fib_table;
	__u32 flags;
	__u32 synack_reason; /* EV_SYN: kfree reason of the SYN-ACK */
	__u64 synack_ts;
	__u32 tcp_reject; /* EV_SYN: R_* of the TCP tracepoint that rejected it */
	__u32 nfct;       /* EV_SYN dropped: NFCT_* of skb->_nfct at the drop */
	__u64 synack_location; /* EV_SYN: where the SYN-ACK was freed (F_SYNACK_DROP) */
};

struct synctx {
	__u64 skb;
	__u64 ts;
	__u64 synack_ts;
	__u32 netns;
	__u32 flags;
	__s32 fib_err;
	__u32 fib_table;
	__u32 rst_reason;
	__u32 synack_reason;
	__u32 tcp_reject;
	__u32 nfct;
	__u64 synack_loc;
	struct tuple t;
};

struct flowkey {
	__u8 caddr[16];
	__u8 saddr[16];
	__u16 cport;
	__u16 sport;
	__u32 netns;
};

struct flowval {
	__u64 syn_ts;
};

struct ratestate {
	__u64 window;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct synctx);
} ctxmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ratestate);
} ratemap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, 2 /* BPF_F_NO_COMMON_LRU: per-CPU lists, no global lock */);
	__uint(max_entries, 16384);
	__type(key, struct flowkey);
	__type(value, struct flowval);
} flows SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline void count_drop(__u32 reason, bool synack)
{
	__u32 idx = reason < 511 ? reason : 511;
	if (reason & 0xffff0000)
		idx = 511; /* subsystem reasons share one slot */
	if (synack)
		idx += 512;
	__u64 *v = bpf_map_lookup_elem(&drops, &idx);
	if (v)
		*v += 1;
}

/* tp_btf arguments are trusted BTF pointers: plain loads (relocated by
 * CO-RE through preserve_access_index) are much cheaper than
 * bpf_probe_read_kernel, and the verifier guards them against faults. */
static __always_inline __u32 netns_of_dev(struct net_device *dev)
{
	if (!dev)
		return 0;
	struct net *net = dev->nd_net.net;
	if (!net)
		return 0;
	return net->ns.inum;
}

static __always_inline __u32 netns_of_skb(struct sk_buff *skb)
{
	__u32 ns = netns_of_dev(skb->dev);
	if (ns)
		return ns;
	struct sock *sk = skb->sk;
	if (!sk)
		return 0;
	struct net *net = sk->__sk_common.skc_net.net;
	if (!net)
		return 0;
	return net->ns.inum;
}

static __always_inline void v4mapped(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

static __always_inline bool addr_eq(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	return x[0] == y[0] && x[1] == y[1];
}

#define HDR_BYTES 80 /* IPv4 with options (60) + TCP ports and flags (14) */

/* parse reads the IP and TCP headers of skb with one probe read. atdata:
 * headers start at skb->data (receive path, before the network header is
 * reset); otherwise at skb->head + network_header (transmit and drop paths).
 * Reading past the packet stays inside the head buffer (skb_shared_info
 * follows it), and only header bytes are used. */
static __always_inline int parse(struct sk_buff *skb, bool atdata, struct tuple *t)
{
	__u16 proto = bpf_ntohs(skb->protocol);
	if (proto != ETH_P_IP && proto != ETH_P_IPV6)
		return -1;
	unsigned char *nh;
	if (atdata) {
		nh = skb->data;
	} else {
		__u16 off = skb->network_header;
		if (off == (__u16)~0U)
			return -1;
		nh = skb->head + off;
	}
	__u8 h[HDR_BYTES];
	if (bpf_probe_read_kernel(h, sizeof(h), nh))
		return -1;
	__u32 th;
	if (proto == ETH_P_IP) {
		if ((h[0] >> 4) != 4 || h[9] != IPPROTO_TCP)
			return -1;
		__be32 a, b;
		__builtin_memcpy(&a, h + 12, 4);
		__builtin_memcpy(&b, h + 16, 4);
		v4mapped(t->saddr, a);
		v4mapped(t->daddr, b);
		t->family = AF_INET;
		th = (h[0] & 0xf) * 4;
		if (th < 20 || th > 60)
			return -1;
	} else {
		if (h[6] != IPPROTO_TCP)
			return -1;
		__builtin_memcpy(t->saddr, h + 8, 16);
		__builtin_memcpy(t->daddr, h + 24, 16);
		t->family = AF_INET6;
		th = 40;
	}
	/* Bounded offsets for the verifier. */
	th &= 0x3f;
	if (th + 14 > HDR_BYTES)
		return -1;
	t->sport = ((__u16)h[th] << 8) | h[th + 1];
	t->dport = ((__u16)h[th + 2] << 8) | h[th + 3];
	t->flags = h[th + 13];
	return 0;
}

/* match applies the port, peer and netns filters to a flow given as
 * (client, server port). */
static __always_inline bool match(const __u8 *client, __u16 sport, __u32 netns)
{
	if (cfg.netns && netns && cfg.netns != netns)
		return false;
	__u32 np = cfg.nports;
	if (np) {
		bool ok = false;
		for (int i = 0; i < MAX_PORTS; i++) {
			if (i >= np)
				break;
			if (cfg.ports[i] == sport) {
				ok = true;
				break;
			}
		}
		if (!ok)
			return false;
	}
	__u32 npe = cfg.npeers;
	if (npe) {
		bool ok = false;
		for (int i = 0; i < MAX_PEERS; i++) {
			if (i >= npe)
				break;
			if (addr_eq((const __u8 *)cfg.peers[i], client)) {
				ok = true;
				break;
			}
		}
		if (!ok)
			return false;
	}
	return true;
}

static __always_inline bool sample(void)
{
	__u32 lim = cfg.events_per_sec;
	if (!lim)
		return true;
	__u32 k = 0;
	struct ratestate *r = bpf_map_lookup_elem(&ratemap, &k);
	if (!r)
		return false;
	__u64 w = bpf_ktime_get_ns() / 1000000000ULL;
	if (r->window != w) {
		r->window = w;
		r->count = 0;
	}
	if (r->count >= lim)
		return false;
	r->count++;
	return true;
}

static __always_inline struct synctx *getctx(void)
{
	__u32 k = 0;
	return bpf_map_lookup_elem(&ctxmap, &k);
}

static __always_inline void flowkey_from(struct flowkey *k, const __u8 *client, __u16 cport,
					 const __u8 *server, __u16 sport, __u32 netns)
{
	__builtin_memcpy(k->caddr, client, 16);
	__builtin_memcpy(k->saddr, server, 16);
	k->cport = cport;
	k->sport = sport;
	k->netns = netns;
}

#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2
#define BPF_RB_AVAIL_DATA 0
#define WAKEUP_BYTES (64 * 1024)

/* submit commits an event without waking the reader unless a batch has
 * built up: a wakeup is an irq_work self-IPI, which costs microseconds per
 * event in a VM. The reader polls with a short deadline and drains what is
 * there, so events are at most one tick late. */
static __always_inline void submit(struct event *e)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > WAKEUP_BYTES)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void emit_pkt(__u32 kind, __u32 netns, struct tuple *t, __u32 reason,
				     __u64 location)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(C_LOST);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->kind = kind;
	e->netns = netns;
	e->t = *t;
	e->reason = reason;
	e->location = location;
	submit(e);
}

/* A SYN arrives at a device: open the per-CPU context. */
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(on_rx, struct sk_buff *skb)
{
	__u32 netns = netns_of_dev(skb->dev);
	if (cfg.netns && cfg.netns != netns)
		return 0;
	struct tuple t = {};
	if (parse(skb, true, &t))
		return 0;
	__u8 fl = t.flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN);
	if (fl == TH_SYN) {
		if (!match(t.saddr, t.dport, netns))
			return 0;
		struct synctx *c = getctx();
		if (!c)
			return 0;
		__builtin_memset(c, 0, sizeof(*c));
		c->skb = (__u64)skb;
		c->ts = bpf_ktime_get_ns();
		c->netns = netns;
		c->t = t;
		return 0;
	}
	if (fl == TH_ACK) {
		struct flowkey k = {};
		flowkey_from(&k, t.saddr, t.sport, t.daddr, t.dport, netns);
		if (!bpf_map_lookup_elem(&flows, &k))
			return 0;
		bpf_map_delete_elem(&flows, &k);
		count(C_ACK);
		emit_pkt(EV_ACK, netns, &t, 0, 0);
	}
	return 0;
}

static __always_inline bool reply_of_ctx(struct synctx *c, struct tuple *t)
{
	return c->skb && t->sport == c->t.dport && t->dport == c->t.sport &&
	       addr_eq(t->saddr, c->t.daddr) && addr_eq(t->daddr, c->t.saddr);
}

/* A packet is queued to a device: a SYN-ACK (or the SYN being forwarded). */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(on_tx, struct sk_buff *skb)
{
	struct synctx *c = getctx();
	if (c && c->skb == (__u64)skb) {
		/* The SYN leaves this host or namespace: not ours to judge here;
		 * a veth peer will reopen the context on receive. */
		c->skb = 0;
		return 0;
	}
	struct tuple t = {};
	if (parse(skb, false, &t))
		return 0;
	if ((t.flags & TH_RST) && c && reply_of_ctx(c, &t)) {
		/* Either tcp_send_reset's RST (F_RST too) or one built outside
		 * TCP: a netfilter reject (nf_send_reset) fires no TCP
		 * tracepoint, this transmit is its only trace. */
		c->flags |= F_RST_TX;
		return 0;
	}
	if ((t.flags & (TH_SYN | TH_ACK)) != (TH_SYN | TH_ACK))
		return 0;
	if (c && reply_of_ctx(c, &t)) {
		if (!(c->flags & F_SYNACK)) {
			c->flags |= F_SYNACK;
			c->synack_ts = bpf_ktime_get_ns();
			/* tcp_make_synack owns a normal SYN-ACK by its request
			 * socket and leaves a syncookie SYN-ACK (TCP_SYNACK_COOKIE)
			 * unowned: the request is freed right after. */
			if (!skb->sk)
				c->flags |= F_COOKIE;
		}
		return 0;
	}
	__u32 netns = netns_of_skb(skb);
	struct flowkey k = {};
	flowkey_from(&k, t.daddr, t.dport, t.saddr, t.sport, netns);
	if (!bpf_map_lookup_elem(&flows, &k))
		return 0;
	emit_pkt(EV_SYNACK, netns, &t, 0, 0);
	return 0;
}

/* reply_ctx returns the context when a TCP route lookup with these ports
 * is the SYN-ACK's reply route for the SYN being processed on this CPU. */
static __always_inline struct synctx *reply_ctx(__u8 proto, __u16 sport, __u16 dport)
{
	if (proto != IPPROTO_TCP)
		return 0;
	struct synctx *c = getctx();
	if (!c || !c->skb || sport != c->t.dport || dport != c->t.sport)
		return 0;
	return c;
}

static __always_inline void fib_note(struct synctx *c, const __u8 *src, const __u8 *dst, __s32 err,
				     __u32 table)
{
	if (!addr_eq(dst, c->t.saddr) || !addr_eq(src, c->t.daddr))
		return;
	/* Policy routing walks several tables; the last lookup decides. */
	c->flags |= F_FIB;
	c->fib_err = err;
	c->fib_table = table;
}

SEC("tp_btf/fib_table_lookup")
int BPF_PROG(on_fib4, u32 tb_id, const struct flowi4 *flp, const struct fib_nh_common *nhc,
	     int err)
{
	struct synctx *c = reply_ctx(flp->__fl_common.flowic_proto, bpf_ntohs(flp->uli.ports.sport),
				     bpf_ntohs(flp->uli.ports.dport));
	if (!c)
		return 0;
	__u8 src[16], dst[16];
	v4mapped(src, flp->saddr);
	v4mapped(dst, flp->daddr);
	fib_note(c, src, dst, err, tb_id);
	return 0;
}

SEC("tp_btf/fib6_table_lookup")
int BPF_PROG(on_fib6, const struct net *net, const struct fib6_result *res,
	     struct fib6_table *table, const struct flowi6 *flp)
{
	struct synctx *c = reply_ctx(flp->__fl_common.flowic_proto, bpf_ntohs(flp->uli.ports.sport),
				     bpf_ntohs(flp->uli.ports.dport));
	if (!c)
		return 0;
	__u8 src[16], dst[16];
	BPF_CORE_READ_INTO(&src, flp, saddr);
	BPF_CORE_READ_INTO(&dst, flp, daddr);
	/* Same mapping as the kernel's ip6_rt_type_to_error. */
	__s32 err = 0;
	switch (res->fib6_type) {
	case 6: /* RTN_BLACKHOLE */
		err = -22;
		break;
	case 7: /* RTN_UNREACHABLE (also the null entry: no route) */
		err = -113;
		break;
	case 8: /* RTN_PROHIBIT */
		err = -13;
		break;
	case 9: /* RTN_THROW */
		err = -11;
		break;
	case 10: /* RTN_NAT */
	case 11: /* RTN_XRESOLVE */
		err = -22;
		break;
	}
	fib_note(c, src, dst, err, table ? table->tb6_id : 0);
	return 0;
}

/* __neigh_event_send runs only for a neighbour that is not reachable yet;
 * rc != 0 means the packet was queued (or dropped) waiting for resolution.
 * Seen while a SYN is processed, it is the SYN-ACK waiting for ARP/ND. */
SEC("tp_btf/neigh_event_send_done")
int BPF_PROG(on_neigh_send, struct neighbour *n, int rc)
{
	if (!rc)
		return 0;
	struct synctx *c = getctx();
	if (c && c->skb)
		c->flags |= F_NEIGH_QUEUED;
	return 0;
}

static __always_inline void note_reset(const struct sk_buff *skb, __u32 reason)
{
	struct synctx *c = getctx();
	if (c && c->skb && c->skb == (__u64)skb) {
		c->flags |= F_RST;
		c->rst_reason = reason;
	}
}

/* Since 6.10 tcp_send_reset carries enum sk_rst_reason. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_reset, const struct sock *sk, const struct sk_buff *skb, int reason)
{
	note_reset(skb, reason);
	return 0;
}

/* Before 6.10: (sk, skb) only. The loader picks the variant whose
 * arguments the kernel's tracepoint has (its BTF prototype). */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_reset_noreason, const struct sock *sk, const struct sk_buff *skb)
{
	note_reset(skb, 0);
	return 0;
}

/* TCP's own rejects of a segment (bad checksum, TCP-MD5 / TCP-AO policy)
 * have tracepoints that name the failure more precisely than the drop
 * reason; the listener's SYN passes them inside its window. */
static __always_inline void note_reject(const struct sk_buff *skb, __u32 kind)
{
	struct synctx *c = getctx();
	if (c && c->skb && c->skb == (__u64)skb)
		c->tcp_reject = kind;
}

SEC("tp_btf/tcp_bad_csum")
int BPF_PROG(on_bad_csum, const struct sk_buff *skb)
{
	note_reject(skb, R_BAD_CSUM);
	return 0;
}

SEC("tp_btf/tcp_hash_md5_required")
int BPF_PROG(on_md5_required, const struct sock *sk, const struct sk_buff *skb)
{
	note_reject(skb, R_MD5_REQUIRED);
	return 0;
}

SEC("tp_btf/tcp_hash_md5_unexpected")
int BPF_PROG(on_md5_unexpected, const struct sock *sk, const struct sk_buff *skb)
{
	note_reject(skb, R_MD5_UNEXPECTED);
	return 0;
}

SEC("tp_btf/tcp_hash_md5_mismatch")
int BPF_PROG(on_md5_mismatch, const struct sock *sk, const struct sk_buff *skb)
{
	note_reject(skb, R_MD5_MISMATCH);
	return 0;
}

SEC("tp_btf/tcp_hash_ao_required")
int BPF_PROG(on_ao_required, const struct sock *sk, const struct sk_buff *skb)
{
	note_reject(skb, R_AO_REQUIRED);
	return 0;
}

SEC("tp_btf/tcp_hash_bad_header")
int BPF_PROG(on_hash_bad_header, const struct sock *sk, const struct sk_buff *skb)
{
	note_reject(skb, R_HASH_BAD_HEADER);
	return 0;
}

SEC("tp_btf/tcp_ao_handshake_failure")
int BPF_PROG(on_ao_handshake, const struct sock *sk, const struct sk_buff *skb)
{
	note_reject(skb, R_AO_HANDSHAKE);
	return 0;
}

/* finish closes the context when the SYN skb is freed and emits its event. */
static __always_inline void finish(struct synctx *c, bool dropped, __u32 reason, __u64 location)
{
	count(C_SYN);
	if (dropped) {
		c->flags &= ~F_CONSUMED;
		count(C_SYN_DROPPED);
		count_drop(reason, false);
	} else {
		c->flags |= F_CONSUMED;
	}
	if (c->flags & (F_RST | F_RST_TX))
		count(C_SYN_RST);
	if (c->flags & F_SYNACK)
		count(C_SYN_SYNACK);
	if (c->flags & F_COOKIE)
		count(C_SYN_COOKIE);
	if (c->flags & F_SYNACK_DROP)
		count(C_SYNACK_DROPPED);
	if (!dropped && !(c->flags & (F_SYNACK | F_RST | F_RST_TX | F_SYNACK_DROP))) {
		if ((c->flags & F_FIB) && c->fib_err)
			count(C_SYN_ROUTE_FAIL);
		else
			count(C_SYN_CONSUMED_SILENT);
	}
	if (!sample()) {
		count(C_SYN_UNSAMPLED);
		c->skb = 0;
		return;
	}
	c->flags |= F_SAMPLED;
	if (!dropped && !(c->flags & (F_RST | F_RST_TX))) {
		/* A request may exist: follow its SYN-ACKs and final ACK. */
		struct flowkey k = {};
		flowkey_from(&k, c->t.saddr, c->t.sport, c->t.daddr, c->t.dport, c->netns);
		struct flowval v = {.syn_ts = c->ts};
		bpf_map_update_elem(&flows, &k, &v, BPF_ANY);
	}
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(C_LOST);
		c->skb = 0;
		return;
	}
	e->ts = c->ts;
	e->ts_end = bpf_ktime_get_ns();
	e->location = location;
	e->netns = c->netns;
	e->kind = EV_SYN;
	e->t = c->t;
	e->reason = dropped ? reason : 0;
	e->rst_reason = c->rst_reason;
	e->fib_err = c->fib_err;
	e->fib_table = c->fib_table;
	e->flags = c->flags;
	e->synack_reason = c->synack_reason;
	e->synack_ts = c->synack_ts;
	e->tcp_reject = c->tcp_reject;
	e->nfct = c->nfct;
	e->synack_location = c->synack_loc;
	submit(e);
	c->skb = 0;
}

/* A SYN is processed within one softirq run; a context older than this was
 * abandoned (the SYN went somewhere we do not follow) and its skb address
 * may since belong to another packet. */
#define CTX_MAX_AGE_NS 1000000000ULL

static __always_inline struct synctx *ctx_of(struct sk_buff *skb)
{
	struct synctx *c = getctx();
	if (!c || !c->skb || c->skb != (__u64)skb)
		return 0;
	if (bpf_ktime_get_ns() - c->ts > CTX_MAX_AGE_NS) {
		c->skb = 0;
		return 0;
	}
	return c;
}

/* consume_skb has carried the caller's address since 6.3. */
SEC("tp_btf/consume_skb")
int BPF_PROG(on_consume, struct sk_buff *skb, void *location)
{
	struct synctx *c = ctx_of(skb);
	if (c)
		finish(c, false, 0, (__u64)location);
	return 0;
}

/* Before 6.3: the skb only. */
SEC("tp_btf/consume_skb")
int BPF_PROG(on_consume_noloc, struct sk_buff *skb)
{
	struct synctx *c = ctx_of(skb);
	if (c)
		finish(c, false, 0, 0);
	return 0;
}

/* kfree_skb of a SYN in its window ends it; a SYN-ACK or final ACK of a
 * followed flow becomes an EV_DROP. reason is 0 on kernels without drop
 * reasons (before 5.17), where location (kfree_skb's caller) is what user
 * space names the drop by. */
static __always_inline void on_free(struct sk_buff *skb, __u64 location, __u32 reason)
{
	struct synctx *c = ctx_of(skb);
	if (c) {
		if (bpf_core_field_exists(skb->_nfct)) {
			unsigned long nfct = skb->_nfct;
			c->nfct = NFCT_KNOWN | (nfct & 7);
			if (nfct & ~7UL)
				c->nfct |= NFCT_CT;
		}
		finish(c, true, reason, location);
		return;
	}
	c = getctx();
	struct tuple t = {};
	if (parse(skb, false, &t))
		return;
	__u8 fl = t.flags & (TH_SYN | TH_ACK | TH_RST);
	if (fl == (TH_SYN | TH_ACK)) {
		if (c && reply_of_ctx(c, &t)) {
			c->flags |= F_SYNACK_DROP;
			c->synack_reason = reason;
			c->synack_loc = location;
			count_drop(reason, true);
			return;
		}
		__u32 netns = netns_of_skb(skb);
		if (!match(t.daddr, t.sport, netns))
			return;
		count_drop(reason, true);
		struct flowkey k = {};
		flowkey_from(&k, t.daddr, t.dport, t.saddr, t.sport, netns);
		if (bpf_map_lookup_elem(&flows, &k))
			emit_pkt(EV_DROP, netns, &t, reason, location);
		return;
	}
	if (fl == TH_ACK) {
		/* A final ACK dropped (e.g. TCP_LISTEN_OVERFLOW, 6.15+). */
		__u32 netns = netns_of_skb(skb);
		struct flowkey k = {};
		flowkey_from(&k, t.saddr, t.sport, t.daddr, t.dport, netns);
		if (bpf_map_lookup_elem(&flows, &k))
			emit_pkt(EV_DROP, netns, &t, reason, location);
	}
}

/* kfree_skb's reason exists since 5.17; 6.11 added rx_sk, which is not
 * read, so one program serves every kernel from 5.17 on. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree, struct sk_buff *skb, void *location, int reason)
{
	on_free(skb, (__u64)location, reason);
	return 0;
}

/* Before 5.17: (skb, location) only. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree_noreason, struct sk_buff *skb, void *location)
{
	on_free(skb, (__u64)location, 0);
	return 0;
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(on_rtx_synack, const struct sock *sk, const struct request_sock *req)
{
	struct tuple t = {};
	__u16 fam = BPF_CORE_READ(req, __req_common.skc_family);
	if (fam == AF_INET) {
		v4mapped(t.saddr, BPF_CORE_READ(req, __req_common.skc_rcv_saddr));
		v4mapped(t.daddr, BPF_CORE_READ(req, __req_common.skc_daddr));
	} else if (fam == AF_INET6) {
		BPF_CORE_READ_INTO(&t.saddr, req, __req_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&t.daddr, req, __req_common.skc_v6_daddr);
	} else {
		return 0;
	}
	t.family = fam;
	t.sport = BPF_CORE_READ(req, __req_common.skc_num);
	t.dport = bpf_ntohs(BPF_CORE_READ(req, __req_common.skc_dport));
	t.flags = TH_SYN | TH_ACK;
	__u32 netns = BPF_CORE_READ(req, __req_common.skc_net.net, ns.inum);
	if (!match(t.daddr, t.sport, netns))
		return 0;
	count(C_SYNACK_RETRANS);
	struct flowkey k = {};
	flowkey_from(&k, t.daddr, t.dport, t.saddr, t.sport, netns);
	if (bpf_map_lookup_elem(&flows, &k))
		emit_pkt(EV_RETRANS, netns, &t, 0, 0);
	return 0;
}

/* Keep the event layout in BTF so bpf2go can generate its Go twin. */
const struct event *unused_event __attribute__((unused));

/* Minimal CO-RE type definitions for synscope's tracer.
 *
 * Only the fields the program reads are declared; preserve_access_index makes
 * clang emit relocations so the loader fixes offsets against the running
 * kernel's BTF (/sys/kernel/btf/vmlinux). Nested anonymous unions of the real
 * kernel types are flattened here: CO-RE matches fields by name through
 * anonymous members. This keeps a 3 MB vmlinux.h out of the repository.
 */
#ifndef SYNSCOPE_CORE_H
#define SYNSCOPE_CORE_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum { BPF_ANY = 0 };

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be32 u6_addr32[4];
	} in6_u;
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	possible_net_t nd_net;
	int ifindex;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct request_sock {
	struct sock_common __req_common;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned int len;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	unsigned char *head;
	unsigned char *data;
	unsigned long _nfct; /* CONFIG_NF_CONNTRACK: ct pointer | ctinfo */
} __attribute__((preserve_access_index));

struct flowi_common {
	__u8 flowic_proto;
} __attribute__((preserve_access_index));

union flowi_uli {
	struct {
		__be16 dport;
		__be16 sport;
	} ports;
} __attribute__((preserve_access_index));

struct flowi4 {
	struct flowi_common __fl_common;
	__be32 saddr;
	__be32 daddr;
	union flowi_uli uli;
} __attribute__((preserve_access_index));

struct flowi6 {
	struct flowi_common __fl_common;
	struct in6_addr daddr;
	struct in6_addr saddr;
	union flowi_uli uli;
} __attribute__((preserve_access_index));

struct fib6_table {
	__u32 tb6_id;
} __attribute__((preserve_access_index));

struct fib6_result {
	__u8 fib6_type;
} __attribute__((preserve_access_index));

struct fib_nh_common;
struct neighbour;

#endif

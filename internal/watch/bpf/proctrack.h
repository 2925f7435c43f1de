/* Minimal CO-RE types for proctrack.c: only the fields it reads
 * (preserve_access_index: the loader relocates them against the running
 * kernel's BTF). */
#ifndef SYNSCOPE_PROCTRACK_H
#define SYNSCOPE_PROCTRACK_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u32 u32;
typedef __u64 u64;
typedef _Bool bool;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef signed char __s8;
typedef short __s16;
typedef __u8 u8;
typedef __u16 u16;
typedef __s32 s32;

enum {
	BPF_MAP_TYPE_LRU_HASH = 9,
};
enum { BPF_ANY = 0 };

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
	char comm[16];
} __attribute__((preserve_access_index));

#endif

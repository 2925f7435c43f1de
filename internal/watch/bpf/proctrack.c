// SPDX-License-Identifier: GPL-2.0
/* synscope watch: a short history of process starts and exits.
 *
 * A route deleted by a program that exits at once (`ip` run from a hook
 * script) leaves only the netlink port id of the deletion, which netlink's
 * autobind makes the process id; by the time watch reads /proc the process
 * is gone. These tracepoint programs (tp_btf, no kprobes) keep, per
 * process, its name, its parent's id and name, and when it started and
 * exited, in a bounded LRU map, so watch can still name it and its parent.
 */
#include "proctrack.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define COMM_LEN 16

struct proc {
	__u32 tgid;
	__u32 ppid;
	__u64 start_ns;
	__u64 exit_ns;
	char comm[COMM_LEN];
	char pcomm[COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct proc);
} procs SEC(".maps");

static __always_inline void record(struct task_struct *p, struct task_struct *parent)
{
	struct proc v = {};
	__u32 tgid = p->tgid;

	v.tgid = tgid;
	v.ppid = parent->tgid;
	v.start_ns = bpf_ktime_get_ns();
	bpf_probe_read_kernel_str(v.comm, sizeof(v.comm), p->comm);
	bpf_probe_read_kernel_str(v.pcomm, sizeof(v.pcomm), parent->comm);
	bpf_map_update_elem(&procs, &tgid, &v, BPF_ANY);
}

/* exec: the process's program name is known from here on. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p)
{
	record(p, p->real_parent);
	return 0;
}

/* fork of a new process (not a thread): a child that never execs keeps
 * its parent's name. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid)
		return 0;
	record(child, parent);
	return 0;
}

/* exit of the thread group leader: the process is gone. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;
	struct proc *v;

	if (p->pid != p->tgid)
		return 0;
	v = bpf_map_lookup_elem(&procs, &tgid);
	if (v)
		v->exit_ns = bpf_ktime_get_ns();
	return 0;
}

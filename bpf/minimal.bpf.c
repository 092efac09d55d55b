// SPDX-License-Identifier: GPL-2.0
/* schedtop_min: the smallest sched_ext scheduler the project ships.
 *
 * It proves the lab: a struct_ops map loaded through schedtop's libbpf binding
 * takes over the machine (sched_ext state "enabled", root/ops "schedtop_min")
 * and hands it back when its link is destroyed. Policy: a wakeup that finds an
 * idle CPU goes straight to that CPU's local DSQ; everything else queues FIFO
 * on the global DSQ, which every CPU consumes when its local DSQ is empty.
 */
#define BPF_NO_KFUNC_PROTOTYPES
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "compat.bpf.h"	/* the kfuncs, in the form the running kernel has */

char LICENSE[] SEC("license") = "GPL";

/* counters read from user space through .bss */
u64 nr_local;
u64 nr_global;

SEC("struct_ops/minimal_select_cpu")
s32 BPF_PROG(minimal_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

	if (is_idle) {
		__sync_fetch_and_add(&nr_local, 1);
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL, 0);
	}
	return cpu;
}

SEC("struct_ops/minimal_enqueue")
void BPF_PROG(minimal_enqueue, struct task_struct *p, u64 enq_flags)
{
	__sync_fetch_and_add(&nr_global, 1);
	scx_bpf_dsq_insert(p, SCX_DSQ_GLOBAL, SCX_SLICE_DFL, enq_flags);
}

/* .struct_ops.link: the scheduler lives as long as its bpf_link, so it detaches
 * by itself when the loading process exits. */
SEC(".struct_ops.link")
struct sched_ext_ops minimal_ops = {
	.select_cpu	= (void *)minimal_select_cpu,
	.enqueue	= (void *)minimal_enqueue,
	.timeout_ms	= 5000,	/* watchdog: a task runnable this long without running ejects us */
	.name		= "schedtop_min",
};

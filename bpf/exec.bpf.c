// SPDX-License-Identifier: GPL-2.0
/* schedtop's exec hook for live profiles: which process just started a new program
 * (sched_process_exec) and which thread just renamed itself (task_rename: prctl(PR_SET_NAME),
 * pthread_setname_np, a write to /proc/PID/task/TID/comm). A profile matches on those names,
 * so each record lets it tune the task at once instead of at its next /proc poll.
 *
 * Each hook exists as tp_btf and raw_tp; the loader keeps one set. Only one small ring
 * buffer and three counters: nothing here runs on a scheduling hot path. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "exec.h"

char LICENSE[] SEC("license") = "GPL";

struct exec_bss g = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} exec_events SEC(".maps");

/* keep the record type in BTF for the layout test */
const struct exec_event *unused_exec_event __attribute__((unused));

static __always_inline int emit(__u32 kind, struct task_struct *p, const char *comm)
{
	struct exec_event *e;

	if (kind == EXEC_EXEC)
		__sync_fetch_and_add(&g.nr_exec, 1);
	else
		__sync_fetch_and_add(&g.nr_rename, 1);
	e = bpf_ringbuf_reserve(&exec_events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&g.nr_dropped, 1);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->tgid = BPF_CORE_READ(p, tgid);
	e->tid = BPF_CORE_READ(p, pid);
	e->pad = 0;
	if (comm)
		bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), comm);
	else
		bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), BPF_CORE_READ(p, comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *p)
{
	return emit(EXEC_EXEC, p, 0);
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(handle_raw_exec, struct task_struct *p)
{
	return emit(EXEC_EXEC, p, 0);
}

/* Fires before the kernel copies the new name in: take it from the argument. */
SEC("tp_btf/task_rename")
int BPF_PROG(handle_rename, struct task_struct *p, const char *comm)
{
	return emit(EXEC_RENAME, p, comm);
}

SEC("raw_tp/task_rename")
int BPF_PROG(handle_raw_rename, struct task_struct *p, const char *comm)
{
	return emit(EXEC_RENAME, p, comm);
}

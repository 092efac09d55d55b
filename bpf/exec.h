/* SPDX-License-Identifier: GPL-2.0 */
/* Shared between exec.bpf.c and schedtop/steer/exec_watch.py (ctypes mirrors, checked against
 * this object's BTF by tests/host/test_exec_watch.py). __u32/__u64 only. */
#ifndef __SCHEDTOP_EXEC_H
#define __SCHEDTOP_EXEC_H

#define EXEC_COMM_LEN 16

enum exec_kind {
	EXEC_EXEC = 1,		/* sched_process_exec: a process started a new program */
	EXEC_RENAME = 2,	/* task_rename: a thread changed its name (prctl, pthread_setname_np) */
};

/* One record of the ring buffer "exec_events". */
struct exec_event {
	__u64 ts_ns;		/* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u32 kind;		/* enum exec_kind */
	__u32 tgid;
	__u32 tid;
	__u32 pad;
	char comm[EXEC_COMM_LEN];	/* exec: the new program's name; rename: the new name */
};

/* .bss counters: every hook counts, so a full ring is visible, never silent. */
struct exec_bss {
	__u64 nr_exec;
	__u64 nr_rename;
	__u64 nr_dropped;	/* ring full: the next /proc poll still catches these tasks */
};

#endif /* __SCHEDTOP_EXEC_H */

/* SPDX-License-Identifier: GPL-2.0 */
/* Records shared by bpf/scx.bpf.c and schedtop/scx/protocol.py (ctypes mirror,
 * checked against this object's BTF by tests/unit/test_scx_protocol.py). */
#ifndef __SCHEDTOP_SCX_H
#define __SCHEDTOP_SCX_H

#define SCHEDTOP_COMM_LEN	16
#define SCHEDTOP_CPU_ANY	((__u32)-1)	/* decision: first CPU free */
#define SCHEDTOP_MAX_CPUS	1024
#define SCHEDTOP_EXIT_MSG_LEN	256
#define SCHEDTOP_LAT_BUCKETS	32

/* scx_dispatched.flags */
#define SCHEDTOP_DF_PREEMPT	1	/* head of the CPU's local DSQ, preempt it */

/* scx_task_knob.flags */
#define SCHEDTOP_KF_PINNED	1	/* run only on knob.cpu */
#define SCHEDTOP_KF_LATCRIT	2	/* boosted: straight to the head of its CPU */

/* scx_plan.flags */
#define SCHEDTOP_PF_FIFO	1	/* order by enqueue time, not by vruntime + exec runtime */

/* scx_queued.pid of a record that carries no task: the heartbeat's wake-up */
#define SCHEDTOP_PID_HEARTBEAT	0

/* kernel -> user: one task to decide (ring buffer "queued") */
struct scx_queued {
	__u32 pid;
	__u32 cpu;		/* previous CPU */
	__u32 nr_cpus_allowed;
	__u32 weight;		/* p->scx.weight, 1..10000 */
	__u64 flags;		/* SCX_ENQ_* */
	__u64 exec_runtime;	/* ns on CPU since the last sleep */
	__u64 run_ns;		/* ns on CPU since the previous enqueue */
	__u64 vtime;		/* weighted runtime, ns */
	__u64 gen;		/* enqueue generation */
	__u64 enq_ns;		/* bpf_ktime_get_ns() at enqueue */
	char comm[SCHEDTOP_COMM_LEN];
};

/* user -> kernel: one decision (user ring buffer "dispatched") */
struct scx_dispatched {
	__u32 pid;
	__u32 cpu;		/* CPU or SCHEDTOP_CPU_ANY */
	__u64 slice_ns;
	__u64 deadline;		/* vtime key in the DSQ */
	__u64 gen;		/* must match the task's current gen */
	__u64 flags;		/* SCHEDTOP_DF_* */
};

/* user -> kernel: per-task knobs the BPF fast paths honour (hash "task_knobs") */
struct scx_task_knob {
	__u64 slice_ns;		/* 0: the global slice */
	__u32 cpu;
	__u32 flags;		/* SCHEDTOP_KF_* */
};

/*
 * user -> kernel: a plan the policy published for one task (hash "task_plans").
 * While it holds, BPF queues the task itself at each enqueue, keyed as the
 * policy would key it, and the task does not cross to user space.
 */
struct scx_plan {
	__u64 slice_ns;
	__s64 lag_ns;		/* added to the deadline: < 0 runs sooner, > 0 later */
	__u64 expires_ns;	/* bpf_ktime_get_ns() after which it crosses once again */
	__u32 flags;		/* SCHEDTOP_PF_* */
	__u32 pad;
};

/* Counters, in .bss; the loop adds its own (user-space queue, page faults). */
struct scx_counters {
	__u64 nr_queued;		/* records sent to user space */
	__u64 nr_scheduled;		/* decisions applied */
	__u64 nr_user_dispatches;	/* to the CPU user space asked for */
	__u64 nr_kernel_dispatches;	/* decided in BPF (idle CPU, kthreads, own threads) */
	__u64 nr_cancelled;		/* stale generation */
	__u64 nr_bounced;		/* CPU not allowed: went to the shared DSQ */
	__u64 nr_failed;		/* task gone before its decision arrived */
	__u64 nr_congested;		/* ring full: shared DSQ without user space */
	__u64 nr_heartbeats;		/* timer kicks of a quiet loop */
	__u64 nr_self;			/* own threads dispatched without the loop */
	__u64 nr_preempt;		/* latency-critical preemptions */
	__u64 loop_last_run_ns;	/* when the loop thread last got a CPU */
	__u64 stint_ns;		/* CPU time of finished stints of scheduled tasks */
	__u64 nr_stints;	/* their number: stint_ns / nr_stints is the observed timeslice */
	__u64 nr_latcrit;	/* boosted (KF_LATCRIT) tasks put at the head of their CPU by BPF */
	__u64 nr_planned;	/* enqueues BPF queued itself from the task's plan */
};

/* ops.exit, copied to .bss for the loader: why the kernel let us go */
struct scx_exit_rec {
	__s64 kind;		/* enum scx_exit_kind; 0 while running */
	__s64 exit_code;
	char reason[128];
	char msg[SCHEDTOP_EXIT_MSG_LEN];
};

#endif /* __SCHEDTOP_SCX_H */

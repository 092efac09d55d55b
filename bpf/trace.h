/* SPDX-License-Identifier: GPL-2.0 */
/* Shared between trace.bpf.c and schedtop/bpf/trace_events.py (ctypes mirrors, checked
 * against this object's BTF by tests/host/test_bpf_layout.py). __u32/__u64 only. */
#ifndef __SCHEDTOP_TRACE_H
#define __SCHEDTOP_TRACE_H

#define TASK_COMM_LEN 16
#define MAX_CPUS 512			/* power of two: indexes are masked */

/* Latency histograms are log2 with 2^SUB_BITS linear sub-buckets per power of two, on ns:
 * slot v for v < 2^SUB; else ((msb - SUB + 1) << SUB) + the SUB bits below the msb.
 * Values past 2^LAT_MAX_MSB ns (~34 s) land in the last slot. */
#define LAT_MAX_MSB 35
#define CPU_SUB_BITS 3			/* per CPU: 8 sub-buckets, <= 12.5% wide */
#define CPU_SLOTS ((LAT_MAX_MSB - CPU_SUB_BITS + 2) << CPU_SUB_BITS)
#define TASK_SUB_BITS 2			/* per task: 4 sub-buckets, <= 25% wide */
#define TASK_SLOTS ((LAT_MAX_MSB - TASK_SUB_BITS + 2) << TASK_SUB_BITS)

enum event_type {
	EV_SWITCH = 1,
	EV_WAKEUP = 2,
	EV_WAKEUP_NEW = 3,
	EV_MIGRATE = 4,
	EV_WAKING = 5,		/* sched_waking: the wakeup starts (on the waker's CPU) */
};

/* One sampled scheduling event (ring buffer "events"). */
struct event {
	__u64 ts_ns;		/* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 prev_state;	/* switch: prev's task state */
	__u64 lat_ns;		/* switch: next's run-queue latency (0 if unknown) */
	__u32 type;		/* enum event_type */
	__u32 cpu;		/* CPU the event fired on */
	__u32 pid;		/* switch: prev tid; others: the task's tid */
	__u32 tgid;
	__u32 prio;		/* kernel prio of pid */
	__u32 next_pid;		/* switch: next tid */
	__u32 next_tgid;
	__u32 next_prio;
	__u32 target_cpu;	/* wakeup: the task's CPU; migrate: destination */
	__u32 orig_cpu;		/* migrate: source CPU */
	__u8 comm[TASK_COMM_LEN];	/* pid's comm */
	__u8 next_comm[TASK_COMM_LEN];	/* switch: next's comm */
};

/* Per-CPU counters and latency histogram of tasks switched in on that CPU (percpu array). */
struct cpu_stat {
	__u64 lat_slots[CPU_SLOTS];
	__u64 lat_count;
	__u64 lat_sum_ns;
	__u64 lat_max_ns;
	__u64 switches;
	__u64 preempted;	/* prev switched out while still runnable */
	__u64 voluntary;	/* prev blocked */
	__u64 wakeups;		/* wakeups handled on this CPU */
	__u64 migrations;	/* queued tasks moved away from this CPU */
};

/* What the task iterator emits for each task seen since attach (cumulative). */
struct task_rec {
	__u32 pid;		/* tid */
	__u32 tgid;
	__u32 queued_cpu;	/* CPU + 1 whose run queue counts it now; 0: not runnable */
	__u32 pad;
	__u64 oncpu_ns;		/* time on CPU */
	__u64 stints;		/* times it ran (switched in then out): slices actually used */
	__u64 preempted;	/* switched out while runnable */
	__u64 voluntary;	/* switched out blocking */
	__u64 lat_count;
	__u64 lat_sum_ns;
	__u64 lat_max_ns;
	__u32 lat_slots[TASK_SLOTS];
};

/* .bss: read by user space through the mmap'd section. */
struct trace_bss {
	__s32 nr_running[MAX_CPUS];	/* exact runnable count per CPU (running + queued) */
	__u32 curr_pid[MAX_CPUS];	/* running tid per CPU (0: idle) */
	__u64 events;			/* events written to the ring buffer */
	__u64 dropped;			/* events lost: ring buffer full */
	__u64 untracked;		/* tasks without storage (allocation failed) */
};

#endif /* __SCHEDTOP_TRACE_H */

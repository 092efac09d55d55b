// SPDX-License-Identifier: GPL-2.0
/*
 * schedtop's sched_ext scheduler: the BPF half. The policy lives in Python.
 *
 *   enqueue -> ring buffer "queued" -> Python loop (policy.decide) ->
 *   user ring buffer "dispatched" -> ops.dispatch -> vtime DSQs -> CPUs
 *
 * The fast path stays here: a waking task that finds an idle CPU in
 * select_cpu is inserted straight into that CPU's local DSQ and never
 * crosses to user space. So does a task the policy published a plan for
 * (map "task_plans": its slice, a deadline offset, until when): BPF queues
 * it itself, keyed as the policy keys the tasks it decides, so both kinds
 * share one order. The vruntime both keys use is kept here (task_ctx.vtime,
 * clamped to one slice behind vclock), not in Python.
 *
 * Why the scheduler cannot schedule itself out (by design, not by luck):
 *  1. Every thread of the scheduler's process (own_tgid) bypasses user space.
 *     The loop thread (live.loop_tid) is inserted at the head of its CPU's
 *     local DSQ and preempts whatever runs there; the process's other
 *     threads (stats writer, control reader, GC holders of the GIL, anyone
 *     holding its mmap lock during a page fault) go to SELF_DSQ, which
 *     ops.dispatch consumes before any task user space decided. So nothing
 *     the loop can wait on is itself waiting for the loop.
 *  2. Kernel threads (what a page fault or reclaim in the loop may wait
 *     on, and the watchdog's own work item) are dispatched here: per-CPU
 *     ones to their CPU, the rest to the front of the shared DSQ.
 *  3. If the ring to user space is full, the task goes to the shared vtime
 *     DSQ from BPF (counted as congested): a slow loop degrades to a plain
 *     vtime scheduler instead of losing tasks.
 *  4. A heartbeat timer wakes the loop if tasks wait and it has not run.
 *  5. If all of that still fails (the loop is SIGSTOPped or dead), the
 *     struct_ops link dies with the process and the watchdog (timeout_ms,
 *     set explicitly by the loader) ejects us; the kernel falls back to
 *     the fair class and ops.exit records why for Python to read.
 *
 * The kfuncs come from compat.bpf.h, which picks each one's form for the
 * running kernel (6.12 .. 7.3); vmlinux.h's own kfunc prototypes are not used.
 */
#define BPF_NO_KFUNC_PROTOTYPES
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "compat.bpf.h"
#include "scx.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_KSWAPD	0x00020000
#define PF_KCOMPACTD	0x00010000
#define PF_KTHREAD	0x00200000

/* DSQ ids: 0..nr_cpu_ids-1 are per-CPU vtime DSQs (user decisions for a CPU). */
#define SHARED_DSQ	SCHEDTOP_MAX_CPUS	/* vtime: first CPU free */
#define SELF_DSQ	(SCHEDTOP_MAX_CPUS + 1)	/* FIFO: the scheduler's own threads */

#define RING_RECORDS	4096

/* --- settings and state shared with Python -------------------------------- */
const volatile u32 own_tgid;			/* the scheduler's process */
const volatile u64 default_slice_ns = 5000000;
const volatile u64 heartbeat_ns = 100000000;	/* 100 ms */
/*
 * A woken loop preempts its CPU (opt-in): lowest round-trip latency, but every
 * wake-up chops someone's slice. Off by default, as in rustland: the loop goes
 * first to an idle CPU, else first when any CPU's slice ends (SELF_DSQ).
 */
const volatile bool loop_preempt = false;

/* Live knobs, written by Python through the mmap of .bss. */
struct {
	u64 slice_ns;		/* global slice; 0 = default_slice_ns */
	u32 loop_tid;		/* the thread running the policy loop */
	u32 user_pending;	/* tasks the loop holds but has not sent back */
} live;

struct scx_counters counters;
u64 lat_hist[SCHEDTOP_LAT_BUCKETS];
u64 vclock;	/* the largest vruntime a task started running with */	/* enqueue -> user dispatch, log2(us) buckets */
struct scx_exit_rec exit_rec;
static u32 nr_cpu_ids;
/* Set when we preempt a CPU for the loop or a boosted task; its victim is requeued. */
static u32 cpu_preempted[SCHEDTOP_MAX_CPUS];

/*
 * &cpu_preempted[cpu], or NULL. One register is both checked and used as the
 * index (the barrier keeps clang from checking a copy): 6.18's verifier lost the
 * bound of a copy checked before the index was taken ("unbounded memory access").
 */
static __always_inline u32 *preempted_slot(s32 cpu)
{
	u32 idx = (u32)cpu;	/* a negative cpu fails the one check below */

	barrier_var(idx);
	if (idx >= SCHEDTOP_MAX_CPUS)
		return NULL;
	return &cpu_preempted[idx];
}

static __always_inline void mark_preempt(s32 cpu)
{
	u32 *slot = preempted_slot(cpu);

	if (slot)
		*slot = 1;
}
/* Keep the record types in BTF: the Python mirrors are checked against them. */
struct scx_queued *_btf_queued __attribute__((unused));
struct scx_dispatched *_btf_dispatched __attribute__((unused));
struct scx_plan *_btf_plan __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_RECORDS * sizeof(struct scx_queued));
} queued SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, RING_RECORDS * sizeof(struct scx_dispatched));
} dispatched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct scx_task_knob);
} task_knobs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, struct scx_plan);
} task_plans SEC(".maps");

struct task_ctx {
	u64 gen;		/* bumped at every trip to user space */
	u64 start_ns;		/* when it last got a CPU */
	u64 exec_runtime;	/* since it last woke */
	u64 run_ns;		/* since its last trip to user space */
	u64 vtime;		/* weighted runtime */
	u64 deadline;		/* last key user space gave it */
	u64 enq_ns;		/* when it was last sent to user space */
	u64 slice_start;	/* slice it had when it last got a CPU */
	u64 last_used;		/* ns it ran in that stint */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctxs SEC(".maps");

struct heartbeat {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct heartbeat);
} heartbeat SEC(".maps");

/* --- helpers ---------------------------------------------------------------- */

static __always_inline u64 slice_now(void)
{
	u64 s = live.slice_ns;

	return s ? s : default_slice_ns;
}

static __always_inline bool is_own(const struct task_struct *p)
{
	return p->tgid == own_tgid;
}

static __always_inline bool is_loop(const struct task_struct *p)
{
	return live.loop_tid && p->pid == live.loop_tid;
}

/*
 * What a fault or reclaim in the loop may wait on, and the kernel's own
 * housekeeping (the sched_ext watchdog's work item runs in an unbound
 * kworker): never route kernel threads via the loop.
 */
static __always_inline bool is_kernel_critical(const struct task_struct *p)
{
	return p->flags & (PF_KTHREAD | PF_KSWAPD | PF_KCOMPACTD);
}

static __always_inline struct task_ctx *ctx_of(struct task_struct *p)
{
	return bpf_task_storage_get(&task_ctxs, p, 0, 0);
}

static __always_inline void insert_vtime(struct task_struct *p, u64 dsq, u64 slice, u64 vtime,
					 u64 enq_flags)
{
	scx_bpf_dsq_insert_vtime(p, dsq, slice, vtime, enq_flags);
}

/*
 * May @p be put on @cpu's local DSQ right now? LOCAL_ON to a CPU outside the
 * affinity, or moving a migration-disabled task, is a scheduler error that
 * would eject us, so every LOCAL_ON goes through here.
 */
static __always_inline bool local_ok(struct task_struct *p, s32 cpu)
{
	if (cpu < 0 || (u32)cpu >= nr_cpu_ids || !bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
		return false;
	if (p->migration_disabled && cpu != scx_bpf_task_cpu(p))
		return false;
	return true;
}

static __always_inline struct scx_task_knob *knob_of(const struct task_struct *p)
{
	u32 pid = p->pid;	/* map keys must be on the stack, not in the task */

	return bpf_map_lookup_elem(&task_knobs, &pid);
}

static __always_inline u64 knob_slice(const struct scx_task_knob *k)
{
	return k && k->slice_ns ? k->slice_ns : slice_now();
}

/* A sleeper comes back with at most one slice of credit (the policies' rule too). */
static __always_inline void clamp_vtime(struct task_ctx *tctx)
{
	u64 floor = vclock > slice_now() ? vclock - slice_now() : 0;

	if (tctx->vtime < floor)
		tctx->vtime = floor;
}

/* --- ops ------------------------------------------------------------------- */

SEC("struct_ops/schedtop_select_cpu")
s32 BPF_PROG(schedtop_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	struct scx_task_knob *k = knob_of(p);
	bool idle = false;
	s32 cpu;

	if (k && (k->flags & SCHEDTOP_KF_PINNED)) {
		cpu = k->cpu;
		if (!local_ok(p, cpu))
			return prev_cpu;
		if (scx_bpf_test_and_clear_cpu_idle(cpu)) {
			scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, knob_slice(k), 0);
			__sync_fetch_and_add(&counters.nr_kernel_dispatches, 1);
		}
		return cpu;
	}

	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &idle);
	/*
	 * A boosted task with no idle CPU to go to wakes on its waker's CPU:
	 * ops.enqueue then preempts the CPU it runs on, which needs no IPI and
	 * no response from a busy remote CPU (measured in the guest: most of the
	 * slowest 1% of boosted wake-ups were remote). From an interrupt on the
	 * task's own CPU (its timer) this is prev_cpu anyway.
	 */
	if (!idle && k && (k->flags & SCHEDTOP_KF_LATCRIT)) {
		s32 this_cpu = bpf_get_smp_processor_id();

		if (local_ok(p, this_cpu))
			return this_cpu;
	}
	/*
	 * Idle CPU: run there now, unless decided tasks already wait for it
	 * (they were first; let them go and queue this one behind them).
	 */
	if (idle && (is_own(p) || (!scx_bpf_dsq_nr_queued(SHARED_DSQ) &&
				    !scx_bpf_dsq_nr_queued(cpu)))) {
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, knob_slice(k), 0);
		if (is_own(p))
			__sync_fetch_and_add(&counters.nr_self, 1);
		else
			__sync_fetch_and_add(&counters.nr_kernel_dispatches, 1);
	}
	return cpu;
}

static void queue_to_user(struct task_struct *p, u64 enq_flags)
{
	struct task_ctx *tctx = ctx_of(p);
	struct scx_queued *rec;

	if (!tctx) {
		/* No context (should not happen): never strand it. */
		insert_vtime(p, SHARED_DSQ, slice_now(), 0, enq_flags);
		__sync_fetch_and_add(&counters.nr_kernel_dispatches, 1);
		return;
	}
	rec = bpf_ringbuf_reserve(&queued, sizeof(*rec), 0);
	if (!rec) {
		/* Congested: the loop is behind. Keep the task's last order key. */
		insert_vtime(p, SHARED_DSQ, slice_now(), tctx->deadline, enq_flags);
		__sync_fetch_and_add(&counters.nr_congested, 1);
		scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_IDLE);
		return;
	}
	clamp_vtime(tctx);
	rec->pid = p->pid;
	rec->cpu = scx_bpf_task_cpu(p);
	rec->nr_cpus_allowed = p->nr_cpus_allowed;
	rec->weight = p->scx.weight;
	rec->flags = enq_flags;
	rec->exec_runtime = tctx->exec_runtime;
	rec->run_ns = tctx->run_ns;
	rec->vtime = tctx->vtime;
	rec->gen = ++tctx->gen;
	rec->enq_ns = tctx->enq_ns = bpf_ktime_get_ns();
	__builtin_memcpy(rec->comm, p->comm, sizeof(rec->comm));
	tctx->run_ns = 0;
	bpf_ringbuf_submit(rec, 0);
	__sync_fetch_and_add(&counters.nr_queued, 1);
}

/*
 * The task we just preempted for the loop (or a boosted task) goes back to its
 * CPU with the rest of its slice, without a round trip: otherwise every loop
 * wake-up would send its victim to user space, which wakes the loop again.
 * The policy sees it again when its slice is used up.
 */
static __always_inline bool requeue_preempted(struct task_struct *p, struct scx_task_knob *k, s32 cpu,
					      u64 enq_flags)
{
	u32 *slot = preempted_slot(cpu);
	struct task_ctx *tctx;
	u64 left;

	if ((enq_flags & SCX_ENQ_WAKEUP) || !slot || !*slot)
		return false;
	*slot = 0;	/* one victim per preemption */
	tctx = ctx_of(p);
	if (!tctx || !tctx->slice_start || tctx->last_used >= tctx->slice_start)
		return false;
	if (k && (k->flags & SCHEDTOP_KF_PINNED) && k->cpu != cpu)
		return false;
	if (!local_ok(p, cpu))
		return false;
	left = tctx->slice_start - tctx->last_used;
	tctx->slice_start = 0;	/* once per stint */
	scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, left, enq_flags);
	__sync_fetch_and_add(&counters.nr_kernel_dispatches, 1);
	return true;
}

/*
 * Where the kernel has no callable scx_bpf_kick_cpu (compat.bpf.h), an idle CPU
 * would not wake for a task queued in a DSQ: put the task on that CPU's local
 * DSQ instead, which wakes it. @cpu < 0: any idle CPU the task may use.
 */
static __always_inline bool wake_idle_directly(struct task_struct *p, s32 cpu, u64 slice)
{
	if (cpu >= 0) {
		if (!scx_bpf_test_and_clear_cpu_idle(cpu))
			return false;
	} else {
		cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
	}
	if (cpu < 0 || !local_ok(p, cpu))
		return false;
	return scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, slice, 0);
}

/*
 * The task's plan, if the policy published one that still holds: queue it here,
 * keyed the way the policy keys what it decides (vruntime + the exec runtime
 * since it last slept, capped at 100 slices; or the enqueue time), plus the
 * plan's offset. Past its expiry the task crosses once, so the policy sees it
 * (its weight, its behaviour) and plans it again.
 */
static __always_inline bool enqueue_planned(struct task_struct *p, u64 enq_flags)
{
	u32 pid = p->pid;
	struct scx_plan *plan = bpf_map_lookup_elem(&task_plans, &pid);
	struct task_ctx *tctx;
	u64 now, key, cap, run, slice;
	s64 lag;
	s32 cpu;

	if (!plan)
		return false;
	now = bpf_ktime_get_ns();
	if (now >= plan->expires_ns)
		return false;
	tctx = ctx_of(p);
	if (!tctx)
		return false;
	slice = plan->slice_ns ?: slice_now();
	if (plan->flags & SCHEDTOP_PF_FIFO) {
		key = now;
	} else {
		clamp_vtime(tctx);
		cap = 100 * slice_now();
		run = tctx->exec_runtime < cap ? tctx->exec_runtime : cap;
		key = tctx->vtime + run;
	}
	lag = plan->lag_ns;
	if (lag < 0 && key < (u64)-lag)
		key = 0;
	else
		key += lag;
	tctx->deadline = key;
	tctx->run_ns = 0;
	__sync_fetch_and_add(&counters.nr_planned, 1);
	if (!compat_can_kick() && wake_idle_directly(p, -1, slice))
		return true;
	insert_vtime(p, SHARED_DSQ, slice, key, enq_flags);
	cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
	if (cpu >= 0)
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
	return true;
}

SEC("struct_ops/schedtop_enqueue")
void BPF_PROG(schedtop_enqueue, struct task_struct *p, u64 enq_flags)
{
	s32 cpu = scx_bpf_task_cpu(p);
	struct scx_task_knob *k;

	if (is_own(p)) {
		/* (1) above: the scheduler's threads never wait on the scheduler. */
		__sync_fetch_and_add(&counters.nr_self, 1);
		/*
		 * The loop just woke (records or a heartbeat wait): run it now at the
		 * head of its CPU. When it yields or is preempted instead, it goes to
		 * SELF_DSQ so ops.dispatch first drains the decisions it just made.
		 */
		if (is_loop(p) && loop_preempt && (enq_flags & SCX_ENQ_WAKEUP) && local_ok(p, cpu)) {
			mark_preempt(cpu);
			scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, slice_now(),
					   enq_flags | SCX_ENQ_HEAD | SCX_ENQ_PREEMPT);
			scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
			return;
		}
		scx_bpf_dsq_insert(p, SELF_DSQ, slice_now(), enq_flags);
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		return;
	}

	if (is_kernel_critical(p)) {
		/* (2) above: per-CPU kthreads to their CPU, the others to the front of the shared DSQ. */
		if (p->nr_cpus_allowed == 1 && local_ok(p, cpu))
			scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, slice_now(), enq_flags);
		else
			insert_vtime(p, SHARED_DSQ, slice_now(), 0, enq_flags);
		__sync_fetch_and_add(&counters.nr_kernel_dispatches, 1);
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		return;
	}

	k = knob_of(p);
	if (requeue_preempted(p, k, cpu, enq_flags))
		return;
	if (k && (k->flags & SCHEDTOP_KF_LATCRIT)) {
		/* Boosted from the TUI/CLI: head of its CPU now, no round trip. */
		if (k->flags & SCHEDTOP_KF_PINNED)
			cpu = k->cpu;
		if (local_ok(p, cpu)) {
			mark_preempt(cpu);
			/* HEAD: the preempted CPU must pick this task, not what already waits there. */
			scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, knob_slice(k),
					   enq_flags | SCX_ENQ_HEAD | SCX_ENQ_PREEMPT);
			__sync_fetch_and_add(&counters.nr_kernel_dispatches, 1);
			__sync_fetch_and_add(&counters.nr_preempt, 1);
			__sync_fetch_and_add(&counters.nr_latcrit, 1);
			/*
			 * ENQ_PREEMPT already rescheduled that CPU. Kick only a remote
			 * one: a kick of this CPU is a self-IPI (irq_work) for nothing
			 * (the guest trace showed it still pending across 4 ms vCPU gaps).
			 */
			if (cpu != bpf_get_smp_processor_id())
				scx_bpf_kick_cpu(cpu, SCX_KICK_PREEMPT);
			return;
		}
	}

	/* A task with a knob from the TUI/CLI is decided per event: the knobs apply there. */
	if (!k && enqueue_planned(p, enq_flags))
		return;
	queue_to_user(p, enq_flags);
}

static __always_inline void record_latency(u64 ns)
{
	u64 us = ns / 1000;
	u32 b = 0;

	/* log2 of µs: bucket b holds [2^(b-1), 2^b) µs, bucket 0 under 1 µs */
	while (us && b < SCHEDTOP_LAT_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	if (b < SCHEDTOP_LAT_BUCKETS)
		__sync_fetch_and_add(&lat_hist[b], 1);
}

/* One decision from user space; returns 1 to stop the drain. */
static long apply_decision(struct bpf_dynptr *dynptr, void *ctx)
{
	const struct scx_dispatched *d;
	struct task_struct *p;
	struct task_ctx *tctx;
	u64 dsq = SHARED_DSQ;
	s32 cpu;

	d = bpf_dynptr_data(dynptr, 0, sizeof(*d));
	if (!d)
		return 0;
	p = bpf_task_from_pid(d->pid);
	if (!p) {
		__sync_fetch_and_add(&counters.nr_failed, 1);
		goto out;
	}
	tctx = ctx_of(p);
	if (!tctx || tctx->gen != d->gen) {
		/* Stale: the task moved on (dequeued, re-queued) since. */
		__sync_fetch_and_add(&counters.nr_cancelled, 1);
		goto release;
	}
	tctx->deadline = d->deadline;
	cpu = d->cpu == SCHEDTOP_CPU_ANY ? -1 : (s32)d->cpu;

	if (d->flags & SCHEDTOP_DF_PREEMPT) {
		if (cpu < 0)
			cpu = scx_bpf_task_cpu(p);
		if (local_ok(p, cpu)) {
			mark_preempt(cpu);
			scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, d->slice_ns, SCX_ENQ_PREEMPT);
			scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
			__sync_fetch_and_add(&counters.nr_preempt, 1);
			__sync_fetch_and_add(&counters.nr_user_dispatches, 1);
			goto done;
		}
		cpu = -1;
	}
	if (cpu >= 0) {
		if (local_ok(p, cpu)) {
			dsq = cpu;
		} else {
			__sync_fetch_and_add(&counters.nr_bounced, 1);
			cpu = -1;
		}
	}
	if (!compat_can_kick() && wake_idle_directly(p, cpu, d->slice_ns)) {
		__sync_fetch_and_add(&counters.nr_user_dispatches, 1);
		goto done;
	}
	insert_vtime(p, dsq, d->slice_ns, d->deadline, 0);
	__sync_fetch_and_add(&counters.nr_user_dispatches, 1);
	if (cpu < 0)
		cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
	if (cpu >= 0)
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
done:
	__sync_fetch_and_add(&counters.nr_scheduled, 1);
	record_latency(bpf_ktime_get_ns() - tctx->enq_ns);
release:
	bpf_task_release(p);
out:
	/* dispatch_max_batch bounds inserts per ops.dispatch: stop before overflow. */
	return scx_bpf_dispatch_nr_slots() ? 0 : 1;
}

/* Tasks sent to user space and not decided yet (approximate: counters race). */
static __always_inline bool user_has_work(void)
{
	return live.user_pending || bpf_ringbuf_query(&queued, BPF_RB_AVAIL_DATA) ||
	       counters.nr_queued > counters.nr_scheduled + counters.nr_cancelled + counters.nr_failed;
}

SEC("struct_ops/schedtop_dispatch")
void BPF_PROG(schedtop_dispatch, s32 cpu, struct task_struct *prev)
{
	if (scx_bpf_dispatch_nr_slots())
		bpf_user_ringbuf_drain(&dispatched, apply_decision, NULL, 0);

	if (scx_bpf_dsq_move_to_local(SELF_DSQ, 0))
		return;
	if (scx_bpf_dsq_move_to_local(cpu, 0))
		return;
	if (scx_bpf_dsq_move_to_local(SHARED_DSQ, 0))
		return;
	/*
	 * Nothing else wants this CPU: let the previous task go on. Not the
	 * scheduler's own threads: when the loop yields it is to let this
	 * dispatch drain its decisions, not to be handed the CPU right back.
	 * Nor while tasks wait for a decision: the slice is the policy's, and a
	 * task that ran out of it takes its turn through the loop like the rest.
	 */
	if (prev && (prev->scx.flags & SCX_TASK_QUEUED) && !is_own(prev) && !user_has_work())
		scx_bpf_task_set_slice(prev, slice_now());
}

SEC("struct_ops/schedtop_runnable")
void BPF_PROG(schedtop_runnable, struct task_struct *p, u64 enq_flags)
{
	struct task_ctx *tctx = ctx_of(p);

	if (tctx)
		tctx->exec_runtime = 0;
}

SEC("struct_ops/schedtop_running")
void BPF_PROG(schedtop_running, struct task_struct *p)
{
	struct task_ctx *tctx;
	u64 now = bpf_ktime_get_ns();

	if (is_loop(p))
		counters.loop_last_run_ns = now;
	tctx = ctx_of(p);
	if (tctx) {
		tctx->start_ns = now;
		tctx->slice_start = p->scx.slice;
		if (!is_own(p) && tctx->vtime > vclock)
			vclock = tctx->vtime;
	}
}

SEC("struct_ops/schedtop_stopping")
void BPF_PROG(schedtop_stopping, struct task_struct *p, bool runnable)
{
	struct task_ctx *tctx = ctx_of(p);
	u64 delta;

	if (!tctx || !tctx->start_ns)
		return;
	delta = bpf_ktime_get_ns() - tctx->start_ns;
	tctx->last_used = delta;
	if (!is_own(p)) {
		__sync_fetch_and_add(&counters.stint_ns, delta);
		__sync_fetch_and_add(&counters.nr_stints, 1);
	}
	tctx->exec_runtime += delta;
	tctx->run_ns += delta;
	tctx->vtime += delta * 100 / (p->scx.weight ?: 100);
}

SEC("struct_ops/schedtop_enable")
void BPF_PROG(schedtop_enable, struct task_struct *p)
{
	scx_bpf_task_set_slice(p, slice_now());
}

SEC("struct_ops/schedtop_init_task")
s32 BPF_PROG(schedtop_init_task, struct task_struct *p, struct scx_init_task_args *args)
{
	if (!bpf_task_storage_get(&task_ctxs, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return -12; /* -ENOMEM */
	return 0;
}

SEC("struct_ops/schedtop_exit_task")
void BPF_PROG(schedtop_exit_task, struct task_struct *p, struct scx_exit_task_args *args)
{
	u32 pid = p->pid;

	bpf_map_delete_elem(&task_plans, &pid);	/* a reused pid starts unplanned */
}

/* (4) above: wake a loop that has tasks waiting but has not run for a beat. */
static int heartbeat_fn(void *map, int *key, struct bpf_timer *timer)
{
	u64 now = bpf_ktime_get_ns();
	struct scx_queued *rec;
	struct task_struct *p;

	if (now - counters.loop_last_run_ns >= heartbeat_ns &&
	    (live.user_pending || bpf_ringbuf_query(&queued, BPF_RB_AVAIL_DATA))) {
		rec = bpf_ringbuf_reserve(&queued, sizeof(*rec), 0);
		if (rec) {
			__builtin_memset(rec, 0, sizeof(*rec));
			rec->pid = SCHEDTOP_PID_HEARTBEAT;
			bpf_ringbuf_submit(rec, BPF_RB_FORCE_WAKEUP);
		}
		if (live.loop_tid) {
			p = bpf_task_from_pid(live.loop_tid);
			if (p) {
				scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_IDLE);
				bpf_task_release(p);
			}
		}
		__sync_fetch_and_add(&counters.nr_heartbeats, 1);
	}
	bpf_timer_start(timer, heartbeat_ns, 0);
	return 0;
}

SEC("struct_ops.s/schedtop_init")
s32 BPF_PROG(schedtop_init)
{
	struct bpf_timer *timer;
	u32 key = 0, cpu;
	s32 err;

	nr_cpu_ids = scx_bpf_nr_cpu_ids();
	if (nr_cpu_ids > SCHEDTOP_MAX_CPUS)
		nr_cpu_ids = SCHEDTOP_MAX_CPUS;
	bpf_for(cpu, 0, nr_cpu_ids) {
		err = scx_bpf_create_dsq(cpu, -1);
		if (err)
			return err;
	}
	err = scx_bpf_create_dsq(SHARED_DSQ, -1);
	if (err)
		return err;
	err = scx_bpf_create_dsq(SELF_DSQ, -1);
	if (err)
		return err;

	timer = bpf_map_lookup_elem(&heartbeat, &key);
	if (!timer)
		return -2; /* -ENOENT */
	bpf_timer_init(timer, &heartbeat, 1 /* CLOCK_MONOTONIC */);
	bpf_timer_set_callback(timer, heartbeat_fn);
	return bpf_timer_start(timer, heartbeat_ns, 0);
}

SEC("struct_ops/schedtop_exit")
void BPF_PROG(schedtop_exit, struct scx_exit_info *ei)
{
	/* (5) above: the kernel's verdict, kept for the loader to print. */
	bpf_probe_read_kernel_str(exit_rec.reason, sizeof(exit_rec.reason), ei->reason);
	bpf_probe_read_kernel_str(exit_rec.msg, sizeof(exit_rec.msg), ei->msg);
	exit_rec.exit_code = ei->exit_code;
	asm volatile("" ::: "memory"); /* kind last: Python polls it */
	exit_rec.kind = ei->kind;
}

/* flags (full/partial) and timeout_ms are written by the loader before load. */
SEC(".struct_ops.link")
struct sched_ext_ops schedtop_ops = {
	.select_cpu		= (void *)schedtop_select_cpu,
	.enqueue		= (void *)schedtop_enqueue,
	.dispatch		= (void *)schedtop_dispatch,
	.runnable		= (void *)schedtop_runnable,
	.running		= (void *)schedtop_running,
	.stopping		= (void *)schedtop_stopping,
	.enable			= (void *)schedtop_enable,
	.init_task		= (void *)schedtop_init_task,
	.exit_task		= (void *)schedtop_exit_task,
	.init			= (void *)schedtop_init,
	.exit			= (void *)schedtop_exit,
	.dispatch_max_batch	= 64,
	.timeout_ms		= 5000,
	.flags			= 0,
	.name			= "schedtop",
};

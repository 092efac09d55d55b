// SPDX-License-Identifier: GPL-2.0
/* schedtop's tracing tier: run-queue latency (the runqlat method, preemption included),
 * exact per-CPU run-queue depth, per-task on-CPU accounting and a sampled event stream.
 *
 * Every handler exists twice: tp_btf (task local storage, fast) and raw_tp (a pid-keyed
 * hash map, for kernels whose tp_btf targets are missing). The loader turns autoload off
 * for the set it does not use. Task state is read with CO-RE (__state, or state before 5.14).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "trace.h"

char LICENSE[] SEC("license") = "GPL";

#define TASK_RUNNING 0
#define TASK_DEAD 0x80
#define BPF_F_CREATE BPF_LOCAL_STORAGE_GET_F_CREATE

/* load-time settings */
const volatile __u32 targ_tgid = 0;	/* 0: every task */
const volatile bool targ_events = true;	/* false: the event stream is compiled out */

/* live knob: 1 event in sample_rate goes to the ring buffer; 0 stops the stream */
__u32 sample_rate = 128;

struct trace_bss g = {};

/* Depth bookkeeping beyond trace_bss (read by name through BTF).
 * Some tasks are invisible to BPF: no tracepoint program runs in their context, the task
 * iterator skips them and bpf_task_from_pid() does not find them (on this sandbox kernel: the
 * init process's threads). We see them woken and switched in (in the waker's / prev's context)
 * but never switched out, so a count taken then would stay forever. Two things give them away:
 *  - the next switch we see on that CPU names another prev: the runner we knew left unseen,
 *    and the count its switch-in added (curr_counted) is taken back there;
 *  - the task's storage still says "on CPU" when it is woken off-CPU or switched in again:
 *    it is then marked blind (its stale count is the one the CPU takes back) and never
 *    counted again, so the counter holds exactly the tasks the iterator can report. */
__u32 curr_counted[MAX_CPUS] = {};	/* CPU + 1 the runner was counted on at switch-in; 0: not */
__u64 blind_tasks = 0;			/* tasks found invisible (their switch-out never fires) */
__u64 seeded = 0;			/* runnable tasks counted by the attach-time seed */
__u64 unseen_switch_outs = 0;		/* counted runners that left their CPU unseen */

struct task_ctx {
	__u64 enq_ts;		/* when it became runnable (0: not waiting) */
	__u64 oncpu_ts;		/* when it was switched in (0: not running) */
	__u32 queued_cpu;	/* CPU + 1 whose nr_running counts it; 0: not counted */
	__u32 blind;		/* its own switch-outs never reach us: never counted */
	struct task_rec rec;
};

struct task_ctx zero_ctx = {};		/* the hash-map path's initial value */

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_store SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct task_ctx);
} task_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_stat);
} cpu_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

/* keep the shared structs in BTF for the layout test */
const struct event *unused_event __attribute__((unused));
const struct task_rec *unused_task_rec __attribute__((unused));

static __always_inline __u32 log2_32(__u32 v)
{
	__u32 shift, r;

	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u32 log2_64(__u64 v)
{
	__u32 hi = v >> 32;

	return hi ? log2_32(hi) + 32 : log2_32(v);
}

static __always_inline __u32 lat_slot(__u64 v, const __u32 sub, const __u32 nslots)
{
	__u32 msb, shift, idx;

	if (v < (1ULL << sub))
		return v;
	msb = log2_64(v);
	shift = msb - sub;
	idx = ((shift + 1) << sub) + ((v >> shift) & ((1U << sub) - 1));
	return idx < nslots ? idx : nslots - 1;
}

struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline __u64 task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}

struct thread_info___cpu {
	__u32 cpu;
} __attribute__((preserve_access_index));

struct task_struct___cpu {
	struct thread_info___cpu thread_info;
	__u32 cpu;
} __attribute__((preserve_access_index));

static __always_inline __u32 task_cpu(struct task_struct *t)
{
	struct task_struct___cpu *tc = (void *)t;

	if (bpf_core_field_exists(tc->thread_info.cpu))
		return BPF_CORE_READ(tc, thread_info.cpu);
	return BPF_CORE_READ(tc, cpu);
}

static __always_inline bool tracked(__u32 tgid)
{
	return !targ_tgid || tgid == targ_tgid;
}

/* The per-task context: task storage on the tp_btf path, a pid-keyed hash on raw_tp. */
static __always_inline struct task_ctx *get_ctx(struct task_struct *p, bool create, const bool btf)
{
	struct task_ctx *c;
	__u32 pid;

	if (btf)
		return bpf_task_storage_get(&task_store, p, 0, create ? BPF_F_CREATE : 0);
	pid = BPF_CORE_READ(p, pid);
	c = bpf_map_lookup_elem(&task_hash, &pid);
	if (!c && create) {
		bpf_map_update_elem(&task_hash, &pid, &zero_ctx, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&task_hash, &pid);
	}
	return c;
}

static __always_inline void drop_ctx(struct task_struct *p, const bool btf)
{
	__u32 pid;

	if (btf) {
		bpf_task_storage_delete(&task_store, p);
		return;
	}
	pid = BPF_CORE_READ(p, pid);
	bpf_map_delete_elem(&task_hash, &pid);
}

static __always_inline void rq_add(__u32 cpu, int n)
{
	__sync_fetch_and_add(&g.nr_running[cpu & (MAX_CPUS - 1)], n);
}

/* Count the task on `cpu`, moving it if it was counted elsewhere (a missed event). */
static __always_inline void set_queued(struct task_ctx *c, __u32 cpu)
{
	if (c->queued_cpu == cpu + 1)
		return;
	if (c->queued_cpu)
		rq_add(c->queued_cpu - 1, -1);
	rq_add(cpu, 1);
	c->queued_cpu = cpu + 1;
}

static __always_inline void clear_queued(struct task_ctx *c)
{
	if (c->queued_cpu)
		rq_add(c->queued_cpu - 1, -1);
	c->queued_cpu = 0;
}

/* A task whose storage says it is on a CPU while it is not (woken off-CPU, or switched in
 * again) left that CPU unseen. The count it holds there is curr_counted's, which the CPU takes
 * back at its next switch we see; so it is dropped here without touching the counter. */
static __always_inline void settle_blind(struct task_ctx *c)
{
	c->queued_cpu = 0;
	c->oncpu_ts = 0;
	c->enq_ts = 0;
	if (!c->blind) {
		c->blind = 1;
		__sync_fetch_and_add(&blind_tasks, 1);
	}
}

struct task_struct___oncpu {
	int on_cpu;
} __attribute__((preserve_access_index));

static __always_inline bool on_a_cpu(struct task_struct *p)
{
	/* an int before 7.x, a u8 after: the probed read takes either size */
	return BPF_CORE_READ_BITFIELD_PROBED((struct task_struct___oncpu *)p, on_cpu) != 0;
}

static __always_inline bool sample(void)
{
	__u32 rate;

	if (!targ_events)
		return false;
	rate = sample_rate;
	if (!rate)
		return false;
	return rate == 1 || bpf_get_prandom_u32() % rate == 0;
}

static __always_inline struct event *event_reserve(void)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		__sync_fetch_and_add(&g.dropped, 1);
	return e;
}

static __always_inline void event_submit(struct event *e)
{
	bpf_ringbuf_submit(e, 0);
	__sync_fetch_and_add(&g.events, 1);
}

static __always_inline void fill_task(struct event *e, struct task_struct *p)
{
	e->pid = BPF_CORE_READ(p, pid);
	e->tgid = BPF_CORE_READ(p, tgid);
	e->prio = BPF_CORE_READ(p, prio);
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
}

static __always_inline int on_wakeup(struct task_struct *p, __u32 type, const bool btf)
{
	__u32 cpu = task_cpu(p);
	struct task_ctx *c;
	struct event *e;

	if (!BPF_CORE_READ(p, pid))
		return 0;
	c = get_ctx(p, true, btf);
	if (!c) {
		__sync_fetch_and_add(&g.untracked, 1);
		return 0;
	}
	/* on_cpu first: it drops after prev's switch handler ran (finish_task_switch), so once
	 * it reads 0 a switch-out we saw has already cleared oncpu_ts */
	if (!on_a_cpu(p) && c->oncpu_ts)
		settle_blind(c);
	if (!c->blind)
		set_queued(c, cpu);
	if (!c->oncpu_ts)	/* woken while still on a CPU: it never waited */
		c->enq_ts = bpf_ktime_get_ns();

	__u32 zero = 0;
	struct cpu_stat *cs = bpf_map_lookup_elem(&cpu_stats, &zero);
	if (cs)
		cs->wakeups++;

	if (!tracked(BPF_CORE_READ(p, tgid)) || !sample())
		return 0;
	e = event_reserve();
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->type = type;
	e->cpu = bpf_get_smp_processor_id();
	e->target_cpu = cpu;
	fill_task(e, p);
	event_submit(e);
	return 0;
}

static __always_inline int on_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
				     const bool btf)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 now = bpf_ktime_get_ns(), lat = 0, state = task_state(prev);
	__u32 prev_pid = BPF_CORE_READ(prev, pid), next_pid = BPF_CORE_READ(next, pid);
	bool runnable = preempt || state == TASK_RUNNING;
	struct task_ctx *c;
	struct cpu_stat *cs;
	__u32 zero = 0;

	cs = bpf_map_lookup_elem(&cpu_stats, &zero);
	if (cs) {
		cs->switches++;
		if (prev_pid) {
			if (runnable)
				cs->preempted++;
			else
				cs->voluntary++;
		}
	}
	__u32 idx = cpu & (MAX_CPUS - 1), known = g.curr_pid[idx];

	if (known != prev_pid && curr_counted[idx]) {	/* the runner we knew left unseen */
		rq_add(idx, -1);
		__sync_fetch_and_add(&unseen_switch_outs, 1);
		if (!btf) {	/* its pid-keyed entry is in reach: settle it now, not at its next event */
			c = bpf_map_lookup_elem(&task_hash, &known);
			if (c && c->oncpu_ts)
				settle_blind(c);
		}
	}
	g.curr_pid[idx] = next_pid;
	curr_counted[idx] = 0;

	if (prev_pid) {
		/* prev stays counted while runnable; a task we never saw is learned here (with
		 * storage even when it blocks, so the attach-time seed leaves it to us) */
		c = get_ctx(prev, true, btf);
		if (c) {
			c->blind = 0;	/* its switch-out reached us: it is visible after all */
			if (c->oncpu_ts && now > c->oncpu_ts) {
				c->rec.oncpu_ns += now - c->oncpu_ts;
				c->rec.stints++;
				if (runnable)
					c->rec.preempted++;
				else
					c->rec.voluntary++;
			}
			c->oncpu_ts = 0;
			if (runnable) {
				set_queued(c, cpu);
				c->enq_ts = now;	/* runqlat: preempted tasks wait again from now */
			} else {
				clear_queued(c);
				c->enq_ts = 0;
				if (state & TASK_DEAD)
					drop_ctx(prev, btf);
			}
		}
	}

	if (next_pid) {
		c = get_ctx(next, true, btf);
		if (c) {
			if (c->oncpu_ts)	/* its last stint ended unseen */
				settle_blind(c);
			if (!c->blind) {
				set_queued(c, cpu);
				curr_counted[idx] = cpu + 1;
			}
			if (c->enq_ts && now > c->enq_ts)
				lat = now - c->enq_ts;
			c->enq_ts = 0;
			c->oncpu_ts = now;
			if (!c->rec.pid) {
				c->rec.pid = next_pid;
				c->rec.tgid = BPF_CORE_READ(next, tgid);
			}
			if (lat && tracked(c->rec.tgid)) {
				__u32 s = lat_slot(lat, TASK_SUB_BITS, TASK_SLOTS);

				barrier_var(s);	/* keep the bound check the verifier needs */
				if (s < TASK_SLOTS)
					c->rec.lat_slots[s]++;
				c->rec.lat_count++;
				c->rec.lat_sum_ns += lat;
				if (lat > c->rec.lat_max_ns)
					c->rec.lat_max_ns = lat;
				if (cs) {
					s = lat_slot(lat, CPU_SUB_BITS, CPU_SLOTS);
					barrier_var(s);
					if (s < CPU_SLOTS)
						cs->lat_slots[s]++;
					cs->lat_count++;
					cs->lat_sum_ns += lat;
					if (lat > cs->lat_max_ns)
						cs->lat_max_ns = lat;
				}
			}
		} else {
			__sync_fetch_and_add(&g.untracked, 1);
		}
	}

	if (!sample())
		return 0;
	if (targ_tgid && !tracked(BPF_CORE_READ(prev, tgid)) && !tracked(BPF_CORE_READ(next, tgid)))
		return 0;
	struct event *e = event_reserve();
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = now;
	e->type = EV_SWITCH;
	e->cpu = cpu;
	e->prev_state = state;
	e->lat_ns = lat;
	fill_task(e, prev);
	e->next_pid = next_pid;
	e->next_tgid = BPF_CORE_READ(next, tgid);
	e->next_prio = BPF_CORE_READ(next, prio);
	BPF_CORE_READ_STR_INTO(&e->next_comm, next, comm);
	event_submit(e);
	return 0;
}

static __always_inline int on_migrate(struct task_struct *p, int dest_cpu, const bool btf)
{
	__u32 orig = task_cpu(p);
	struct task_ctx *c;
	struct event *e;

	/* Only a task we count as queued moves between counts; a waking task's migration
	 * happens before its wakeup, which counts it on the new CPU. */
	c = get_ctx(p, false, btf);
	if (c && c->queued_cpu && !c->oncpu_ts) {
		set_queued(c, dest_cpu);
		__u32 zero = 0;
		struct cpu_stat *cs = bpf_map_lookup_elem(&cpu_stats, &zero);
		if (cs)
			cs->migrations++;
	}
	if (!tracked(BPF_CORE_READ(p, tgid)) || !sample())
		return 0;
	e = event_reserve();
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->type = EV_MIGRATE;
	e->cpu = bpf_get_smp_processor_id();
	e->orig_cpu = orig;
	e->target_cpu = dest_cpu;
	fill_task(e, p);
	event_submit(e);
	return 0;
}

/* sched_waking: stream only (Perfetto's wakeup arrows start here); no counter moves, so
 * with the stream off (targ_events false) its programs are not even loaded. */
static __always_inline int on_waking(struct task_struct *p)
{
	struct event *e;

	if (!sample() || !tracked(BPF_CORE_READ(p, tgid)))
		return 0;
	e = event_reserve();
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->type = EV_WAKING;
	e->cpu = bpf_get_smp_processor_id();
	e->target_cpu = task_cpu(p);
	fill_task(e, p);
	event_submit(e);
	return 0;
}

SEC("tp_btf/sched_waking")
int BPF_PROG(handle_waking, struct task_struct *p)
{
	return on_waking(p);
}

SEC("raw_tp/sched_waking")
int BPF_PROG(handle_raw_waking, struct task_struct *p)
{
	return on_waking(p);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(handle_wakeup, struct task_struct *p)
{
	return on_wakeup(p, EV_WAKEUP, true);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(handle_wakeup_new, struct task_struct *p)
{
	return on_wakeup(p, EV_WAKEUP_NEW, true);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(handle_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(preempt, prev, next, true);
}

SEC("tp_btf/sched_migrate_task")
int BPF_PROG(handle_migrate, struct task_struct *p, int dest_cpu)
{
	return on_migrate(p, dest_cpu, true);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(handle_raw_wakeup, struct task_struct *p)
{
	return on_wakeup(p, EV_WAKEUP, false);
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(handle_raw_wakeup_new, struct task_struct *p)
{
	return on_wakeup(p, EV_WAKEUP_NEW, false);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(handle_raw_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(preempt, prev, next, false);
}

SEC("raw_tp/sched_migrate_task")
int BPF_PROG(handle_raw_migrate, struct task_struct *p, int dest_cpu)
{
	return on_migrate(p, dest_cpu, false);
}

/* Run once at attach, after the handlers: count the tasks already on a run queue (running or
 * queued), which no event would name until they next run. A task some event already holds
 * storage for is the events' to count. EEVDF's delayed-dequeue tasks (blocked, kept on the
 * queue for their lag) are not runnable. */
SEC("iter/task")
int seed_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct task_ctx *c;

	/* on_rq is an int before 7.x and a u8 after: the probed read takes either size */
	if (!task || !task->pid || BPF_CORE_READ_BITFIELD_PROBED(task, on_rq) != 1)	/* TASK_ON_RQ_QUEUED */
		return 0;
	if (bpf_core_field_exists(task->se.sched_delayed) && BPF_CORE_READ(task, se.sched_delayed))
		return 0;
	if (bpf_task_storage_get(&task_store, task, 0, 0))
		return 0;
	c = bpf_task_storage_get(&task_store, task, 0, BPF_F_CREATE);
	if (!c || c->queued_cpu || c->rec.stints)
		return 0;
	set_queued(c, task_cpu(task));
	__sync_fetch_and_add(&seeded, 1);
	return 0;
}

/* One struct task_rec per task with storage and something to report: one read() for all. */
SEC("iter/task")
int dump_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct task_ctx *c;

	if (!task)
		return 0;
	c = bpf_task_storage_get(&task_store, task, 0, 0);
	if (!c || !(c->rec.stints || c->rec.lat_count || c->queued_cpu))
		return 0;
	c->rec.queued_cpu = c->queued_cpu;
	if (!c->rec.pid) {
		c->rec.pid = BPF_CORE_READ(task, pid);
		c->rec.tgid = BPF_CORE_READ(task, tgid);
	}
	bpf_seq_write(ctx->meta->seq, &c->rec, sizeof(c->rec));
	return 0;
}

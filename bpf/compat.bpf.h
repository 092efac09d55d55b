/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One scheduler object for every sched_ext kernel from 6.12 on.
 *
 * Each kfunc whose name or signature moved between kernels is declared in all
 * its forms, every one `__ksym __weak`. libbpf resolves each form against the
 * running kernel's BTF by name (a `___tag` suffix is dropped before the
 * lookup, so two forms may share a kernel name) and by prototype; a form the
 * kernel lacks, or has with another prototype, stays unresolved instead of
 * failing the load. The wrappers below take the newest form that resolved
 * (bpf_ksym_exists() is a constant after relocation, so the verifier never
 * sees the dead calls). The wrappers have the kfuncs' modern names, so the
 * scheduler reads as if written for the newest kernel.
 *
 * The forms, newest first (kernel names; our extern names add a ___tag):
 *   insert         scx_bpf_dsq_insert___v2 (6.19, bool) > scx_bpf_dsq_insert (6.13, void)
 *                  > scx_bpf_dispatch (6.12)
 *   insert_vtime   __scx_bpf_dsq_insert_vtime(p, &args) (6.19) > scx_bpf_dsq_insert_vtime (6.13,
 *                  5 args, kept by the kernel only for old objects) > scx_bpf_dispatch_vtime (6.12)
 *   move_to_local  scx_bpf_dsq_move_to_local___v2(dsq, enq_flags) (7.1) > scx_bpf_dsq_move_to_local
 *                  (6.13) > scx_bpf_consume (6.12)
 *   task_set_slice scx_bpf_task_set_slice (6.19) > a write to p->scx.slice (what it does on 6.18)
 *   kick_cpu       scx_bpf_kick_cpu (6.12). Debian's 7.1.13 BTF has it (and get_idle_cpumask,
 *                  locked_rq, exit_bstr, dsq_move_to_local___v2) in the raw implicit-argument
 *                  form, `..., const struct bpf_prog_aux *aux`, untagged and without the
 *                  `_impl` twin the verifier needs: no program can call it there. Without it a
 *                  decision for an idle CPU goes to that CPU's local DSQ directly, which wakes
 *                  it (compat_can_kick()).
 * schedtop/scx/loader.py probes the same forms in the kernel's BTF before load and
 * says in one line what a kernel lacks; keep its table in step with this file.
 *
 * Enum values that moved: SCX_ENQ_HEAD is ENQUEUE_HEAD, 0x10 before 6.19 and 0x10000
 * after, so it is read from the kernel's BTF (CO-RE) at load time. Only values that
 * fit in 32 bits can be relocated this way (clang 14 truncates 64-bit enumerators in
 * BTF); the 64-bit ones used here (SCX_ENQ_PREEMPT, SCX_DSQ_*) have not moved, nor
 * have SCX_ENQ_WAKEUP (1), SCX_KICK_* and SCX_TASK_QUEUED.
 */
#ifndef __SCHEDTOP_COMPAT_BPF_H
#define __SCHEDTOP_COMPAT_BPF_H

#include <bpf/bpf_core_read.h>

#define COMPAT_ENUM(type, name) \
	(bpf_core_enum_value_exists(type, name) ? bpf_core_enum_value(type, name) : 0)

/* The macro names itself: inside its body the name is the enumerator, not the macro. */
#define SCX_ENQ_HEAD		COMPAT_ENUM(enum scx_enq_flags, SCX_ENQ_HEAD)

/* --- the same in every kernel from 6.12 ------------------------------------------- */
extern s32 scx_bpf_create_dsq(u64 dsq_id, s32 node) __ksym;
extern s32 scx_bpf_select_cpu_dfl(struct task_struct *p, s32 prev_cpu, u64 wake_flags,
				  bool *is_idle) __ksym;
extern s32 scx_bpf_pick_idle_cpu(const struct cpumask *cpus_allowed, u64 flags) __ksym;
extern bool scx_bpf_test_and_clear_cpu_idle(s32 cpu) __ksym;
extern s32 scx_bpf_task_cpu(const struct task_struct *p) __ksym;
extern u32 scx_bpf_dispatch_nr_slots(void) __ksym;
extern s32 scx_bpf_dsq_nr_queued(u64 dsq_id) __ksym;
extern u32 scx_bpf_nr_cpu_ids(void) __ksym;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern bool bpf_cpumask_test_cpu(u32 cpu, const struct cpumask *cpumask) __ksym;

/* --- insert ----------------------------------------------------------------------- */
extern bool scx_bpf_dsq_insert___v2___st(struct task_struct *p, u64 dsq_id, u64 slice,
					 u64 enq_flags) __ksym __weak;
extern void scx_bpf_dsq_insert___st(struct task_struct *p, u64 dsq_id, u64 slice,
				    u64 enq_flags) __ksym __weak;
extern void scx_bpf_dispatch___st(struct task_struct *p, u64 dsq_id, u64 slice,
				  u64 enq_flags) __ksym __weak;

static __always_inline bool scx_bpf_dsq_insert(struct task_struct *p, u64 dsq_id, u64 slice,
					       u64 enq_flags)
{
	if (bpf_ksym_exists(scx_bpf_dsq_insert___v2___st))
		return scx_bpf_dsq_insert___v2___st(p, dsq_id, slice, enq_flags);
	if (bpf_ksym_exists(scx_bpf_dsq_insert___st))
		scx_bpf_dsq_insert___st(p, dsq_id, slice, enq_flags);
	else
		scx_bpf_dispatch___st(p, dsq_id, slice, enq_flags);
	return true;
}

/* --- insert_vtime ----------------------------------------------------------------- */
extern bool __scx_bpf_dsq_insert_vtime___st(struct task_struct *p,
					    struct scx_bpf_dsq_insert_vtime_args *args) __ksym __weak;
extern void scx_bpf_dsq_insert_vtime___st(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime,
					  u64 enq_flags) __ksym __weak;
extern void scx_bpf_dispatch_vtime___st(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime,
					u64 enq_flags) __ksym __weak;

static __always_inline bool scx_bpf_dsq_insert_vtime(struct task_struct *p, u64 dsq_id, u64 slice,
						     u64 vtime, u64 enq_flags)
{
	if (bpf_ksym_exists(__scx_bpf_dsq_insert_vtime___st)) {
		struct scx_bpf_dsq_insert_vtime_args args;

		/* Field by field: each store is CO-RE relocated to the kernel's layout. */
		__builtin_memset(&args, 0, sizeof(args));
		args.dsq_id = dsq_id;
		args.slice = slice;
		args.vtime = vtime;
		args.enq_flags = enq_flags;
		return __scx_bpf_dsq_insert_vtime___st(p, &args);
	}
	if (bpf_ksym_exists(scx_bpf_dsq_insert_vtime___st))
		scx_bpf_dsq_insert_vtime___st(p, dsq_id, slice, vtime, enq_flags);
	else
		scx_bpf_dispatch_vtime___st(p, dsq_id, slice, vtime, enq_flags);
	return true;
}

/* --- move_to_local ---------------------------------------------------------------- */
extern bool scx_bpf_dsq_move_to_local___v2___st(u64 dsq_id, u64 enq_flags) __ksym __weak;
extern bool scx_bpf_dsq_move_to_local___st(u64 dsq_id) __ksym __weak;
extern bool scx_bpf_consume___st(u64 dsq_id) __ksym __weak;

/* enq_flags reach the kernel only where the 7.1 form resolved. */
static __always_inline bool scx_bpf_dsq_move_to_local(u64 dsq_id, u64 enq_flags)
{
	if (bpf_ksym_exists(scx_bpf_dsq_move_to_local___v2___st))
		return scx_bpf_dsq_move_to_local___v2___st(dsq_id, enq_flags);
	if (bpf_ksym_exists(scx_bpf_dsq_move_to_local___st))
		return scx_bpf_dsq_move_to_local___st(dsq_id);
	return scx_bpf_consume___st(dsq_id);
}

/* --- task_set_slice --------------------------------------------------------------- */
extern bool scx_bpf_task_set_slice___st(struct task_struct *p, u64 slice) __ksym __weak;

static __always_inline void scx_bpf_task_set_slice(struct task_struct *p, u64 slice)
{
	if (bpf_ksym_exists(scx_bpf_task_set_slice___st))
		scx_bpf_task_set_slice___st(p, slice);
	else
		p->scx.slice = slice;	/* the kfunc's body before 6.19; sched_ext lets ops write it */
}

/* --- kick_cpu --------------------------------------------------------------------- */
extern void scx_bpf_kick_cpu___st(s32 cpu, u64 flags) __ksym __weak;

static __always_inline bool compat_can_kick(void)
{
	return bpf_ksym_exists(scx_bpf_kick_cpu___st);
}

/* A no-op where the kernel offers no callable kick (see compat_can_kick). */
static __always_inline void scx_bpf_kick_cpu(s32 cpu, u64 flags)
{
	if (bpf_ksym_exists(scx_bpf_kick_cpu___st))
		scx_bpf_kick_cpu___st(cpu, flags);
}

#endif /* __SCHEDTOP_COMPAT_BPF_H */

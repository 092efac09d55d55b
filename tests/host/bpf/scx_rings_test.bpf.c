// Test object for schedtop/scx/rings.py (tests/host/test_scx_rings.py): the scheduler's two
// rings with its own record types (scx.h), a producer and a consumer run through BPF_PROG_TEST_RUN.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "scx.h"

char LICENSE[] SEC("license") = "GPL";

__u64 seq = 0;			/* .bss: records emitted so far */
__u32 pid_mod = 0;		/* 0: pid = seq; else pid = 1000 + seq % pid_mod (bench/scx_loop_capacity.py) */
__u64 drained_n = 0;
__u64 drained_pid_sum = 0;
__u64 drained_any_cpu = 0;	/* decisions with cpu == SCHEDTOP_CPU_ANY */
__u64 drained_bad = 0;		/* samples whose fields do not match pid (see below) */
__u64 drained_last_pid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} queued SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 64 * 1024);
} dispatched SEC(".maps");

struct args {
	__u32 n;
	__u32 discard_every;	/* 0: none; k: every k-th record is reserved then discarded */
};

SEC("syscall")
int emit(struct args *a)
{
	__u32 n = a ? a->n : 1, every = a ? a->discard_every : 0, i;

	if (n > 4096)
		n = 4096;
	bpf_for(i, 0, n) {
		struct scx_queued *r;

		r = bpf_ringbuf_reserve(&queued, sizeof(*r), 0);
		if (!r)
			break;
		__builtin_memset(r, 0, sizeof(*r));
		r->pid = ++seq;
		if (pid_mod)
			r->pid = 1000 + seq % pid_mod;
		r->cpu = seq & 1;
		r->weight = 100;
		r->flags = r->pid % 3 == 0;	/* some wake-ups, some expired slices */
		r->exec_runtime = (seq % 7) * 1000000;
		r->run_ns = 50000 + (seq % 5) * 1000000;
		r->gen = seq * 3;
		r->enq_ns = seq * 1000;
		r->comm[0] = 'h';
		if (every && seq % every == 0)
			bpf_ringbuf_discard(r, 0);
		else
			bpf_ringbuf_submit(r, 0);
	}
	return 0;
}

static long drain_one(struct bpf_dynptr *dynptr, void *ctx)
{
	const struct scx_dispatched *d = bpf_dynptr_data(dynptr, 0, sizeof(*d));

	if (!d) {
		drained_bad++;
		return 0;
	}
	/* the test writes slice = pid * 10, deadline = pid * 100, gen = pid * 3, flags = pid & 1 */
	if (d->slice_ns != d->pid * 10ULL || d->deadline != d->pid * 100ULL || d->gen != d->pid * 3ULL ||
	    d->flags != (d->pid & 1) || d->pid != drained_last_pid + 1)
		drained_bad++;
	drained_last_pid = d->pid;
	if (d->cpu == SCHEDTOP_CPU_ANY)
		drained_any_cpu++;
	drained_pid_sum += d->pid;
	drained_n++;
	return 0;
}

SEC("syscall")
int drain(void *ctx)
{
	return bpf_user_ringbuf_drain(&dispatched, drain_one, NULL, 0);
}

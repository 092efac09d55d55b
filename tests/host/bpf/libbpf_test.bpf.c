// Test object for the libbpf binding (tests/host/test_bpf_libbpf.py): one of each
// thing the binding wraps, driven deterministically through BPF_PROG_TEST_RUN.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct rec {
	__u64 seq;
	__u32 magic;
	__u32 cpu;
};

const volatile __u32 magic = 0;		/* .rodata: set before load */
__u32 live_knob = 7;			/* .data: a live knob */
__u64 emitted = 0;			/* .bss: counters read after load */
__u64 drained_sum = 0;
__u64 drained_n = 0;
__u64 switches = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} kv SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} pc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 64 * 1024);
} urb SEC(".maps");

/* ctx: how many records to emit */
SEC("syscall")
int emit(__u32 *n)
{
	__u32 count = n ? *n : 1;
	for (__u32 i = 0; i < 1024; i++) {
		if (i >= count)
			break;
		struct rec r = { .seq = emitted, .magic = magic + live_knob, .cpu = bpf_get_smp_processor_id() };
		if (bpf_ringbuf_output(&rb, &r, sizeof(r), 0) == 0)
			emitted++;
	}
	__u32 k = 0;
	__u32 *v = bpf_map_lookup_elem(&pc, &k);
	if (v)
		*v += 1;
	return magic;
}

static long drain_one(struct bpf_dynptr *dynptr, void *ctx)
{
	__u64 val;
	if (bpf_dynptr_read(&val, sizeof(val), dynptr, 0, 0))
		return 1;
	drained_sum += val;
	drained_n++;
	return 0;
}

SEC("syscall")
int drain(void *ctx)
{
	return bpf_user_ringbuf_drain(&urb, drain_one, NULL, 0);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__sync_fetch_and_add(&switches, 1);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(on_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__sync_fetch_and_add(&switches, 1000000);
	return 0;
}

#ifdef BAD_PROGRAM
/* Rejected by the verifier: reads past a map value (the load-error test). */
SEC("syscall")
int bad(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&kv, &k);
	if (!v)
		return 0;
	return *(v + 4096);
}
#endif

/* Keep struct rec in the object's BTF (the layout test reads it). */
const struct rec *unused_rec __attribute__((unused));

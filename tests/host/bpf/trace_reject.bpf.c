// The tracing object plus one program the verifier rejects: open_tier() must turn the
// rejection into one clear BpfUnavailable line (tests/host/test_bpf_tier.py).
#include "../../../bpf/trace.bpf.c"

SEC("syscall")
int rejected(void *ctx)
{
	__u32 k = 0;
	struct cpu_stat *cs = bpf_map_lookup_elem(&cpu_stats, &k);

	if (!cs)
		return 0;
	return cs->lat_slots[CPU_SLOTS + 100];	/* past the value: rejected */
}

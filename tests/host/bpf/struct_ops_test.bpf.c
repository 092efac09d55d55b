// A minimal struct_ops object that this kernel accepts without sched_ext: a TCP congestion
// control. It proves the binding's struct_ops path (load, attach the map, destroy the link)
// on the host; the sched_ext scheduler takes the same path in the guest.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 calls = 0;

SEC("struct_ops")
__u32 BPF_PROG(st_ssthresh, struct sock *sk)
{
	calls++;
	return 10;
}

SEC("struct_ops")
void BPF_PROG(st_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	calls++;
}

SEC("struct_ops")
__u32 BPF_PROG(st_undo_cwnd, struct sock *sk)
{
	return 10;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops schedtop_test_ca = {
	.ssthresh = (void *)st_ssthresh,
	.cong_avoid = (void *)st_cong_avoid,
	.undo_cwnd = (void *)st_undo_cwnd,
	.name = "schedtop_test",
};

/* A callback passed to bpf_loop: LD_IMM64 src=FUNC referencing .text. */
#include "common.h"

__u64 total;

static int add_index(__u32 index, void *ctx)
{
	__u64 *sum = ctx;

	*sum += index;
	return 0;
}

SEC("xdp")
int loop_sum(struct xdp_md *ctx)
{
	__u64 sum = 0;

	bpf_loop(10, add_index, &sum, 0);
	total = sum;   /* 0 + 1 + ... + 9 = 45 */
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

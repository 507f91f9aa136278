/* A program array with an initial slot from .maps relocations, and a tail call. */
#include "common.h"

__u32 tail_ran;

SEC("xdp")
int tail_target(struct xdp_md *ctx)
{
	tail_ran = 1;
	return XDP_TX;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int (void *));
} jump_table SEC(".maps") = {
	.values = {
		[2] = (void *)&tail_target,
	},
};

SEC("xdp")
int tail_entry(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jump_table, 2);
	return XDP_ABORTED;
}

char _license[] SEC("license") = "GPL";

/* Several programs in one section, each its own symbol. */
#include "common.h"

SEC("xdp")
int first_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int second_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int third_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

char _license[] SEC("license") = "Dual MIT/GPL";

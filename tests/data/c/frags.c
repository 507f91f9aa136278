/* xdp.frags: a multi-buffer aware XDP program, and one for devmap. */
#include "common.h"

SEC("xdp.frags")
int frags_prog(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp/devmap")
int devmap_prog(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

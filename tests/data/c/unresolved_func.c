/* Calls a function another object defines: it needs linking (bpftool gen object) first. */
#include "common.h"

extern int defined_elsewhere(struct xdp_md *ctx);

SEC("xdp")
int needs_link(struct xdp_md *ctx)
{
	return defined_elsewhere(ctx);
}

char _license[] SEC("license") = "GPL";

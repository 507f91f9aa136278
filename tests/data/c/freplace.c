/* An freplace program: it needs the program it replaces (attach_prog_fd); loading the
 * object alone must say so, not "needs root". */
#include "common.h"

SEC("freplace/xdp_sub")
int new_sub(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";

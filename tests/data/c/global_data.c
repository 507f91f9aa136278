/* Global data: .rodata (set before load), .data and .bss variables. */
#include "common.h"

volatile const __u32 ret_action = XDP_PASS;   /* .rodata, set from Python before load */
volatile const __u64 magic = 0x1122334455667788ULL;
__u64 packets = 5;                             /* .data */
__u32 last_len;                                /* .bss */
__u64 seen_magic;                              /* .bss */

SEC("xdp")
int global_data(struct xdp_md *ctx)
{
	packets += 1;
	last_len = ctx->data_end - ctx->data;
	seen_magic = magic;
	return ret_action;
}

char _license[] SEC("license") = "GPL";

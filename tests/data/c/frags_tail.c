/* Multi-buffer probes: what a program sees of a frame longer than the linear part.
 * The same body is built as an xdp.frags program and as a plain xdp program; .rodata
 * knobs (set before load) pick the tail delta and the offset read and written with
 * bpf_xdp_load_bytes / bpf_xdp_store_bytes; .bss records what happened. */
#include "common.h"

volatile const int tail_delta = 0;
volatile const __u32 probe_off = 0;

__u64 linear_len;      /* data_end - data */
__u64 len_before;      /* bpf_xdp_get_buff_len before the tail change */
__s64 tail_rc;         /* bpf_xdp_adjust_tail */
__u64 len_after;
__s64 load_rc;         /* bpf_xdp_load_bytes(probe_off, 4) */
__u32 loaded;
__s64 store_rc;        /* bpf_xdp_store_bytes(probe_off + 4, "ABCD") */

static __always_inline int probe(struct xdp_md *ctx)
{
	__u32 mark = 0x44434241;
	__u32 word = 0;

	linear_len = ctx->data_end - ctx->data;
	len_before = bpf_xdp_get_buff_len(ctx);
	load_rc = bpf_xdp_load_bytes(ctx, probe_off, &word, 4);
	loaded = word;
	store_rc = bpf_xdp_store_bytes(ctx, probe_off + 4, &mark, 4);
	tail_rc = 0;
	if (tail_delta)
		tail_rc = bpf_xdp_adjust_tail(ctx, tail_delta);
	len_after = bpf_xdp_get_buff_len(ctx);
	return tail_rc ? XDP_DROP : XDP_PASS;
}

SEC("xdp.frags")
int probe_frags(struct xdp_md *ctx)
{
	return probe(ctx);
}

SEC("xdp")
int probe_linear(struct xdp_md *ctx)
{
	return probe(ctx);
}

char _license[] SEC("license") = "GPL";

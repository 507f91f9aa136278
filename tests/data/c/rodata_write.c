/* Stores into read-only maps, each of which the verifier refuses ("write into map
 * forbidden"): through a .rodata variable, through a pointer a lookup in a
 * BPF_F_RDONLY_PROG map returned (also from a bpf-to-bpf callee), with
 * bpf_map_update_elem on that map and with bpf_xdp_load_bytes into .rodata.
 * read_only only reads, and loads. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	__type(key, __u32);
	__type(value, __u64);
} config SEC(".maps");

volatile const __u32 limit = 7;

SEC("xdp")
int read_only(struct xdp_md *ctx)
{
	__u32 key = 1;
	__u64 *v = bpf_map_lookup_elem(&config, &key);

	if (v && *v > limit)
		return XDP_DROP;
	return XDP_PASS;
}

SEC("xdp")
int store_rodata(struct xdp_md *ctx)
{
	*(volatile __u32 *)&limit = 8;
	return XDP_PASS;
}

SEC("xdp")
int store_lookup(struct xdp_md *ctx)
{
	__u32 key = 1;
	__u64 *v = bpf_map_lookup_elem(&config, &key);

	if (!v)
		return XDP_ABORTED;
	*v += 1;
	return XDP_PASS;
}

static __attribute__((noinline)) int bump(__u64 *v)
{
	if (!v)
		return 0;
	*v = 5;
	return 1;
}

SEC("xdp")
int store_in_callee(struct xdp_md *ctx)
{
	__u32 key = 2;

	return bump(bpf_map_lookup_elem(&config, &key)) ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int update_rdonly(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 v = 1;

	bpf_map_update_elem(&config, &key, &v, 0);
	return XDP_PASS;
}

volatile const __u8 scratch[8];

SEC("xdp")
int load_into_rodata(struct xdp_md *ctx)
{
	return bpf_xdp_load_bytes(ctx, 0, (void *)scratch, 4) ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";

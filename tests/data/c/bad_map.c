/* A map the kernel refuses to create (unknown map_flags bit): the error must name it. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(map_flags, 1U << 30);
} refused_map SEC(".maps");

SEC("xdp")
int bad_map(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&refused_map, &key);

	return v ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";

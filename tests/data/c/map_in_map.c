/* Map-in-map: an array of maps with an inner array definition and an initial slot. */
#include "common.h"

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} inner1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { [0] = &inner1 },
};

SEC("xdp")
int outer_lookup(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u32 *val;
	void *inner = bpf_map_lookup_elem(&outer, &key);

	if (!inner)
		return XDP_ABORTED;
	val = bpf_map_lookup_elem(inner, &key);
	if (!val)
		return XDP_ABORTED;
	return *val ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";

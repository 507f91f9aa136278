/* XDP program using a legacy "maps" section definition (struct bpf_map_def). */
#include "common.h"

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") legacy_array = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 2,
};

SEC("xdp")
int legacy_prog(struct xdp_md *ctx)
{
	__u32 key = 1;
	__u64 *val = bpf_map_lookup_elem(&legacy_array, &key);

	if (val)
		*val += 1;
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";

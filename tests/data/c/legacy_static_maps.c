/* Two static legacy maps: both referenced through the "maps" section symbol plus an
 * offset.  Loaded with legacy=True, updates must land in the map the source names. */
#include "common.h"

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

static struct bpf_map_def SEC("maps") first = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 1,
};

static struct bpf_map_def SEC("maps") second = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 1,
};

SEC("xdp")
int legacy_static(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&first, &key);

	if (v)
		*v += 1;
	v = bpf_map_lookup_elem(&second, &key);
	if (v)
		*v += 100;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

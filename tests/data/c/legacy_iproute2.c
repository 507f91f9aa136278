/* An iproute2-style legacy map (struct bpf_elf_map) with pinning = PIN_GLOBAL_NS (2):
 * pyxdp does not implement iproute2 pinning, so it must refuse, naming the field. */
#include "common.h"

struct bpf_elf_map {
	__u32 type;
	__u32 size_key;
	__u32 size_value;
	__u32 max_elem;
	__u32 flags;
	__u32 id;
	__u32 pinning;
	__u32 inner_id;
	__u32 inner_idx;
};

struct bpf_elf_map SEC("maps") tc_counts = {
	.type = BPF_MAP_TYPE_ARRAY,
	.size_key = sizeof(__u32),
	.size_value = sizeof(__u64),
	.max_elem = 1,
	.pinning = 2,
};

SEC("tc")
int iproute2_prog(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&tc_counts, &key);

	if (v)
		*v += 1;
	return 0;
}

char _license[] SEC("license") = "GPL";

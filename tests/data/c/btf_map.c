/* XDP program with a BTF-defined hash map: counts packets per ifindex. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, 4);
	__uint(value_size, 8);
	__uint(max_entries, 8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_stats SEC(".maps");

/* A value with bitfields: BTF encodes it with kind_flag and packed member offsets. */
struct flow_bits {
	unsigned int proto:4;
	unsigned int dir:1;
	unsigned int pad:27;
	unsigned short port;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, struct flow_bits);
	__uint(max_entries, 128);
} flows SEC(".maps");

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	__u32 key = 7;
	__u64 one = 1, *val;

	val = bpf_map_lookup_elem(&counters, &key);
	if (val)
		__sync_fetch_and_add(val, 1);
	else
		bpf_map_update_elem(&counters, &key, &one, BPF_ANY);
	val = bpf_map_lookup_elem(&pinned_stats, &key);
	if (val)
		*val += 2;
	struct flow_bits *fb = bpf_map_lookup_elem(&flows, &key);
	if (fb)
		fb->dir = 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

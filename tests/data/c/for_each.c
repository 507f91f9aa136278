/* bpf_for_each_map_elem over an array and a hash map: the callback sums keys and values,
 * bumps every value it sees, and stops once it has seen stop_after elements (0: never).
 * prune_odd deletes the hash elements whose value is odd from inside the callback. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} hsh SEC(".maps");

__u32 stop_after;   /* in .bss, set after load: a .rodata constant makes the */
__u64 each_flags;   /* verifier walk the callback once per possible count */

struct bpf_map;

struct walk_ctx {
	__u64 sum;
	__u64 seen;
};

__s64 arr_n, hsh_n;
__u64 arr_sum, arr_seen, hsh_sum, hsh_seen;

static long sum_cb(struct bpf_map *map, __u32 *key, __u64 *val, struct walk_ctx *c)
{
	c->sum += *val * 1000 + *key;
	c->seen++;
	*val += 1;
	if (stop_after && c->seen >= stop_after)
		return 1;
	return 0;
}

SEC("xdp")
int walk(struct xdp_md *ctx)
{
	struct walk_ctx c = {};

	arr_n = bpf_for_each_map_elem(&arr, sum_cb, &c, each_flags);
	arr_sum = c.sum;
	arr_seen = c.seen;
	c.sum = 0;
	c.seen = 0;
	hsh_n = bpf_for_each_map_elem(&hsh, sum_cb, &c, each_flags);
	hsh_sum = c.sum;
	hsh_seen = c.seen;
	return XDP_PASS;
}

static long prune_cb(struct bpf_map *map, __u32 *key, __u64 *val, void *c)
{
	if (*val & 1)
		bpf_map_delete_elem(map, key);
	return 0;
}

SEC("xdp")
int prune_odd(struct xdp_md *ctx)
{
	hsh_n = bpf_for_each_map_elem(&hsh, prune_cb, 0, 0);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

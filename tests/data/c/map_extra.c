/* map_extra given with __ulong() (an enum, as newer bpf_helpers.h encodes 64-bit fields)
 * and with __uint(): a bloom filter's hash count and an arena's user address. */
#include "common.h"

#define __pyxdp_cat(a, b) a##b
#define __pyxdp_concat(a, b) __pyxdp_cat(a, b)
#ifndef __ulong
#define __ulong(name, val) enum { __pyxdp_concat(__unique_value, __COUNTER__) = val } name
#endif

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__type(value, __u32);
	__uint(max_entries, 16);
	__ulong(map_extra, 3);
} bloom SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__type(value, __u32);
	__uint(max_entries, 16);
	__uint(map_extra, 5);
} bloom5 SEC(".maps");

SEC("xdp")
int bloom_prog(struct xdp_md *ctx)
{
	__u32 v = 7;

	bpf_map_push_elem(&bloom, &v, 0);
	bpf_map_push_elem(&bloom5, &v, 0);
	return bpf_map_peek_elem(&bloom, &v) == 0 ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";

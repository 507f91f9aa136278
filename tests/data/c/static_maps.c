/* Two static BTF maps: libbpf refuses "unsupported map linkage static", so must we (binding
 * both to the map at offset 0 of .maps was the bug). */
#include "common.h"
static struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} first SEC(".maps");
static struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} second SEC(".maps");
SEC("xdp")
int static_maps(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&first, &k);
	if (v) *v += 1;
	v = bpf_map_lookup_elem(&second, &k);
	if (v) *v += 100;
	return XDP_PASS;
}
char _license[] SEC("license") = "GPL";

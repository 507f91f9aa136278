// The drop program of the "same object, two loaders" comparison in `pyxdp bench`:
// count packets and bytes in a per-CPU array (the layout of pyxdp.progs.counters_spec)
// and drop.  Loaded once by pyxdp's ELF loader and once by xdp-loader.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, 2);
} counters SEC(".maps");

SEC("xdp")
int xdp_drop_count(struct xdp_md *ctx)
{
    __u32 k = 0;
    __u64 *v = bpf_map_lookup_elem(&counters, &k);
    if (v)
        *v += 1;
    k = 1;
    v = bpf_map_lookup_elem(&counters, &k);
    if (v)
        *v += ctx->data_end - ctx->data;
    return XDP_DROP;
}

char _license[] SEC("license") = "GPL";

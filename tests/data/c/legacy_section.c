/* A libbpf 0.x section name: libbpf 1.x "failed to guess program type from ELF section
 * 'xdp_prog'"; loads with prog_type="xdp" (bpftool: type xdp) or legacy=True. */
#include "common.h"

SEC("xdp_prog")
int legacy_section(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";

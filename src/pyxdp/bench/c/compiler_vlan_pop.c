/* C twin of c/compiler_vlan_pop.py for pyxdp.bench.compiler_quality: strip one 802.1Q tag */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

SEC("xdp")
int vlan_pop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct vlan_hdr *tag;
	unsigned char dst[ETH_ALEN], src[ETH_ALEN];
	__be16 inner;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_8021Q))
		return XDP_PASS;
	tag = (void *)(eth + 1);
	if ((void *)(tag + 1) > end)
		return XDP_PASS;
	inner = tag->proto;
	__builtin_memcpy(dst, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(src, eth->h_source, ETH_ALEN);
	if (bpf_xdp_adjust_head(ctx, 4))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_ABORTED;
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
	eth->h_proto = inner;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

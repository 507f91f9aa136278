/* C twin of examples/decap.py for pyxdp.bench.compiler_quality */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define GUE_PORT 6080

struct guehdr { __u8 ver_c_hlen; __u8 proto_ctype; __u16 flags; };

SEC("xdp")
int decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	unsigned char dst[ETH_ALEN], src[ETH_ALEN];
	__u32 strip;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl < 5)
		return XDP_PASS;
	if (ip->protocol == IPPROTO_IPIP) {
		strip = ip->ihl * 4;
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = (void *)ip + ip->ihl * 4;
		struct guehdr *gue;
		if ((void *)(udp + 1) > end || udp->dest != bpf_htons(GUE_PORT))
			return XDP_PASS;
		gue = (void *)(udp + 1);
		if ((void *)(gue + 1) > end || (gue->ver_c_hlen & 31) * 4 + 4 < 4 ||
		    gue->proto_ctype != IPPROTO_IPIP)
			return XDP_PASS;
		strip = (void *)gue + (gue->ver_c_hlen & 31) * 4 + 4 - (void *)(eth + 1);
	} else {
		return XDP_PASS;
	}
	__builtin_memcpy(dst, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(src, eth->h_source, ETH_ALEN);
	if (bpf_xdp_adjust_head(ctx, strip))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_ABORTED;
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

/* C twin of c/compiler_ipip_lb.py for pyxdp.bench.compiler_quality: IPIP encapsulation
 * to a backend chosen by a flow hash, XDP_TX */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} backends SEC(".maps");

SEC("xdp")
int ipip_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data, *neth;
	struct iphdr *ip, *outer;
	unsigned char dst[ETH_ALEN], src[ETH_ALEN];
	__u32 h, key, daddr, sum = 0;
	__u16 *w;
	__u32 *be;
	int i;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl < 5 || (void *)ip + ip->ihl * 4 > end)
		return XDP_PASS;
	h = bpf_ntohl(ip->saddr) ^ bpf_ntohl(ip->daddr);
	h ^= h >> 16;
	key = h & 3;
	be = bpf_map_lookup_elem(&backends, &key);
	if (!be || *be == 0)
		return XDP_PASS;
	daddr = *be;
	__builtin_memcpy(dst, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(src, eth->h_source, ETH_ALEN);
	if (bpf_xdp_adjust_head(ctx, -20))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	neth = data;
	outer = (void *)(neth + 1);
	if ((void *)(outer + 1) > end)
		return XDP_ABORTED;
	__builtin_memcpy(neth->h_dest, src, ETH_ALEN);
	__builtin_memcpy(neth->h_source, dst, ETH_ALEN);
	neth->h_proto = bpf_htons(ETH_P_IP);
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = 0;
	outer->tot_len = bpf_htons((__u16)(end - data - 14));
	outer->id = 0;
	outer->frag_off = 0;
	outer->ttl = 64;
	outer->protocol = IPPROTO_IPIP;
	outer->saddr = bpf_htonl(0xc6120064);  /* 198.18.0.100 */
	outer->daddr = bpf_htonl(daddr);
	outer->check = 0;
	w = (__u16 *)outer;
#pragma unroll
	for (i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	outer->check = (__u16)~sum;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";

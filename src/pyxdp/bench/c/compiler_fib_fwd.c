/* C twin of c/compiler_fib_fwd.py for pyxdp.bench.compiler_quality: bpf_fib_lookup,
 * TTL decrement (RFC 1624 checksum update), MAC rewrite, redirect */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2

SEC("xdp")
int fib_fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct bpf_fib_lookup p = {};
	struct iphdr *ip;
	__u32 sum;
	__u16 old;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl < 5 || (void *)ip + ip->ihl * 4 > end)
		return XDP_PASS;
	if (ip->ttl <= 1)
		return XDP_PASS;
	p.family = AF_INET;
	p.l4_protocol = ip->protocol;
	p.tot_len = bpf_ntohs(ip->tot_len);
	p.tos = ip->tos;
	p.ifindex = ctx->ingress_ifindex;
	p.ipv4_src = ip->saddr;
	p.ipv4_dst = ip->daddr;
	if (bpf_fib_lookup(ctx, &p, sizeof(p), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	old = (ip->ttl << 8) | ip->protocol;
	ip->ttl--;
	sum = (__u16)~bpf_ntohs(ip->check) + (__u16)~old + (__u16)(old - 0x100);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = bpf_htons((__u16)~sum);
	__builtin_memcpy(eth->h_dest, p.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, p.smac, ETH_ALEN);
	return bpf_redirect(p.ifindex, 0);
}

char _license[] SEC("license") = "GPL";

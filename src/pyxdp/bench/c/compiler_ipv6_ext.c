/* C twin of examples/ipv6_ext.py for pyxdp.bench.compiler_quality */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_EXT 6

struct ext { __u8 nexthdr; __u8 hdrlen; __u8 opts[6]; };

SEC("xdp")
int ipv6_ext(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6;
	void *pos;
	__u8 nh;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IPV6))
		return XDP_PASS;
	ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > end)
		return XDP_PASS;
	nh = ip6->nexthdr;
	pos = ip6 + 1;
	for (int i = 0; i < MAX_EXT; i++) {
		struct ext *e = pos;
		if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING && nh != IPPROTO_DSTOPTS)
			break;
		if ((void *)(e + 1) > end)
			return XDP_DROP;
		nh = e->nexthdr;
		pos += (e->hdrlen + 1) * 8;
	}
	if (nh == IPPROTO_FRAGMENT)
		return XDP_DROP;
	if (nh == IPPROTO_TCP) {
		struct tcphdr *tcp = pos;
		if ((void *)(tcp + 1) <= end && tcp->doff >= 5 && tcp->dest == bpf_htons(23))
			return XDP_DROP;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

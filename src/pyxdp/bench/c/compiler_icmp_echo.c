/* C twin of ICMP_ECHO in pyxdp.bench.compiler_quality: answer IPv4 echo requests (XDP_TX) */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* linux/icmp.h pulls in libc headers that do not build for -target bpf */
struct icmphdr {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be16 id;
	__be16 sequence;
};
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

SEC("xdp")
int icmp_echo(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct icmphdr *icmp;
	unsigned char tmp[ETH_ALEN];
	__u32 addr, sum;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl < 5)
		return XDP_PASS;
	icmp = (void *)ip + ip->ihl * 4;
	if ((void *)(icmp + 1) > end || ip->protocol != IPPROTO_ICMP)
		return XDP_PASS;
	if (icmp->type != ICMP_ECHO)
		return XDP_PASS;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	icmp->type = ICMP_ECHOREPLY;
	/* RFC 1624: HC' = ~(~HC + ~m + m'), m = type/code word 0x0800, m' = 0x0000 */
	sum = (__u16)~bpf_ntohs(icmp->checksum) + (__u16)~0x0800;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	icmp->checksum = bpf_htons((__u16)~sum);
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";

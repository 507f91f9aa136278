/* Reference forwarder for pyxdp.bench.forward_speed, written to do what xdp-tools'
 * xdp-forward (fib-full mode) does, since this machine's xdp-tools 1.3.1 has no
 * xdp-forward: bpf_fib_lookup (IPv4 and IPv6, flags from FIB_FLAGS), TTL/hop-limit
 * decrement with an incremental IPv4 checksum, MAC rewrite, bpf_redirect_map through a
 * devmap keyed by egress ifindex; everything else to the stack.  No counters. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(key_size, sizeof(int));
	__uint(value_size, sizeof(int));
	__uint(max_entries, 256);
} tx_ports SEC(".maps");

volatile const __u32 FIB_FLAGS = 0;

SEC("xdp")
int forward_ref(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct bpf_fib_lookup p = {};
	int rc;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u32 sum;

		if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->ttl <= 1 ||
		    (ip->frag_off & bpf_htons(0x3fff)))
			return XDP_PASS;
		p.family = AF_INET;
		p.tos = ip->tos;
		p.l4_protocol = ip->protocol;
		p.tot_len = bpf_ntohs(ip->tot_len);
		p.ipv4_src = ip->saddr;
		p.ipv4_dst = ip->daddr;
		p.ifindex = ctx->ingress_ifindex;
		rc = bpf_fib_lookup(ctx, &p, sizeof(p), FIB_FLAGS);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return XDP_PASS;
		if (!bpf_map_lookup_elem(&tx_ports, &p.ifindex))
			return XDP_PASS;
		sum = ip->check;
		sum += bpf_htons(0x0100);
		ip->check = (__sum16)(sum + (sum >= 0xffff));
		ip->ttl--;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->hop_limit <= 1 || ip6->nexthdr == 0 ||
		    ip6->nexthdr == 44)
			return XDP_PASS;
		p.family = AF_INET6;
		p.flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0fffffff);
		p.l4_protocol = ip6->nexthdr;
		p.tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		__builtin_memcpy(p.ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(p.ipv6_dst, &ip6->daddr, 16);
		p.ifindex = ctx->ingress_ifindex;
		rc = bpf_fib_lookup(ctx, &p, sizeof(p), FIB_FLAGS);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return XDP_PASS;
		if (!bpf_map_lookup_elem(&tx_ports, &p.ifindex))
			return XDP_PASS;
		ip6->hop_limit--;
	} else {
		return XDP_PASS;
	}
	__builtin_memcpy(eth->h_dest, p.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, p.smac, ETH_ALEN);
	return bpf_redirect_map(&tx_ports, p.ifindex, 0);
}

char _license[] SEC("license") = "GPL";

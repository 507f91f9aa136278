/* C twin of c/compiler_flow_count.py for pyxdp.bench.compiler_quality: per-flow counters */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct flow {
	__be32 saddr, daddr;
	__be16 sport, dport;
	__u8 proto, pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct flow);
	__type(value, __u64);
} flows SEC(".maps");

SEC("xdp")
int flow_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct flow k = {};
	struct iphdr *ip;
	void *l4;
	__u64 one = 1, *n;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl < 5 || (void *)ip + ip->ihl * 4 > end)
		return XDP_PASS;
	k.saddr = ip->saddr;
	k.daddr = ip->daddr;
	k.proto = ip->protocol;
	l4 = (void *)ip + ip->ihl * 4;
	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *u = l4;
		if ((void *)(u + 1) <= end) {
			k.sport = u->source;
			k.dport = u->dest;
		}
	} else if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *t = l4;
		if ((void *)(t + 1) <= end && t->doff >= 5 && l4 + t->doff * 4 <= end) {
			k.sport = t->source;
			k.dport = t->dest;
		}
	}
	n = bpf_map_lookup_elem(&flows, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&flows, &k, &one, BPF_NOEXIST);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

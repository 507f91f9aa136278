/* C twin of examples/blocklist.py for pyxdp.bench.compiler_quality */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct key4 { __u32 prefixlen; __u32 addr; };
struct key6 { __u32 prefixlen; __u8 addr[16]; };

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct key4);
	__type(value, __u64);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} blocked4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct key6);
	__type(value, __u64);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} blocked6 SEC(".maps");

SEC("xdp")
int blocklist(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u64 *hits;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct key4 k = {32, 0};
		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return XDP_PASS;
		k.addr = ip->saddr;
		hits = bpf_map_lookup_elem(&blocked4, &k);
		if (hits) {
			__sync_fetch_and_add(hits, 1);
			return XDP_DROP;
		}
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct key6 k = {128};
		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		__builtin_memcpy(k.addr, &ip6->saddr, 16);
		hits = bpf_map_lookup_elem(&blocked6, &k);
		if (hits) {
			__sync_fetch_and_add(hits, 1);
			return XDP_DROP;
		}
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

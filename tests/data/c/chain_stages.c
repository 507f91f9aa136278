/* Chain stages: ordinary clang-built XDP programs, chained by rewriting their exits.
 * Each counts what it sees in its own slot of `seen`; `classify` uses the stack, a
 * bpf-to-bpf call and several exits, so the rewrite has to move all of them. */
#include "common.h"
#include <linux/if_ether.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&seen, &slot);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __attribute__((noinline)) int first_byte(void *data, void *end)
{
	if (data + 1 > end)
		return -1;
	return *(unsigned char *)data;
}

SEC("xdp")
int stage_pass(struct xdp_md *ctx)
{
	count(0);
	return XDP_PASS;
}

SEC("xdp")
int stage_drop(struct xdp_md *ctx)
{
	count(1);
	return XDP_DROP;
}

/* DROP frames whose first byte is 0xdd, ABORTED for empty ones, PASS the rest */
SEC("xdp")
int classify(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	char buf[24];
	int b = first_byte(data, end);

	count(2);
	if (b < 0)
		return XDP_ABORTED;
	__builtin_memset(buf, b, sizeof(buf));
	if (data + sizeof(buf) <= end && __builtin_memcmp(buf, data, 2) == 0 && b == 0xdd)
		return XDP_DROP;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

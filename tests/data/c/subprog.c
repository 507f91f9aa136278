/* bpf-to-bpf calls: two programs sharing non-inlined .text subprograms. */
#include "common.h"

__u64 result;

static __attribute__((noinline)) int add3(int x)
{
	return x + 3;
}

__attribute__((noinline)) int twice_add3(int x)
{
	return add3(x) * 2;
}

SEC("xdp")
int call_twice(struct xdp_md *ctx)
{
	result = twice_add3(ctx->ingress_ifindex + 1);
	return XDP_PASS;
}

SEC("tc")
int call_add3(struct __sk_buff *skb)
{
	result = add3(10);
	return 0;
}

char _license[] SEC("license") = "GPL";

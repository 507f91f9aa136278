/* A typeless __ksym: its address comes from /proc/kallsyms (_stext, the kernel's start). */
#include "common.h"

extern const void _stext __ksym;

__u64 out_addr;

SEC("xdp")
int ksym_addr(struct xdp_md *ctx)
{
	out_addr = (__u64)&_stext;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

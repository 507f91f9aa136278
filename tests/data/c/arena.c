/* An arena map: map_extra is the 64-bit user address, given with __ulong(). */
#include "common.h"

#define __pyxdp_cat(a, b) a##b
#define __pyxdp_concat(a, b) __pyxdp_cat(a, b)
#ifndef __ulong
#define __ulong(name, val) enum { __pyxdp_concat(__unique_value, __COUNTER__) = val } name
#endif

struct {
	__uint(type, 33);	/* BPF_MAP_TYPE_ARENA: newer than these uapi headers */
	__uint(map_flags, 1U << 10);	/* BPF_F_MMAPABLE */
	__uint(max_entries, 2);
	__ulong(map_extra, 0x40000000);	/* this clang encodes enums in 32 bits */
} arena SEC(".maps");

SEC("xdp")
int arena_prog(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

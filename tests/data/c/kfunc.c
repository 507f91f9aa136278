/* kfunc calls (.ksyms functions resolved against vmlinux BTF), as in the kernel's
 * test_xdp_dynptr: a dynptr over the XDP frame, a slice of its first byte.  XDP_DROP when
 * that byte is 0x42, else XDP_PASS. */
#include "common.h"

extern int bpf_dynptr_from_xdp(struct xdp_md *x, __u64 flags,
			       struct bpf_dynptr *ptr__uninit) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *ptr, __u32 offset,
			      void *buffer, __u32 buffer__szk) __ksym;

SEC("xdp")
int kfunc_prog(struct xdp_md *ctx)
{
	struct bpf_dynptr ptr;
	__u8 buf[1];
	__u8 *p;

	if (bpf_dynptr_from_xdp(ctx, 0, &ptr))
		return XDP_ABORTED;
	p = bpf_dynptr_slice(&ptr, 0, buf, sizeof(buf));
	if (!p)
		return XDP_ABORTED;
	return *p == 0x42 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";

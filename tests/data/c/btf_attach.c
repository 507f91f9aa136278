/* Sections that attach by kernel BTF (libbpf's SEC_ATTACH_BTF): the target after the '/'
 * is looked up in vmlinux with the attach type's prefix (bpf_iter_ for iter/); forcing
 * another program type (bpftool: type xdp) drops the lookup, as libbpf 1.2+ does.  The
 * bodies touch no context, so each also verifies as XDP. */
#include "common.h"

SEC("fentry/bpf_fentry_test1")
int known_target(void *ctx)
{
	return XDP_PASS;
}

SEC("fentry/pyxdp_no_such_function")
int missing_target(void *ctx)
{
	return XDP_PASS;
}

SEC("fentry")
int no_target(void *ctx)
{
	return XDP_PASS;
}

SEC("iter/bpf_map")
int map_iter(void *ctx)
{
	return 0;
}

char _license[] SEC("license") = "GPL";

/* No "license" section: libbpf loads it as not GPL-compatible, so the verifier refuses
 * the GPL-only bpf_trace_printk helper (no_license_printk); no_license_plain, which calls
 * no GPL-only helper, loads and is reported as not GPL-compatible. */
#include "common.h"

SEC("xdp")
int no_license_plain(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int no_license_printk(struct xdp_md *ctx)
{
	bpf_printk("gpl only");
	return XDP_PASS;
}

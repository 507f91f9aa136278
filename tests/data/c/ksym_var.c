/* A typed __ksym variable: LD_IMM64 BTF_ID of the per-CPU kernel variable 'runqueues',
 * read through bpf_this_cpu_ptr.  (A kernel without CONFIG_KALLSYMS_ALL cannot find its
 * address: the verifier then refuses it, for libbpf and pyxdp alike.) */
#include "common.h"

struct rq {
	int cpu;
} __attribute__((preserve_access_index));

extern const struct rq runqueues __ksym;

__s64 out_cpu = -1;

SEC("xdp")
int ksym_prog(struct xdp_md *ctx)
{
	struct rq *rq = (struct rq *)bpf_this_cpu_ptr(&runqueues);

	out_cpu = rq->cpu;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

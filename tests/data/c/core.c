/* CO-RE: read task_struct->tgid through a local (flavoured) definition, plus field and
 * type relocations resolved against the running kernel's BTF. */
#include "common.h"
#include <bpf/bpf_core_read.h>

struct task_struct___mini {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

struct xdp_buff___mini {
	void *data;
	void *data_end;
	int no_such_field;
} __attribute__((preserve_access_index));

enum xdp_action___mini { XDP_PASS___mini = 0 };

__u64 tgid_seen;
__u64 data_end_off;
__u64 buff_size;
__u64 missing_exists;
__u64 pass_value;

SEC("raw_tp/sys_enter")
int core_read(void *ctx)
{
	struct task_struct___mini *t = (void *)bpf_get_current_task();

	tgid_seen = BPF_CORE_READ(t, tgid);
	data_end_off = bpf_core_field_offset(struct xdp_buff___mini, data_end);
	buff_size = bpf_core_type_size(struct xdp_buff___mini);
	missing_exists = bpf_core_field_exists(struct xdp_buff___mini, no_such_field);
	pass_value = bpf_core_enum_value(enum xdp_action___mini, XDP_PASS___mini);
	return 0;
}

char _license[] SEC("license") = "GPL";

/* .kconfig externs: LINUX_KERNEL_VERSION, a bool, a tristate, an int, a string, and a weak
 * option no kernel has (zero).  The program copies them into .bss for the test to read. */
#include "common.h"
#include <stdbool.h>

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig;
extern enum libbpf_tristate CONFIG_IPV6 __kconfig;
extern int CONFIG_HZ __kconfig;
extern char CONFIG_DEFAULT_HOSTNAME[16] __kconfig;
extern int CONFIG_PYXDP_NO_SUCH_OPTION __kconfig __weak;

__u64 out[5];
char out_host[16];

SEC("xdp")
int kconfig_prog(struct xdp_md *ctx)
{
	int i;

	out[0] = LINUX_KERNEL_VERSION;
	out[1] = CONFIG_BPF_SYSCALL;
	out[2] = CONFIG_IPV6;
	out[3] = CONFIG_HZ;
	out[4] = CONFIG_PYXDP_NO_SUCH_OPTION;
	for (i = 0; i < 16; i++)
		out_host[i] = CONFIG_DEFAULT_HOSTNAME[i];
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

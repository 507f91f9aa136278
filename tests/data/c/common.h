/* Shared includes for the pyxdp loader test programs. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

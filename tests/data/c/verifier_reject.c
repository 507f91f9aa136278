/* A program the verifier must reject, with BTF line info: the loader's VerifierError has to
 * name this file and the line of the bad access, and show the end of the log.
 *
 * The bounds check covers the Ethernet header only; the read of the IPv4 protocol byte
 * (offset 23) is past it, so the verifier refuses the packet access.  A tc program, not
 * XDP: the suites that run every XDP program of tests/data/obj must not pick it up.
 */
#include "common.h"

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

SEC("tc")
int verifier_reject(struct __sk_buff *skb)
{
	unsigned char *data = (unsigned char *)(long)skb->data;
	unsigned char *data_end = (unsigned char *)(long)skb->data_end;
	__u32 sum = 0;
	int i;

	if (data + 14 > data_end)
		return TC_ACT_OK;
#pragma unroll
	for (i = 0; i < 12; i++)
		sum += data[i];			/* checked: inside the Ethernet header */
	if (sum == 0)
		return TC_ACT_SHOT;
	if (data[23] == 17)			/* BAD: IPv4 protocol, past the bounds check */
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";

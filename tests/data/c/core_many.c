/* CO-RE at scale: 40 relocations (field offsets, sizes, existence, type sizes) on local
 * flavours of eleven kernel types, resolved against the running kernel's BTF.  For the
 * load-time benchmark (bench load_speed, CO-RE rows) and the loader's tag comparison. */
#include "common.h"
#include <bpf/bpf_core_read.h>

#define PAI __attribute__((preserve_access_index))
struct sk_buff___b { unsigned int len, data_len; __u32 mark, priority; __u16 protocol; } PAI;
struct net_device___b { int ifindex; unsigned int mtu, flags; } PAI;
struct task_struct___b { int pid, tgid, prio; } PAI;
struct file___b { unsigned int f_flags; unsigned int f_mode; } PAI;
struct inode___b { unsigned short i_mode; unsigned long i_ino; } PAI;
struct xdp_buff___b { void *data, *data_end, *data_meta; } PAI;
struct tcphdr___b { __u16 source, dest; __u32 seq, ack_seq; } PAI;
struct ethhdr___b { unsigned char h_dest[6]; unsigned char h_source[6]; __u16 h_proto; } PAI;
struct iphdr___b { __u8 tos; __u16 tot_len, id; __u8 ttl, protocol; __u32 saddr, daddr; } PAI;
struct ipv6hdr___b { __u16 payload_len; __u8 nexthdr, hop_limit; } PAI;
struct udphdr___b { __u16 source, dest, len, check; } PAI;

__u64 acc[4];

#define OFF(t, f) bpf_core_field_offset(struct t, f)
#define SZ(t, f) bpf_core_field_size(struct t, f)
#define EX(t, f) bpf_core_field_exists(struct t, f)

SEC("raw_tp/sys_enter")
int core_many(void *ctx)
{
	acc[0] = OFF(sk_buff___b, len) + OFF(sk_buff___b, data_len) + OFF(sk_buff___b, mark)
		+ OFF(sk_buff___b, priority) + OFF(sk_buff___b, protocol)
		+ OFF(net_device___b, ifindex) + OFF(net_device___b, mtu)
		+ OFF(net_device___b, flags) + OFF(task_struct___b, pid)
		+ OFF(task_struct___b, tgid) + OFF(task_struct___b, prio);
	acc[1] = OFF(file___b, f_flags) + OFF(file___b, f_mode) + OFF(inode___b, i_mode)
		+ OFF(inode___b, i_ino) + OFF(xdp_buff___b, data) + OFF(xdp_buff___b, data_end)
		+ OFF(xdp_buff___b, data_meta) + OFF(tcphdr___b, source) + OFF(tcphdr___b, dest)
		+ OFF(tcphdr___b, seq) + OFF(tcphdr___b, ack_seq);
	acc[2] = OFF(ethhdr___b, h_proto) + OFF(iphdr___b, tos) + OFF(iphdr___b, tot_len)
		+ OFF(iphdr___b, id) + OFF(iphdr___b, ttl) + OFF(iphdr___b, protocol)
		+ OFF(iphdr___b, saddr) + OFF(iphdr___b, daddr) + OFF(ipv6hdr___b, payload_len)
		+ OFF(ipv6hdr___b, nexthdr) + OFF(udphdr___b, len) + OFF(udphdr___b, check);
	acc[3] = SZ(sk_buff___b, len) + SZ(iphdr___b, saddr) + EX(task_struct___b, prio)
		+ bpf_core_type_size(struct udphdr___b) + bpf_core_type_size(struct ethhdr___b)
		+ EX(ipv6hdr___b, hop_limit);
	return 0;
}

char _license[] SEC("license") = "GPL";

"""Count packets per IP protocol number in a per-CPU array (key 0 also counts non-IP)."""

from pyxdp.compiler.lang import (
    ETH_P_IP,
    ETH_P_IPV6,
    XDP_PASS,
    Ethernet,
    IPv4,
    IPv6,
    PerCpuArray,
    u32,
    u64,
    xdp,
)

counts = PerCpuArray[u32, u64](max_entries=256)


@xdp
def count_protocols(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        return XDP_PASS
    proto: u32 = 0
    if eth.proto == ETH_P_IP:
        ip = c.parse(IPv4)
        if not ip:
            return XDP_PASS
        proto = ip.protocol
    elif eth.proto == ETH_P_IPV6:
        ip6 = c.parse(IPv6)
        if not ip6:
            return XDP_PASS
        proto = ip6.nexthdr
    counts.add(proto, 1)
    return XDP_PASS

# mypy: ignore-errors
"""IPIP load balancer (pyxdp.bench.compiler_quality): pick a backend by a flow hash of the
IPv4 addresses, push an outer IPv4 header towards it, XDP_TX."""

from pyxdp.compiler.lang import (  # type: ignore[attr-defined]  # builtins are set at import
    ETH_P_IP,
    XDP_ABORTED,
    XDP_PASS,
    XDP_TX,
    ArrayMap,
    Ethernet,
    IPv4,
    ip4,
    ipv4_csum,
    u32,
    xdp,
)

backends = ArrayMap[u32, u32](max_entries=4)


@xdp
def ipip_lb(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return XDP_PASS
    ip = c.parse(IPv4)
    if not ip:
        return XDP_PASS
    h: u32 = ip.saddr ^ ip.daddr
    h ^= h >> 16
    be = backends.lookup(h & 3)
    if not be or be.value == 0:
        return XDP_PASS
    daddr: u32 = be.value
    dst, src = eth.dst, eth.src
    if ctx.adjust_head(-20) != 0:
        return XDP_ABORTED
    c = ctx.cursor()
    neth = c.header(Ethernet)
    outer = c.header(IPv4)
    if not neth or not outer:
        return XDP_ABORTED
    neth.dst, neth.src, neth.proto = src, dst, ETH_P_IP
    outer.version = 4
    outer.ihl = 5
    outer.tos = 0
    outer.tot_len = ctx.packet_len() - 14
    outer.id = 0
    outer.frag_off = 0
    outer.ttl = 64
    outer.protocol = 4
    outer.saddr = ip4("198.18.0.100")
    outer.daddr = daddr
    outer.check = 0
    outer.check = ipv4_csum(outer)
    return XDP_TX

"""Walk IPv6 extension headers (bounded loop) to the upper-layer protocol.

Drops fragments and TCP to port 23 (telnet), whatever extension headers precede them.
"""

from pyxdp.compiler.lang import (
    ETH_P_IPV6,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ROUTING,
    IPPROTO_TCP,
    TCP,
    XDP_DROP,
    XDP_PASS,
    Ethernet,
    IPv6,
    IPv6Ext,
    xdp,
)

MAX_EXT = 6
BLOCKED_PORT = 23


def is_ext(nh):
    return nh in (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS)


@xdp
def ipv6_ext(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IPV6:
        return XDP_PASS
    ip6 = c.parse(IPv6)
    if not ip6:
        return XDP_PASS
    nh = ip6.nexthdr
    for _ in range(MAX_EXT):
        if not is_ext(nh):
            break
        ext = c.parse(IPv6Ext)
        if not ext:
            return XDP_DROP
        nh = ext.nexthdr
    if nh == IPPROTO_FRAGMENT:
        return XDP_DROP
    if nh == IPPROTO_TCP:
        tcp = c.parse(TCP)
        if tcp and tcp.dest == BLOCKED_PORT:
            return XDP_DROP
    return XDP_PASS

"""Decapsulate IPIP and GUE (UDP port 6080) tunnels: strip the outer headers and keep
the Ethernet addresses."""

from pyxdp.compiler.lang import (
    ETH_P_IP,
    GUE,
    IPPROTO_IPIP,
    IPPROTO_UDP,
    UDP,
    XDP_ABORTED,
    XDP_PASS,
    Ethernet,
    IPv4,
    u32,
    xdp,
)

GUE_PORT = 6080


@xdp
def decap(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return XDP_PASS
    ip = c.parse(IPv4)
    if not ip:
        return XDP_PASS
    strip: u32 = 0
    if ip.protocol == IPPROTO_IPIP:
        strip = ip.ihl * 4
    elif ip.protocol == IPPROTO_UDP:
        udp = c.parse(UDP)
        if not udp or udp.dest != GUE_PORT:
            return XDP_PASS
        gue = c.parse(GUE)
        if not gue or gue.proto_ctype != IPPROTO_IPIP:
            return XDP_PASS
        strip = c.offset() - 14
    else:
        return XDP_PASS
    dst = eth.dst
    src = eth.src
    if ctx.adjust_head(strip) != 0:
        return XDP_ABORTED
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        return XDP_ABORTED
    eth.dst = dst
    eth.src = src
    eth.proto = ETH_P_IP
    return XDP_PASS

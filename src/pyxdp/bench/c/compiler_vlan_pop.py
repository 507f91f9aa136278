# mypy: ignore-errors
"""VLAN pop (pyxdp.bench.compiler_quality): strip one 802.1Q tag, XDP_PASS the frame."""

from pyxdp.compiler.lang import (
    ETH_P_8021Q,
    VLAN,
    XDP_ABORTED,
    XDP_PASS,
    Ethernet,
    xdp,
)


@xdp
def vlan_pop(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_8021Q:
        return XDP_PASS
    tag = c.parse(VLAN)
    if not tag:
        return XDP_PASS
    inner = tag.proto
    dst, src = eth.dst, eth.src
    if ctx.adjust_head(4) != 0:
        return XDP_ABORTED
    c = ctx.cursor()
    neth = c.header(Ethernet)
    if not neth:
        return XDP_ABORTED
    neth.dst, neth.src, neth.proto = dst, src, inner
    return XDP_PASS

"""Reflect every Ethernet frame: swap source and destination MAC, transmit it back."""

from pyxdp.compiler.lang import XDP_DROP, XDP_TX, Ethernet, xdp


@xdp
def swap_macs(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        return XDP_DROP
    eth.src, eth.dst = eth.dst, eth.src
    return XDP_TX

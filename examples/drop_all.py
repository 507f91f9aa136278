"""Drop every packet."""

from pyxdp.compiler.lang import XDP_DROP, xdp


@xdp
def drop_all(ctx):
    return XDP_DROP

"""Redirect through a devmap: the port is the last byte of the destination MAC (mod 64);
frames for ports without an entry are passed to the stack."""

from pyxdp.compiler.lang import XDP_DROP, XDP_PASS, DevMap, Ethernet, xdp

tx_ports = DevMap(max_entries=64)


@xdp
def devmap_redirect(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        return XDP_DROP
    return tx_ports.redirect(eth.dst[5] & 63, XDP_PASS)

# mypy: ignore-errors
"""ICMP echo responder (pyxdp.bench.compiler_quality): IPv4 echo request -> reply, XDP_TX."""

from pyxdp.compiler.lang import (  # type: ignore[attr-defined]  # builtins are set at import
    ETH_P_IP,
    ICMP,
    IPPROTO_ICMP,
    XDP_PASS,
    XDP_TX,
    Ethernet,
    IPv4,
    csum_replace2,
    xdp,
)


@xdp
def icmp_echo(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return XDP_PASS
    ip = c.parse(IPv4)
    if not ip or ip.protocol != IPPROTO_ICMP:
        return XDP_PASS
    icmp = c.parse(ICMP)
    if not icmp or icmp.type != 8:
        return XDP_PASS
    eth.src, eth.dst = eth.dst, eth.src
    ip.saddr, ip.daddr = ip.daddr, ip.saddr
    icmp.type = 0
    icmp.checksum = csum_replace2(icmp.checksum, 0x0800, 0x0000)
    return XDP_TX

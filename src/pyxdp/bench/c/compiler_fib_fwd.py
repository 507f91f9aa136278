# mypy: ignore-errors
"""FIB forwarder (pyxdp.bench.compiler_quality): bpf_fib_lookup on the IPv4 destination,
TTL decrement with an incremental checksum fix, MAC rewrite, redirect to the egress port."""

from pyxdp.compiler.lang import (  # type: ignore[attr-defined]  # builtins are set at import
    BPF_FIB_LKUP_RET_SUCCESS,
    ETH_P_IP,
    XDP_PASS,
    Ethernet,
    FibParams,
    IPv4,
    csum_replace2,
    fib_lookup,
    redirect,
    xdp,
)


@xdp
def fib_fwd(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return XDP_PASS
    ip = c.parse(IPv4)
    if not ip or ip.ttl <= 1:
        return XDP_PASS
    p = FibParams(family=2, l4_protocol=ip.protocol, tot_len=ip.tot_len, tos=ip.tos,
                  ifindex=ctx.ingress_ifindex, ipv4_src=ip.saddr, ipv4_dst=ip.daddr)
    if fib_lookup(ctx, p, 0) != BPF_FIB_LKUP_RET_SUCCESS:
        return XDP_PASS
    old = (ip.ttl << 8) | ip.protocol
    ip.ttl -= 1
    ip.check = csum_replace2(ip.check, old, old - 0x100)
    eth.dst = p.dmac
    eth.src = p.smac
    return redirect(p.ifindex, 0)

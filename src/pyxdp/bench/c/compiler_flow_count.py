# mypy: ignore-errors
"""Per-flow counters (pyxdp.bench.compiler_quality): count packets per IPv4 5-tuple in a
hash map, XDP_PASS."""

from pyxdp.compiler.lang import (
    BPF_NOEXIST,
    ETH_P_IP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP,
    UDP,
    XDP_PASS,
    Ethernet,
    HashMap,
    IPv4,
    Struct,
    atomic_add,
    be16,
    be32,
    u8,
    u64,
    xdp,
)


class Flow(Struct):
    saddr: be32
    daddr: be32
    sport: be16
    dport: be16
    proto: u8
    pad: u8[3]


flows = HashMap[Flow, u64](max_entries=4096)


@xdp
def flow_count(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return XDP_PASS
    ip = c.parse(IPv4)
    if not ip:
        return XDP_PASS
    k = Flow(saddr=ip.saddr, daddr=ip.daddr, proto=ip.protocol)
    if ip.protocol == IPPROTO_UDP:
        u = c.parse(UDP)
        if u:
            k.sport = u.source
            k.dport = u.dest
    elif ip.protocol == IPPROTO_TCP:
        t = c.parse(TCP)
        if t:
            k.sport = t.source
            k.dport = t.dest
    n = flows.lookup(k)
    if n:
        atomic_add(n.value, 1)
    else:
        flows.update(k, 1, BPF_NOEXIST)
    return XDP_PASS

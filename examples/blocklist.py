"""Drop packets whose IPv4 or IPv6 source is in an LPM-trie blocklist; count the hits."""

from pyxdp.compiler.lang import (
    ETH_P_IP,
    ETH_P_IPV6,
    XDP_DROP,
    XDP_PASS,
    Ethernet,
    IPv4,
    IPv6,
    LpmKey4,
    LpmKey6,
    LpmTrie,
    atomic_add,
    u64,
    xdp,
)

blocked4 = LpmTrie[LpmKey4, u64](max_entries=1024)
blocked6 = LpmTrie[LpmKey6, u64](max_entries=1024)


@xdp
def blocklist(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        return XDP_PASS
    if eth.proto == ETH_P_IP:
        ip = c.parse(IPv4)
        if not ip:
            return XDP_PASS
        hits = blocked4.lookup(LpmKey4(prefixlen=32, addr=ip.saddr))
        if hits:
            atomic_add(hits.value, 1)
            return XDP_DROP
    elif eth.proto == ETH_P_IPV6:
        ip6 = c.parse(IPv6)
        if not ip6:
            return XDP_PASS
        hits6 = blocked6.lookup(LpmKey6(prefixlen=128, addr=ip6.saddr))
        if hits6:
            atomic_add(hits6.value, 1)
            return XDP_DROP
    return XDP_PASS

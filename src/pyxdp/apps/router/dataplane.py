# mypy: ignore-errors
"""The router's packet path, in pyxdp's Python dialect (compiled, never imported to run).

Per packet: parse Ethernet + IPv4/IPv6; hand to the stack (XDP_PASS) whatever it must see
(TTL/hop limit <= 1, IPv4 options, fragments, IPv6 hop-by-hop options, packets the FIB says
are local, unresolved neighbours, MTU exceeded, routes of type blackhole/unreachable/
prohibit, forwarding disabled); otherwise ``bpf_fib_lookup`` against the kernel's own
routing and neighbour tables, TTL/hop-limit decrement (IPv4: RFC 1624 incremental checksum),
MAC rewrite, and a redirect through ``tx_ports`` (a devmap keyed by egress ifindex).

Every verdict is counted in ``stats`` (per CPU, indexed by reason) and every forwarded
packet in ``egress`` (per CPU, indexed by egress ifindex).  ``ports[ifindex] = 1`` marks
the router's interfaces: a route leaving through any other interface goes to the stack
*before* the packet is changed.
"""

from pyxdp.compiler.lang import (  # type: ignore[attr-defined]
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    XDP_PASS,
    ArrayMap,
    Const,
    DevMap,
    Ethernet,
    FibParams,
    IPv4,
    IPv6,
    PerCpuArray,
    Struct,
    be16,
    be32,
    csum_replace2,
    fib_lookup,
    u8,
    u16,
    u32,
    u64,
    xdp,
)

# reasons (indices into `stats`); pyxdp.apps.router.control.REASONS names them
R_FORWARDED = 0
R_NOT_IP = 1
R_MALFORMED = 2
R_TTL = 3
R_OPTIONS = 4
R_FRAGMENT = 5
R_LOCAL = 6          # BPF_FIB_LKUP_RET_NOT_FWDED: local address, or no route
R_NO_NEIGH = 7
R_FRAG_NEEDED = 8
R_UNREACHABLE = 9    # blackhole / unreachable / prohibit routes
R_FWD_DISABLED = 10
R_OTHER = 11         # UNSUPP_LWT, NO_SRC_ADDR, helper errors
R_NOT_PORT = 12      # egress interface is not a router port
N_REASONS = 16

MAX_IFINDEX = 4096   # resized by the control plane to the largest port ifindex + 1

# BPF_FIB_LOOKUP_DIRECT (1) skips policy-routing rules; set by the control plane
FIB_FLAGS = Const(u32, 0)


class Counter(Struct):
    packets: u64
    bytes: u64


class FibParams6(Struct):
    """``struct bpf_fib_lookup`` with the address unions as 16-byte arrays, for IPv6 (the
    dialect's FibParams has IPv4 fields only; fib_lookup accepts a struct by the name
    FibParams, hence the renamed type below)."""

    family: u8
    l4_protocol: u8
    sport: be16
    dport: be16
    tot_len: u16
    ifindex: u32
    flowinfo: be32
    src_a: u64          # the addresses as two u64 each: copied with 8-byte loads
    src_b: u64
    dst_a: u64
    dst_b: u64
    vlan_proto: be16
    vlan_tci: be16
    smac: u8[6]
    dmac: u8[6]



FibParams6.__pyxdp_type__.name = "FibParams"

stats = PerCpuArray[u32, Counter](max_entries=N_REASONS)
egress = PerCpuArray[u32, Counter](max_entries=MAX_IFINDEX)
ports = ArrayMap[u32, u32](max_entries=MAX_IFINDEX)
tx_ports = DevMap(max_entries=MAX_IFINDEX)


def count(reason, length):
    c = stats.lookup(reason)
    if c:
        c.packets += 1
        c.bytes += length


def fib_reason(rc):
    """The reason a non-success ``bpf_fib_lookup`` result is passed to the stack."""
    if rc == 4:
        return R_LOCAL
    if rc == 7:
        return R_NO_NEIGH
    if rc == 8:
        return R_FRAG_NEEDED
    if rc == 1 or rc == 2 or rc == 3:
        return R_UNREACHABLE
    if rc == 5:
        return R_FWD_DISABLED
    return R_OTHER


def forward(ctx, eth, ifindex, smac, dmac, length):
    """Count and redirect a packet the FIB resolved (MACs rewritten here)."""
    eth.dst = dmac
    eth.src = smac
    count(R_FORWARDED, length)
    e = egress.lookup(ifindex)
    if e:
        e.packets += 1
        e.bytes += length
    return tx_ports.redirect(ifindex, XDP_PASS)


@xdp
def xdp_router(ctx):
    length = ctx.data_end - ctx.data
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        count(R_MALFORMED, length)
        return XDP_PASS
    if eth.proto == ETH_P_IP:
        ip = c.parse(IPv4)
        if not ip:
            count(R_MALFORMED, length)
            return XDP_PASS
        if ip.ihl != 5:
            count(R_OPTIONS if ip.ihl > 5 else R_MALFORMED, length)
            return XDP_PASS
        if ip.frag_off & 0x3FFF:
            count(R_FRAGMENT, length)
            return XDP_PASS
        if ip.ttl <= 1:
            count(R_TTL, length)
            return XDP_PASS
        p = FibParams(family=2, l4_protocol=ip.protocol, tot_len=ip.tot_len, tos=ip.tos,
                      ifindex=ctx.ingress_ifindex, ipv4_src=ip.saddr, ipv4_dst=ip.daddr)
        rc = fib_lookup(ctx, p, FIB_FLAGS)
        if rc != 0:
            count(fib_reason(rc), length)
            return XDP_PASS
        pv = ports.lookup(p.ifindex)
        if not pv or pv.value == 0:
            count(R_NOT_PORT, length)
            return XDP_PASS
        old = (ip.ttl << 8) | ip.protocol
        ip.ttl -= 1
        ip.check = csum_replace2(ip.check, old, old - 0x100)
        return forward(ctx, eth, p.ifindex, p.smac, p.dmac, length)
    if eth.proto == ETH_P_IPV6:
        ip6 = c.parse(IPv6)
        if not ip6:
            count(R_MALFORMED, length)
            return XDP_PASS
        if ip6.nexthdr == IPPROTO_HOPOPTS:
            count(R_OPTIONS, length)
            return XDP_PASS
        if ip6.nexthdr == IPPROTO_FRAGMENT:
            count(R_FRAGMENT, length)
            return XDP_PASS
        if ip6.hop_limit <= 1:
            count(R_TTL, length)
            return XDP_PASS
        # IPv6 header at offset 14: flow word at 14, source at 22, destination at 38
        q = FibParams6(family=10, l4_protocol=ip6.nexthdr, tot_len=ip6.payload_len + 40,
                       ifindex=ctx.ingress_ifindex,
                       flowinfo=ctx.load(be32, 14).value & 0x0FFFFFFF,
                       src_a=ctx.load(u64, 22).value, src_b=ctx.load(u64, 30).value,
                       dst_a=ctx.load(u64, 38).value, dst_b=ctx.load(u64, 46).value)
        rc6 = fib_lookup(ctx, q, FIB_FLAGS)
        if rc6 != 0:
            count(fib_reason(rc6), length)
            return XDP_PASS
        pv6 = ports.lookup(q.ifindex)
        if not pv6 or pv6.value == 0:
            count(R_NOT_PORT, length)
            return XDP_PASS
        ip6.hop_limit -= 1
        return forward(ctx, eth, q.ifindex, q.smac, q.dmac, length)
    count(R_NOT_IP, length)
    return XDP_PASS

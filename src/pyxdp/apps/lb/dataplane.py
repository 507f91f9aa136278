# mypy: ignore-errors
"""The load balancer's packet path, in pyxdp's Python dialect (compiled, never imported to
run).

One program, ``xdp_lb``, on the LB's port(s).  Per frame:

1. Parse Ethernet, IPv4 (no options, not a fragment: those go to the stack, counted) or
   IPv6 (TCP/UDP right after the fixed header; extension headers go to the stack), then
   TCP or UDP.
2. Look the virtual service up in ``vips`` by (family, VIP, port, protocol), then by
   (family, VIP, 0, protocol) for an all-ports VIP; no service: XDP_PASS.
3. The connection table ``conns`` (an LRU hash with one LRU list per CPU) maps the 5-tuple
   to the real that took the flow; a hit sticks to it while the real exists (its epoch
   matches), so established flows survive ring changes.  A miss hashes the 5-tuple into
   the service's Maglev ring (``ring``, two banks per service: the control plane writes
   the inactive bank, then flips ``Vip.flags & V_BANK`` in one map update, so a packet
   sees the old ring or the new, never a mix).  *Second hop*: a TCP packet that is not a
   SYN, with no connection entry, during ``Vip.prev_until`` after a ring change, goes to
   the real of the *previous* bank (if it still exists): the established flow whose
   entry was lost (eviction, an LB restart) while its bucket moved is still delivered
   to the real that has its socket.
4. Forward by the service's method: IPIP (IPv4-in-IPv4/IPv6 or IPv6-in-IPv4/IPv6 by the
   real's family, protocol 4 or 41), GUE (outer UDP to ``GUE_PORT``, variant 1: the inner
   IP straight after UDP, or variant 0 with a GUE header; the UDP source port from the
   flow hash, so the backends' RSS spreads the flows), or DSR (the frame unchanged but
   for its Ethernet addresses: the real has the VIP on its loopback).  The next hop comes
   from ``bpf_fib_lookup`` (the kernel's routes and neighbours), cached per real and
   refreshed once it is ``NH_TTL`` old (the clock read every 64th packet per CPU): a
   route or neighbour change reaches the data plane within about a second.  Out with
   XDP_TX when the next hop is behind the ingress port, else through ``tx_ports`` (a
   devmap: another NIC).  A frame that would exceed the MTU once encapsulated is answered
   in XDP: ICMP "fragmentation needed" (IPv4 with DF) or ICMPv6 "packet too big".

Speed: ``pick`` and ``forward`` are inlined into the program (as subprograms they cost
~15 ns a packet in calls), the flow hash is computed only for a new flow or when the
method needs it (GUE port, IPv6 flow label, a hashed IPv4 source), and the outer IPv4
checksum is summed inline.

Counters: ``stats`` per reason, ``vip_stats`` per service, ``real_stats`` per real
(packets and bytes, per CPU).
"""

from pyxdp.apps.router.dataplane import FibParams6
from pyxdp.apps.tunnel.dataplane import Counter, GUEHdr, Icmp4Big, Icmp6Big, IPv6W, Pseudo6
from pyxdp.compiler.lang import (  # type: ignore[attr-defined]
    BPF_F_NO_COMMON_LRU,
    ETH_P_IP,
    ETH_P_IPV6,
    TCP,
    UDP,
    XDP_DROP,
    XDP_PASS,
    XDP_TX,
    ArrayMap,
    Const,
    DevMap,
    Ethernet,
    HashMap,
    IPv4,
    IPv6,
    LruHashMap,
    PerCpuArray,
    Struct,
    bswap32,
    csum_diff,
    csum_fold,
    fib_lookup,
    ipv4_csum,
    ktime_get_coarse_ns,
    ktime_get_ns,
    subprog,
    u8,
    u16,
    u32,
    u64,
    xdp,
)

# methods (Vip.flags & M_MASK); pyxdp.apps.lb.config.METHODS names them
M_IPIP = 1
M_GUE = 2
M_DSR = 3
M_MASK = 0xF
V_BANK = 0x10         # the active ring bank (0 or 1)
V_GUE0 = 0x20         # GUE variant 0 (a GUE header); else variant 1
V_QUIC = 0x40         # UDP: route QUIC packets by the host id in their connection id

NO_REAL = 0xFFFFFFFF

# reasons (indices into `stats`); pyxdp.apps.lb.control.REASONS names them
R_FORWARDED = 0
R_NOT_VIP = 1         # not a service's packet: to the stack
R_NOT_IP = 2
R_MALFORMED = 3
R_FRAGMENT = 4        # IPv4 fragments: to the stack
R_OPTIONS = 5         # IPv4 options / IPv6 extension headers: to the stack
R_NO_REAL = 6         # a service without a real that takes flows: dropped
R_LRU_HIT = 7
R_LRU_MISS = 8        # a new flow (or one whose entry was lost): hashed into the ring
R_SECOND_HOP = 9      # delivered to the previous ring's real (see the docstring)
R_ICMP_SENT = 10      # too big once encapsulated: ICMP / ICMPv6 answered
R_TOO_BIG_DROP = 11
R_NO_ROUTE = 12       # bpf_fib_lookup: no route / neighbour for the real: to the stack
R_ERROR = 13          # adjust_head failed
R_STALE = 14          # a connection entry whose real is gone: rehashed
R_QUIC_ROUTED = 15    # QUIC: the connection id's host id named the real
R_QUIC_HASHED = 16    # QUIC: an Initial/0-RTT, or a host id of no real: hashed as usual
N_REASONS = 20

MAX_VIPS = 64         # resized by the control plane
MAX_REALS = 1024
MAX_IFINDEX = 4096

RING = Const(u32, 16381)        # Maglev ring size (prime)
GUE_PORT = Const(u16, 6080)
SRC4 = Const(u32, 0)            # outer IPv4 source (host order)
SRC4_HOSTMASK = Const(u32, 0)   # low bits of SRC4 taken from the flow hash (0: fixed)
SRC6_A = Const(u64, 0)          # outer IPv6 source, raw words
SRC6_B = Const(u64, 0)
ICMP_SRC4 = Const(u32, 0)       # source of "fragmentation needed"; 0: drop instead
ICMP_SRC6_A = Const(u64, 0)
ICMP_SRC6_B = Const(u64, 0)
MTU = Const(u32, 0)             # outer MTU; 0: the egress route's (bpf_fib_lookup)
NH_TTL = Const(u64, 1000000000)  # ns a resolved next hop is used before it is refreshed
SECOND_HOP = Const(u32, 1)
QUIC = Const(u32, 1)            # 0: no QUIC connection-id routing compiled in (V_QUIC)


class VipKey(Struct):
    a: u64            # IPv4: the address (host order); IPv6: raw words
    b: u64
    port: u16         # host order; 0: all ports
    proto: u8
    fam: u8
    pad: u32


class Vip(Struct):
    num: u32          # the service's index: ring banks, counters
    flags: u32        # method | V_BANK | V_GUE0
    prev_until: u64   # ktime ns until which the second hop may use the other bank


class Real(Struct):
    a: u64            # as VipKey
    b: u64
    fam: u32          # 4 or 6; 0: no real in this slot
    epoch: u32        # changes when the slot is given to another real
    # the next hop towards the real, from bpf_fib_lookup, refreshed every NH_TTL ns
    # (coarse clock) by whichever CPU finds it old: a route or neighbour change reaches
    # the data plane within NH_TTL, and the FIB is not walked for every packet
    nh_time: u64      # 0: never resolved (the control plane writes 0)
    nh_ifindex: u32
    nh_mtu: u32       # the route's MTU (65535: none reported)
    dmac: u8[6]
    smac: u8[6]
    pad: u32


class FlowKey(Struct):
    sa: u64
    sb: u64
    da: u64
    db: u64
    sport: u16
    dport: u16
    proto: u8
    fam: u8
    pad: u16


class Flow(Struct):
    real: u32
    epoch: u32


vips = HashMap[VipKey, Vip](max_entries=MAX_VIPS)
ring = ArrayMap[u32, u32](max_entries=MAX_VIPS * 2 * 16381)
reals = ArrayMap[u32, Real](max_entries=MAX_REALS)
conns = LruHashMap[FlowKey, Flow](max_entries=65536, flags=BPF_F_NO_COMMON_LRU)
stats = PerCpuArray[u32, Counter](max_entries=N_REASONS)
vip_stats = PerCpuArray[u32, Counter](max_entries=MAX_VIPS)
real_stats = PerCpuArray[u32, Counter](max_entries=MAX_REALS)
tx_ports = DevMap(max_entries=MAX_IFINDEX)
# QUIC: (service number << 16 | host id) -> real slot
quic_ids = HashMap[u32, u32](max_entries=4096)
# per CPU: packets since the clock was last read for the next-hop cache (read every 64)
nh_tick = PerCpuArray[u32, u64](max_entries=1)


def count(reason, length):
    c = stats.lookup(reason)
    if c:
        c.packets += 1
        c.bytes += length


def count_vip(num, length):
    c = vip_stats.lookup(num)
    if c:
        c.packets += 1
        c.bytes += length


def count_real(num, length):
    c = real_stats.lookup(num)
    if c:
        c.packets += 1
        c.bytes += length


def mix(h):
    """A 32-bit finaliser (murmur3's), for the flow hash."""
    h ^= h >> 16
    h *= 0x85EBCA6B
    h ^= h >> 13
    h *= 0xC2B2AE35
    h ^= h >> 16
    return h


def flow_hash(k):
    h: u32 = u32(k.sa) ^ u32(k.sa >> 32) ^ u32(k.sb) ^ u32(k.sb >> 32)
    h = mix(h ^ 0x9E3779B9)
    h = mix(h ^ u32(k.da) ^ u32(k.db))
    h = mix(h ^ ((u32(k.sport) << 16) | k.dport) ^ (u32(k.proto) << 8))
    return h


def pick(k, v, syn):
    """The real for flow ``k`` of service ``v`` (a Vip), or NO_REAL.  The flow hash is
    computed here only for a new flow (a connection-table hit does not need it)."""
    f = conns.lookup(k)
    if f:
        r = reals.lookup(f.real)
        if r and r.fam != 0 and r.epoch == f.epoch:
            count(R_LRU_HIT, 0)
            return f.real
        count(R_STALE, 0)
    count(R_LRU_MISS, 0)
    h = flow_hash(k)
    bank: u32 = 0
    if v.flags & V_BANK:
        bank = 1
    base: u32 = (v.num * 2 + bank) * RING
    e = ring.lookup(base + h % RING)
    if not e:
        return NO_REAL
    real: u32 = e.value
    if SECOND_HOP and k.proto == 6 and not syn and v.prev_until != 0:  # noqa: SIM102
        if ktime_get_ns() < v.prev_until:              # the clock only when needed
            o = ring.lookup((v.num * 2 + (1 - bank)) * RING + h % RING)
            if o and o.value != real and o.value != NO_REAL:
                ro = reals.lookup(o.value)
                if ro and ro.fam != 0:
                    real = o.value
                    count(R_SECOND_HOP, 0)
    if real == NO_REAL:
        return NO_REAL
    rr = reals.lookup(real)
    if not rr or rr.fam == 0:
        return NO_REAL
    conns.update(k, Flow(real=real, epoch=rr.epoch), 0)
    return real


@subprog
def too_big4(ctx, mtu, length):
    """Answer an IPv4 packet (at 14, ihl 5) that cannot go: ICMP type 3 code 4 with
    ``mtu``, back out of the ingress port."""
    if ICMP_SRC4 == 0:
        count(R_TOO_BIG_DROP, length)
        return XDP_DROP
    c0 = ctx.cursor()
    eth0 = c0.parse(Ethernet)
    ip0 = c0.parse(IPv4)
    if not eth0 or not ip0 or ip0.ihl != 5:
        count(R_TOO_BIG_DROP, length)
        return XDP_DROP
    dst = eth0.dst
    src = eth0.src
    peer = ip0.saddr
    if ctx.adjust_head(-28) != 0:
        count(R_ERROR, length)
        return XDP_DROP
    if ctx.adjust_tail(14 + 56 - ctx.packet_len()) != 0:
        count(R_ERROR, length)
        return XDP_DROP
    c = ctx.cursor()
    eth = c.header(Ethernet)
    ip = c.header(IPv4)
    msg = c.header(Icmp4Big)
    if not eth or not ip or not msg:
        count(R_ERROR, length)
        return XDP_DROP
    eth.dst = src
    eth.src = dst
    eth.proto = ETH_P_IP
    ip.ver_ihl = 0x45
    ip.tos = 0xC0
    ip.tot_len = 56
    ip.id = 0
    ip.frag_off = 0
    ip.ttl = 64
    ip.protocol = 1
    ip.saddr = ICMP_SRC4
    ip.daddr = peer
    ip.check = 0
    ip.check = ipv4_csum(ip)
    msg.type = 3
    msg.code = 4
    msg.checksum = 0
    msg.unused = 0
    msg.mtu = mtu
    msg.checksum = csum_fold(csum_diff(None, msg, 0))
    count(R_ICMP_SENT, length)
    return XDP_TX


@subprog
def too_big6(ctx, mtu, length):
    """ICMPv6 "packet too big" (type 2) with ``mtu`` for the IPv6 packet at 14."""
    if ICMP_SRC6_A == 0 and ICMP_SRC6_B == 0:
        count(R_TOO_BIG_DROP, length)
        return XDP_DROP
    c0 = ctx.cursor()
    eth0 = c0.parse(Ethernet)
    ip0 = c0.parse(IPv6)
    if not eth0 or not ip0:
        count(R_TOO_BIG_DROP, length)
        return XDP_DROP
    dst = eth0.dst
    src = eth0.src
    w1 = ctx.load(u64, 22)
    w2 = ctx.load(u64, 30)
    if not w1 or not w2:
        count(R_TOO_BIG_DROP, length)
        return XDP_DROP
    pa = w1.value
    pb = w2.value
    if ctx.adjust_head(-48) != 0:
        count(R_ERROR, length)
        return XDP_DROP
    if ctx.adjust_tail(14 + 40 + 56 - ctx.packet_len()) != 0:
        count(R_ERROR, length)
        return XDP_DROP
    c = ctx.cursor()
    eth = c.header(Ethernet)
    ip = c.header(IPv6W)
    msg = c.header(Icmp6Big)
    if not eth or not ip or not msg:
        count(R_ERROR, length)
        return XDP_DROP
    eth.dst = src
    eth.src = dst
    eth.proto = ETH_P_IPV6
    ip.vtf = 0x60000000
    ip.payload_len = 56
    ip.nexthdr = 58
    ip.hop_limit = 64
    ip.sa = ICMP_SRC6_A
    ip.sb = ICMP_SRC6_B
    ip.da = pa
    ip.db = pb
    msg.type = 2
    msg.code = 0
    msg.checksum = 0
    msg.mtu = mtu
    ph = Pseudo6(sa=ICMP_SRC6_A, sb=ICMP_SRC6_B, da=pa, db=pb, length=56, nexthdr=58)
    msg.checksum = csum_fold(csum_diff(None, msg, csum_diff(None, ph, 0)))
    count(R_ICMP_SENT, length)
    return XDP_TX


@subprog
def quic_real(ctx, off, num):
    """The real a QUIC packet's destination connection id names, or NO_REAL (then the
    packet is hashed as any other).  Connection ids this balancer routes are the ones the
    reals issue: first byte 01xxxxxx, then a 16-bit host id (big-endian), then anything;
    the packet's UDP payload is at ``off``.  Long-header Initial and 0-RTT packets carry
    a client-chosen id and are hashed."""
    b0 = ctx.load(u8, off)
    if not b0:
        count(R_QUIC_HASHED, 0)
        return NO_REAL
    first = b0.value
    cid: u32 = off + 1                          # short header: the DCID right after
    if first & 0x80:
        ptype = (first >> 4) & 3
        if ptype == 0 or ptype == 1:            # Initial, 0-RTT
            count(R_QUIC_HASHED, 0)
            return NO_REAL
        n = ctx.load(u8, off + 5)               # after the 4-byte version
        if not n or n.value < 3:
            count(R_QUIC_HASHED, 0)
            return NO_REAL
        cid = off + 6
    elif (first & 0x40) == 0:                   # the fixed bit: not QUIC
        count(R_QUIC_HASHED, 0)
        return NO_REAL
    c0 = ctx.load(u8, cid)
    c1 = ctx.load(u8, cid + 1)
    c2 = ctx.load(u8, cid + 2)
    if not c0 or not c1 or not c2 or (c0.value >> 6) != 1:
        count(R_QUIC_HASHED, 0)
        return NO_REAL
    hid: u32 = (u32(c1.value) << 8) | c2.value
    s = quic_ids.lookup((num << 16) | hid)
    if not s:
        count(R_QUIC_HASHED, 0)
        return NO_REAL
    slot: u32 = s.value
    r = reals.lookup(slot)
    if not r or r.fam == 0:
        count(R_QUIC_HASHED, 0)
        return NO_REAL
    count(R_QUIC_ROUTED, 0)
    return slot


@subprog
def resolve(ctx, r):
    """Refresh real ``r``'s next hop (bpf_fib_lookup: the route's MTU, then the neighbour);
    0 when it can be used, else the FIB's return code (the packet goes to the stack)."""
    q = FibParams6(family=10, l4_protocol=17, tot_len=0xFFFF, ifindex=ctx.ingress_ifindex,
                   src_a=SRC6_A, src_b=SRC6_B, dst_a=r.a, dst_b=r.b)
    if r.fam == 4:
        q.family = 2
        q.src_a = bswap32(SRC4)
        q.dst_a = bswap32(u32(r.a))
        q.src_b = 0
        q.dst_b = 0
    rc = fib_lookup(ctx, q, 0)
    mtu: u32 = 0xFFFF
    if rc == 8:
        mtu = q.tot_len                          # mtu_result
    elif rc != 0:
        return rc
    q2 = FibParams6(family=10, l4_protocol=17, tot_len=64, ifindex=ctx.ingress_ifindex,
                    src_a=SRC6_A, src_b=SRC6_B, dst_a=r.a, dst_b=r.b)
    if r.fam == 4:
        q2.family = 2
        q2.src_a = bswap32(SRC4)
        q2.dst_a = bswap32(u32(r.a))
        q2.src_b = 0
        q2.dst_b = 0
    rc2 = fib_lookup(ctx, q2, 0)
    if rc2 != 0:
        return rc2
    r.dmac = q2.dmac
    r.smac = q2.smac
    r.nh_ifindex = q2.ifindex
    r.nh_mtu = mtu
    r.nh_time = ktime_get_coarse_ns() | 1
    return 0


def forward(ctx, r, flags, h, info):
    """Send the frame to real ``r`` by the method in ``flags`` (``info``: inner family |
    DF << 8 | TTL << 16).  A verdict, or ``mtu << 4 | 8`` when too big once encapsulated."""
    length = ctx.packet_len()
    method = flags & M_MASK
    fam = info & 0xFF
    df = (info >> 8) & 1
    over: u32 = 0
    if method != M_DSR:
        over = 20 if r.fam == 4 else 40
        if method == M_GUE:
            over += 8 if not (flags & V_GUE0) else 12
    t = r.nh_time
    stale: u32 = 0
    if t == 0:
        stale = 1
    tick = nh_tick.lookup(0)
    if tick:
        tick.value += 1
        if (tick.value & 63) == 0 and ktime_get_coarse_ns() - t > NH_TTL:
            stale = 1
    if stale:
        rc = resolve(ctx, r)
        if rc != 0:
            count(R_NO_ROUTE, length)
            return XDP_PASS
    mtu: u32 = MTU
    if mtu == 0:
        mtu = r.nh_mtu
    if over != 0 and length - 14 + over > mtu:
        room = mtu - over if mtu > over else 0
        if fam == 4 and df and room >= 68:
            return (room << 4) | 8
        if fam == 6 and room >= 1280:
            return (room << 4) | 8
        count(R_TOO_BIG_DROP, length)
        return XDP_DROP
    fi: u32 = r.nh_ifindex
    if method == M_DSR:
        c0 = ctx.cursor()
        e0 = c0.parse(Ethernet)
        if not e0:
            return XDP_PASS
        e0.dst = r.dmac
        e0.src = r.smac
        count(R_FORWARDED, length)
        if fi == ctx.ingress_ifindex:
            return XDP_TX
        return tx_ports.redirect(fi, XDP_PASS)
    ipproto: u8 = 4 if fam == 4 else 41
    ttl: u8 = (info >> 16) & 0xFF
    if method == M_GUE:
        ipproto = 17
    if ctx.adjust_head(-over) != 0:
        count(R_ERROR, length)
        return XDP_PASS
    c = ctx.cursor()
    neth = c.header(Ethernet)
    if not neth:
        count(R_ERROR, length)
        return XDP_PASS
    neth.dst = r.dmac
    neth.src = r.smac
    body: u32 = ctx.packet_len() - 14
    if r.fam == 4:
        o4 = c.header(IPv4)
        if not o4:
            count(R_ERROR, length)
            return XDP_PASS
        neth.proto = ETH_P_IP
        o4.ver_ihl = 0x45
        o4.tos = 0
        o4.tot_len = body
        o4.id = 0
        o4.frag_off = 0x4000
        o4.ttl = ttl
        o4.protocol = ipproto
        src4: u32 = SRC4 | (h & SRC4_HOSTMASK)
        dst4: u32 = u32(r.a)
        o4.saddr = src4
        o4.daddr = dst4
        # the header checksum summed inline over the words just written (no helper call):
        # 0x4500 (version, ihl, tos) + length + 0x4000 (DF) + ttl/protocol + the addresses
        cs: u32 = (0x4500 + body + 0x4000 + ((u32(ttl) << 8) | ipproto) + (src4 >> 16)
                   + (src4 & 0xFFFF) + (dst4 >> 16) + (dst4 & 0xFFFF))
        cs = (cs & 0xFFFF) + (cs >> 16)
        cs = (cs & 0xFFFF) + (cs >> 16)
        o4.check = (~cs) & 0xFFFF
        body -= 20
    else:
        o6 = c.header(IPv6W)
        if not o6:
            count(R_ERROR, length)
            return XDP_PASS
        neth.proto = ETH_P_IPV6
        o6.vtf = 0x60000000 | (h & 0xFFFFF)
        o6.payload_len = body - 40
        o6.nexthdr = ipproto
        o6.hop_limit = ttl
        o6.sa = SRC6_A
        o6.sb = SRC6_B
        o6.da = r.a
        o6.db = r.b
        body -= 40
    if ipproto == 17:
        u = c.header(UDP)
        if not u:
            count(R_ERROR, length)
            return XDP_PASS
        u.source = 0xC000 | (h & 0x3FFF)
        u.dest = GUE_PORT
        u.len = body
        u.check = 0
        if flags & V_GUE0:
            g = c.header(GUEHdr)
            if not g:
                count(R_ERROR, length)
                return XDP_PASS
            g.ver_c_hlen = 0
            g.proto_ctype = 4 if fam == 4 else 41
            g.flags = 0
    count(R_FORWARDED, length)
    if fi == ctx.ingress_ifindex:
        return XDP_TX                            # out where it came in: no devmap
    return tx_ports.redirect(fi, XDP_PASS)


@xdp
def xdp_lb(ctx):
    length = ctx.packet_len()
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        count(R_MALFORMED, length)
        return XDP_PASS
    k = FlowKey(sa=0, sb=0, da=0, db=0, sport=0, dport=0, proto=0, fam=0, pad=0)
    vk = VipKey(a=0, b=0, port=0, proto=0, fam=0, pad=0)
    info: u32 = 0
    if eth.proto == ETH_P_IP:
        ip = c.parse(IPv4)
        if not ip or ip.version != 4 or ip.ihl < 5 or ip.tot_len < ip.ihl * 4 or (
                14 + ip.tot_len > length):
            count(R_MALFORMED, length)
            return XDP_PASS
        if ip.frag_off & 0x3FFF:
            count(R_FRAGMENT, length)
            return XDP_PASS
        if ip.ihl != 5:
            count(R_OPTIONS, length)
            return XDP_PASS
        k.fam = 4
        k.proto = ip.protocol
        k.sa = ip.saddr
        k.da = ip.daddr
        vk.a = ip.daddr
        df: u32 = 0
        if ip.frag_off & 0x4000:
            df = 1
        info = 4 | (df << 8) | (u32(ip.ttl) << 16)
    elif eth.proto == ETH_P_IPV6:
        ip6 = c.parse(IPv6)
        if not ip6:
            count(R_MALFORMED, length)
            return XDP_PASS
        s1 = ctx.load(u64, 22)
        s2 = ctx.load(u64, 30)
        d1 = ctx.load(u64, 38)
        d2 = ctx.load(u64, 46)
        if not s1 or not s2 or not d1 or not d2:
            count(R_MALFORMED, length)
            return XDP_PASS
        k.fam = 6
        k.proto = ip6.nexthdr
        k.sa = s1.value
        k.sb = s2.value
        k.da = d1.value
        k.db = d2.value
        vk.a = d1.value
        vk.b = d2.value
        info = 6 | (1 << 8) | (u32(ip6.hop_limit) << 16)
        if k.proto in (0, 43, 44, 60):        # hop-by-hop, routing, fragment, dest opts
            count(R_OPTIONS, length)
            return XDP_PASS
    else:
        count(R_NOT_IP, length)
        return XDP_PASS
    syn = 0
    poff: u32 = 0
    if k.proto == 6:
        t = c.parse(TCP)
        if not t:
            count(R_MALFORMED, length)
            return XDP_PASS
        k.sport = t.source
        k.dport = t.dest
        if t.syn and not t.ack_flag:
            syn = 1
    elif k.proto == 17:
        u = c.parse(UDP)
        if not u:
            count(R_MALFORMED, length)
            return XDP_PASS
        k.sport = u.source
        k.dport = u.dest
        poff = c.offset()
    else:
        count(R_NOT_VIP, length)
        return XDP_PASS
    vk.fam = k.fam
    vk.proto = k.proto
    vk.port = k.dport
    v = vips.lookup(vk)
    if not v:
        vk.port = 0
        v = vips.lookup(vk)
        if not v:
            count(R_NOT_VIP, length)
            return XDP_PASS
    num = v.num
    flags = v.flags
    real: u32 = NO_REAL
    if QUIC and (flags & V_QUIC) and k.proto == 17:
        real = quic_real(ctx, poff, num)
    if real == NO_REAL:
        real = pick(k, v, syn)
    if real == NO_REAL:
        count(R_NO_REAL, length)
        return XDP_DROP
    r = reals.lookup(real)
    if not r:
        count(R_NO_REAL, length)
        return XDP_DROP
    count_vip(num, length)
    count_real(real, length)
    h: u32 = 0
    if (flags & M_MASK) == M_GUE or r.fam == 6 or SRC4_HOSTMASK != 0:
        h = flow_hash(k)                        # outer entropy: GUE port, flow label, source
    rc = forward(ctx, r, flags, h, info)
    if rc > 8:
        if (info & 0xFF) == 4:
            return too_big4(ctx, rc >> 4, length)
        return too_big6(ctx, rc >> 4, length)
    return rc

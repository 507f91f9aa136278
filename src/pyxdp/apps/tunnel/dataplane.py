# mypy: ignore-errors
"""The tunnel app's packet path, in pyxdp's Python dialect (compiled, never imported to run).

One program, ``xdp_tunnel``, on every port of the app.  Per frame (outer Ethernet, then
IPv4 or IPv6 at offset 14):

*Decapsulation.*  An outer header of a known kind is parsed (IPIP 4in4/4in6, 6in4/6in6,
GUE variant 0 and 1 on ``GUE_PORT``, GRE with and without key, VXLAN on ``VXLAN_PORT``,
Geneve on ``GENEVE_PORT``, SRv6 End.DX4/End.DX6 with or without an SRH whose segments left
is 0) and the tunnel looked up in ``decap`` by (kind, outer source, VNI/key) — for SRv6 by
the SID, the outer destination.  Only a configured tunnel is decapsulated: a frame from an
unknown endpoint leaves untouched (XDP_PASS).  The outer headers go with
``bpf_xdp_adjust_head``; L3 payloads keep the outer Ethernet addresses, L2 payloads
(VXLAN, Geneve, GRE/TEB) become the frame.  The inner packet's checksums are not touched.
The result goes to the stack, or (``F_FORWARD``, L3) is routed by ``bpf_fib_lookup`` and
redirected, or (``F_REDIRECT``, L2) is redirected out of the tunnel's interface.

*Encapsulation.*  Anything else that is IPv4/IPv6 is looked up by destination in
``routes4``/``routes6`` (longest prefix); a hit names an entry of ``encaps``: the outer
headers are pushed (UDP source port, IPv6 flow label and IPv4 id from a flow hash of the
inner addresses and ports), the outer frame is routed with ``bpf_fib_lookup`` (the kernel's
routes and neighbours) and redirected.  A frame that would exceed the path MTU once
encapsulated is answered in XDP, back out of the ingress port: ICMP "fragmentation
needed" for IPv4 with DF,
ICMPv6 "packet too big" for IPv6, from ``ICMP_SRC4``/``ICMP_SRC6``.

Every outcome is counted in ``stats`` (per CPU, by reason) and every decapsulated or
encapsulated packet in ``tunnels`` (per CPU, by tunnel id).
"""

from pyxdp.apps.router.dataplane import FibParams6
from pyxdp.compiler.lang import (  # type: ignore[attr-defined]
    ETH_P_IP,
    ETH_P_IPV6,
    GRE,
    GUE,
    UDP,
    XDP_DROP,
    XDP_PASS,
    XDP_TX,
    ArrayMap,
    Const,
    DevMap,
    Ethernet,
    FibParams,
    HashMap,
    IPv4,
    IPv6,
    IPv6Ext,
    LpmKey4,
    LpmKey6,
    LpmTrie,
    PerCpuArray,
    Struct,
    be16,
    be32,
    bswap32,
    csum_diff,
    csum_fold,
    fib_lookup,
    ipv4_csum,
    subprog,
    u8,
    u16,
    u32,
    u64,
    xdp,
)

# tunnel kinds (the control plane's names: pyxdp.apps.tunnel.config.KINDS)
K_IPIP = 1        # IPv4 payload, IP protocol 4 (4in4, 4in6)
K_IP6IP = 2       # IPv6 payload, IP protocol 41 (6in4, 6in6)
K_GUE = 3         # GUE over UDP: variant 0 (a GUE header) or 1 (IP straight after UDP)
K_GRE = 4         # GRE without key
K_GRE_KEY = 5     # GRE with key (the key is the tunnel's VNI field)
K_VXLAN = 6
K_GENEVE = 7
K_DX4 = 8         # SRv6 End.DX4: IPv4 payload of an IPv6 packet to the SID
K_DX6 = 9         # SRv6 End.DX6

F_FORWARD = 1     # decap: route the inner packet (bpf_fib_lookup) and redirect it
F_REDIRECT = 2    # decap: redirect the inner (L2) frame out of TunVal.ifindex

E_GUE1 = 1        # encap: GUE variant 1 (no GUE header)
E_INNER_DMAC = 2  # encap (L2 kinds): set the inner Ethernet destination to Encap.imac

DF_INHERIT = 0
DF_SET = 1
DF_CLEAR = 2

# reasons (indices into `stats`); pyxdp.apps.tunnel.control.REASONS names them
R_DECAP = 0
R_ENCAP = 1
R_NOT_IP = 2
R_NOT_TUNNEL = 3          # no tunnel kind matched and no encap route
R_UNKNOWN_ENDPOINT = 4    # a tunnel kind from an endpoint (or VNI/key/SID) not configured
R_MALFORMED = 5           # truncated or invalid outer/tunnel header: untouched
R_UNSUPPORTED = 6         # GRE routing/version, GUE control, Geneve critical options...
R_FRAGMENT = 7            # an outer fragment (needs reassembly): to the stack
R_ICMP_SENT = 8           # too big once encapsulated: ICMP/ICMPv6 answered (XDP_TX)
R_TOO_BIG_DROP = 9        # too big, no DF (IPv4 cannot be fragmented here) or no ICMP source
R_NO_ROUTE = 10           # bpf_fib_lookup failed (no route / neighbour): to the stack
R_NOT_PORT = 11           # routed out of an interface that is not a port: to the stack
R_ERROR = 12              # adjust_head/adjust_tail failed
R_NO_NEIGH = 13           # the outer next hop's neighbour is not resolved: to the stack
N_REASONS = 16

MAX_TUNNELS = 1024
MAX_IFINDEX = 4096        # resized by the control plane

GUE_PORT = Const(u16, 6080)     # 0: GUE off
VXLAN_PORT = Const(u16, 4789)
GENEVE_PORT = Const(u16, 6081)
ICMP_SRC4 = Const(u32, 0)       # source of ICMP answers (host order); 0: no answers
ICMP_SRC6_A = Const(u64, 0)     # ... of ICMPv6 answers, raw words; 0, 0: no answers
ICMP_SRC6_B = Const(u64, 0)


class TunKey(Struct):
    kind: u8
    family: u8        # 4 or 6 (the outer header's)
    pad: u16
    vni: u32          # VXLAN/Geneve VNI, GRE key, else 0
    a: u64            # outer source (SRv6: the SID): IPv4 host order, IPv6 raw words
    b: u64


class TunVal(Struct):
    id: u32
    ifindex: u32
    flags: u32
    pad: u32


class Encap(Struct):
    kind: u8
    family: u8        # outer 4 or 6
    ttl: u8           # 0: the inner packet's TTL / hop limit
    df: u8            # DF_INHERIT / DF_SET / DF_CLEAR (IPv4 outer)
    vni: u32
    mtu: u16          # path MTU of the outer packets; 0: the egress route's MTU
    dport: u16        # UDP destination port (GUE, VXLAN, Geneve)
    id: u32
    flags: u32
    sa: u64           # outer source, outer destination: as TunKey.a/b
    sb: u64
    da: u64
    db: u64
    imac: u8[6]
    pad: u16


class Counter(Struct):
    packets: u64
    bytes: u64


class VXLANHdr(Struct):
    _packed_ = True
    flags: u8
    rsvd: u8[3]
    vni_rsvd: be32


class GeneveHdr(Struct):
    _packed_ = True
    _bits_ = {"optlen": ("ver_optlen", 0, 6), "gver": ("ver_optlen", 6, 2),
              "critical": ("flags", 6, 1)}
    _hdrlen_ = ("optlen", 4, 8)
    ver_optlen: u8
    flags: u8
    proto: be16
    vni_rsvd: be32


class IPv6W(Struct):
    """An IPv6 header with the addresses as raw 64-bit words (written in one go)."""

    _packed_ = True
    vtf: be32
    payload_len: be16
    nexthdr: u8
    hop_limit: u8
    sa: u64
    sb: u64
    da: u64
    db: u64


class GREKey(Struct):
    _packed_ = True
    flags: be16
    proto: be16
    key: be32


class GUEHdr(Struct):
    _packed_ = True
    ver_c_hlen: u8
    proto_ctype: u8
    flags: be16


class Icmp4Big(Struct):
    """ICMP "fragmentation needed" with its quote: the IPv4 header and 8 bytes."""

    _packed_ = True
    type: u8
    code: u8
    checksum: be16
    unused: be16
    mtu: be16
    quote: u8[28]


class Icmp6Big(Struct):
    """ICMPv6 "packet too big" with its quote: the IPv6 header and 8 bytes."""

    _packed_ = True
    type: u8
    code: u8
    checksum: be16
    mtu: be32
    quote: u8[48]


class Pseudo6(Struct):
    sa: u64
    sb: u64
    da: u64
    db: u64
    length: be32
    zero: be16
    zero2: u8
    nexthdr: u8


decap = HashMap[TunKey, TunVal](max_entries=MAX_TUNNELS)
routes4 = LpmTrie[LpmKey4, u32](max_entries=MAX_TUNNELS)
routes6 = LpmTrie[LpmKey6, u32](max_entries=MAX_TUNNELS)
encaps = ArrayMap[u32, Encap](max_entries=MAX_TUNNELS)
stats = PerCpuArray[u32, Counter](max_entries=N_REASONS)
tunnels = PerCpuArray[u32, Counter](max_entries=MAX_TUNNELS)
ports = ArrayMap[u32, u32](max_entries=MAX_IFINDEX)
tx_ports = DevMap(max_entries=MAX_IFINDEX)


def count(reason, length):
    c = stats.lookup(reason)
    if c:
        c.packets += 1
        c.bytes += length


def count_tunnel(tid, length):
    t = tunnels.lookup(tid)
    if t:
        t.packets += 1
        t.bytes += length


def mix(h):
    """A 32-bit finaliser (murmur3's), for the flow hash."""
    h ^= h >> 16
    h *= 0x85EBCA6B
    h ^= h >> 13
    h *= 0xC2B2AE35
    h ^= h >> 16
    return h


def egress_ok(reason_len, ifindex):
    pv = ports.lookup(ifindex)
    if not pv or pv.value == 0:
        count(R_NOT_PORT, reason_len)
        return False
    return True


@subprog
def forward_inner(ctx, length):
    """Route the (decapsulated) frame at the stack's place: bpf_fib_lookup on its
    destination, TTL/hop limit decrement, MAC rewrite, redirect.  To the stack when the
    FIB cannot (it answers ICMP, resolves neighbours)."""
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        return XDP_PASS
    if eth.proto == ETH_P_IP:
        ip = c.parse(IPv4)
        if not ip or ip.ttl <= 1:
            return XDP_PASS
        p = FibParams(family=2, l4_protocol=ip.protocol, tot_len=ip.tot_len, tos=ip.tos,
                      ifindex=ctx.ingress_ifindex, ipv4_src=ip.saddr, ipv4_dst=ip.daddr)
        rc4 = fib_lookup(ctx, p, 0)
        if rc4 != 0:
            count(R_NO_NEIGH if rc4 == 7 else R_NO_ROUTE, length)
            return XDP_PASS
        if not egress_ok(length, p.ifindex):
            return XDP_PASS
        ip.ttl -= 1
        ip.check = 0
        ip.check = ipv4_csum(ip)
        eth.dst = p.dmac
        eth.src = p.smac
        return tx_ports.redirect(p.ifindex, XDP_PASS)
    if eth.proto == ETH_P_IPV6:
        ip6 = c.parse(IPv6)
        if not ip6 or ip6.hop_limit <= 1:
            return XDP_PASS
        s1 = ctx.load(u64, 22)
        s2 = ctx.load(u64, 30)
        d1 = ctx.load(u64, 38)
        d2 = ctx.load(u64, 46)
        if not s1 or not s2 or not d1 or not d2:
            return XDP_PASS
        q = FibParams6(family=10, l4_protocol=ip6.nexthdr, tot_len=ip6.payload_len + 40,
                       ifindex=ctx.ingress_ifindex,
                       src_a=s1.value, src_b=s2.value, dst_a=d1.value, dst_b=d2.value)
        rc6 = fib_lookup(ctx, q, 0)
        if rc6 != 0:
            count(R_NO_NEIGH if rc6 == 7 else R_NO_ROUTE, length)
            return XDP_PASS
        if not egress_ok(length, q.ifindex):
            return XDP_PASS
        ip6.hop_limit -= 1
        eth.dst = q.dmac
        eth.src = q.smac
        return tx_ports.redirect(q.ifindex, XDP_PASS)
    return XDP_PASS


@subprog
def decapsulate(ctx, t, off, what, length):
    """Strip everything before ``off`` (the inner IP header, or for ``l2`` the inner
    Ethernet header) and deliver as the tunnel ``t`` says."""
    inner = what & 0xFFFF
    l2 = what >> 16
    tid = t.id
    flags = t.flags
    ifindex = t.ifindex
    if l2:
        if ctx.adjust_head(off) != 0:
            count(R_ERROR, length)
            return XDP_PASS
    else:
        c0 = ctx.cursor()
        eth0 = c0.parse(Ethernet)
        if not eth0:
            return XDP_PASS
        dst = eth0.dst
        src = eth0.src
        if ctx.adjust_head(off - 14) != 0:
            count(R_ERROR, length)
            return XDP_PASS
        c = ctx.cursor()
        eth = c.header(Ethernet)
        if not eth:
            count(R_ERROR, length)
            return XDP_PASS
        eth.dst = dst
        eth.src = src
        eth.proto = inner
    count(R_DECAP, length)
    count_tunnel(tid, length)
    if flags & F_REDIRECT:
        return tx_ports.redirect(ifindex, XDP_PASS)
    if flags & F_FORWARD:
        return 16                                # the caller routes it (forward_inner)
    return XDP_PASS


@subprog
def too_big4(ctx, mtu, length):
    """Answer an IPv4 packet (at 14, ihl 5) that cannot go: ICMP type 3 code 4 with
    ``mtu``, sent back out of the ingress port."""
    if ICMP_SRC4 == 0:
        count(R_TOO_BIG_DROP, length)
        return 1
    c0 = ctx.cursor()
    eth0 = c0.parse(Ethernet)
    ip0 = c0.parse(IPv4)
    if not eth0 or not ip0 or ip0.ihl != 5:
        count(R_TOO_BIG_DROP, length)
        return 1
    dst = eth0.dst
    src = eth0.src
    peer = ip0.saddr
    if ctx.adjust_head(-28) != 0:
        count(R_ERROR, length)
        return 1
    if ctx.adjust_tail(14 + 56 - ctx.packet_len()) != 0:
        count(R_ERROR, length)
        return 1
    c = ctx.cursor()
    eth = c.header(Ethernet)
    ip = c.header(IPv4)
    msg = c.header(Icmp4Big)
    if not eth or not ip or not msg:
        count(R_ERROR, length)
        return 1
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
    return 0


@subprog
def too_big6(ctx, mtu, length):
    """ICMPv6 "packet too big" (type 2) with ``mtu`` for the IPv6 packet at 14."""
    if ICMP_SRC6_A == 0 and ICMP_SRC6_B == 0:
        count(R_TOO_BIG_DROP, length)
        return 1
    c0 = ctx.cursor()
    eth0 = c0.parse(Ethernet)
    ip0 = c0.parse(IPv6)
    if not eth0 or not ip0:
        count(R_TOO_BIG_DROP, length)
        return 1
    dst = eth0.dst
    src = eth0.src
    w1 = ctx.load(u64, 22)
    w2 = ctx.load(u64, 30)
    if not w1 or not w2:
        count(R_TOO_BIG_DROP, length)
        return 1
    pa = w1.value
    pb = w2.value
    if ctx.adjust_head(-48) != 0:
        count(R_ERROR, length)
        return 1
    if ctx.adjust_tail(14 + 40 + 56 - ctx.packet_len()) != 0:
        count(R_ERROR, length)
        return 1
    c = ctx.cursor()
    eth = c.header(Ethernet)
    ip = c.header(IPv6W)
    msg = c.header(Icmp6Big)
    if not eth or not ip or not msg:
        count(R_ERROR, length)
        return 1
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
    return 0


def overhead(e):
    """Bytes the encapsulation adds in front of the inner IP header."""
    n: u32 = 20
    if e.family == 6:
        n = 40
    if e.kind == K_GUE:
        n += 8 if e.flags & E_GUE1 else 12
    elif e.kind == K_GRE:
        n += 4
    elif e.kind == K_GRE_KEY:
        n += 8
    elif e.kind == K_VXLAN or e.kind == K_GENEVE:
        n += 30
    return n


@subprog
def encapsulate(ctx, e, h, info):
    """Push ``e``'s outer headers in front of the IP packet at 14 and send it where the
    FIB routes the outer destination (``info``: family | DF/options bits << 8 | TTL << 16
    of the inner packet; ``h`` its flow hash).  Returns a verdict, or ``mtu << 4 | 8``
    when the packet is too big and must be answered with that MTU."""
    length = ctx.packet_len()
    innerlen: u32 = length - 14
    fam = info & 0xFF
    dfbit = (info >> 8) & 0xFF
    ttl: u8 = (info >> 16) & 0xFF
    if ttl <= 1:
        return XDP_PASS                          # the stack answers time exceeded
    over = overhead(e)
    l2e = e.kind == K_VXLAN or e.kind == K_GENEVE
    outer_len = innerlen + over
    # the outer frame's route first: nothing changes before we know it can leave
    # bpf_fib_lookup's struct, IPv4 addresses in the first 4 bytes of the address words
    q = FibParams6(family=10, l4_protocol=17, tot_len=outer_len, ifindex=ctx.ingress_ifindex,
                   src_a=e.sa, src_b=e.sb, dst_a=e.da, dst_b=e.db)
    if e.family == 4:
        q.family = 2
        q.src_a = bswap32(e.sa)
        q.dst_a = bswap32(e.da)
    mtu: u32 = e.mtu
    rc = fib_lookup(ctx, q, 0)
    fi: u32 = q.ifindex
    if rc == 8 and mtu == 0:
        mtu = q.tot_len                          # mtu_result
    if (mtu != 0 and outer_len > mtu) or rc == 8:
        room = mtu - over if mtu > over else 0
        if fam == 4 and dfbit == 1 and room >= 68:
            return (room << 4) | 8               # the caller answers (ICMP)
        if fam == 6 and room >= 1280:
            return (room << 4) | 8               # the caller answers (ICMPv6)
        count(R_TOO_BIG_DROP, length)            # no DF: IPv4 cannot be fragmented here
        return XDP_DROP
    if rc != 0:
        count(R_NO_NEIGH if rc == 7 else R_NO_ROUTE, length)
        return XDP_PASS
    if not egress_ok(length, fi):
        return XDP_PASS
    # -- push the outer headers ------------------------------------------------------------
    kindv = e.kind
    efam = e.family
    eflags = e.flags
    ipproto: u8 = 17
    if kindv == K_IPIP or kindv == K_DX4:
        ipproto = 4
    elif kindv == K_IP6IP or kindv == K_DX6:
        ipproto = 41
    elif kindv == K_GRE or kindv == K_GRE_KEY:
        ipproto = 47
    if kindv == K_IPIP or kindv == K_DX4:
        if fam != 4:
            count(R_NOT_TUNNEL, length)          # an IPv6 packet on an IPv4-payload tunnel
            return XDP_PASS
    elif (kindv == K_IP6IP or kindv == K_DX6) and fam != 6:
        count(R_NOT_TUNNEL, length)
        return XDP_PASS
    if e.ttl != 0:
        ttl = e.ttl
    df = dfbit & 1
    if e.df == DF_SET:
        df = 1
    elif e.df == DF_CLEAR:
        df = 0
    elif fam == 6:
        df = 1
    sport = 0xC000 | (h & 0x3FFF)
    if ctx.adjust_head(-over) != 0:          # L2 kinds: the old frame stays as the inner
        count(R_ERROR, length)
        return XDP_PASS
    c = ctx.cursor()
    neth = c.header(Ethernet)
    if not neth:
        count(R_ERROR, length)
        return XDP_PASS
    neth.dst = q.dmac
    neth.src = q.smac
    body: u32 = ctx.packet_len() - 14
    if efam == 4:
        o4 = c.header(IPv4)
        if not o4:
            count(R_ERROR, length)
            return XDP_PASS
        neth.proto = ETH_P_IP
        o4.ver_ihl = 0x45
        o4.tos = 0
        o4.tot_len = body
        o4.id = 0 if df else h & 0xFFFF
        o4.frag_off = 0x4000 if df else 0
        o4.ttl = ttl
        o4.protocol = ipproto
        o4.saddr = e.sa
        o4.daddr = e.da
        o4.check = 0
        o4.check = ipv4_csum(o4)
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
        o6.sa = e.sa
        o6.sb = e.sb
        o6.da = e.da
        o6.db = e.db
        body -= 40
    if ipproto == 17:
        u = c.header(UDP)
        if not u:
            count(R_ERROR, length)
            return XDP_PASS
        u.source = sport
        u.dest = e.dport
        u.len = body
        u.check = 0
        if kindv == K_GUE:
            if not eflags & E_GUE1:
                g = c.header(GUEHdr)
                if not g:
                    count(R_ERROR, length)
                    return XDP_PASS
                g.ver_c_hlen = 0
                g.proto_ctype = 4 if fam == 4 else 41
                g.flags = 0
        elif kindv == K_VXLAN:
            vh = c.header(VXLANHdr)
            if not vh:
                count(R_ERROR, length)
                return XDP_PASS
            vh.flags = 0x08
            vh.rsvd[0] = 0
            vh.rsvd[1] = 0
            vh.rsvd[2] = 0
            vh.vni_rsvd = e.vni << 8
        else:
            gh = c.header(GeneveHdr)
            if not gh:
                count(R_ERROR, length)
                return XDP_PASS
            gh.ver_optlen = 0
            gh.flags = 0
            gh.proto = 0x6558
            gh.vni_rsvd = e.vni << 8
        if l2e and eflags & E_INNER_DMAC:
            ie2 = c.header(Ethernet)
            if not ie2:
                count(R_ERROR, length)
                return XDP_PASS
            ie2.dst = e.imac
    elif ipproto == 47:
        if kindv == K_GRE_KEY:
            gk = c.header(GREKey)
            if not gk:
                count(R_ERROR, length)
                return XDP_PASS
            gk.flags = 0x2000
            gk.proto = ETH_P_IP if fam == 4 else ETH_P_IPV6
            gk.key = e.vni
        else:
            gr = c.header(GRE)
            if not gr:
                count(R_ERROR, length)
                return XDP_PASS
            gr.flags = 0
            gr.proto = ETH_P_IP if fam == 4 else ETH_P_IPV6
    count(R_ENCAP, length)
    count_tunnel(e.id, length)
    return tx_ports.redirect(fi, XDP_PASS)


@xdp
def xdp_tunnel(ctx):
    length = ctx.packet_len()
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        count(R_MALFORMED, length)
        return XDP_PASS
    fam: u8 = 4
    proto: u32 = 0
    ka: u64 = 0
    kb: u64 = 0
    sida: u64 = 0
    sidb: u64 = 0
    if eth.proto == ETH_P_IP:
        ip = c.parse(IPv4)
        if not ip:
            count(R_MALFORMED, length)
            return XDP_PASS
        proto = ip.protocol
        ka = ip.saddr
        if ip.frag_off & 0x3FFF:
            if proto == 4 or proto == 41 or proto == 47 or proto == 17:
                count(R_FRAGMENT, length)
                return XDP_PASS
            proto = 0              # a fragment of something else: never decapsulated
    elif eth.proto == ETH_P_IPV6:
        ip6 = c.parse(IPv6)
        if not ip6:
            count(R_MALFORMED, length)
            return XDP_PASS
        fam = 6
        proto = ip6.nexthdr
        s1 = ctx.load(u64, 22)
        s2 = ctx.load(u64, 30)
        d1 = ctx.load(u64, 38)
        d2 = ctx.load(u64, 46)
        if not s1 or not s2 or not d1 or not d2:
            count(R_MALFORMED, length)
            return XDP_PASS
        ka = s1.value
        kb = s2.value
        sida = d1.value
        sidb = d2.value
    else:
        count(R_NOT_IP, length)
        return XDP_PASS

    # -- decapsulation: which kind, where the payload starts -------------------------------
    kind: u8 = 0
    vni: u32 = 0
    inner: u32 = 0          # ethertype of an L3 payload
    l2: u8 = 0
    srv6: u8 = 0
    if proto == 4 or proto == 41:
        kind = K_IPIP if proto == 4 else K_IP6IP
        inner = ETH_P_IP if proto == 4 else ETH_P_IPV6
    elif proto == 43 and fam == 6:
        srh = c.parse(IPv6Ext)
        if not srh:
            count(R_MALFORMED, length)
            return XDP_PASS
        if srh.opts[0] == 4 and (srh.nexthdr == 4 or srh.nexthdr == 41):
            if srh.opts[1] != 0:
                count(R_UNSUPPORTED, length)     # End with segments left: the stack's
                return XDP_PASS
            srv6 = 1
            kind = K_DX4 if srh.nexthdr == 4 else K_DX6
            inner = ETH_P_IP if srh.nexthdr == 4 else ETH_P_IPV6
    elif proto == 47:
        gre = c.parse(GRE)
        if not gre:
            count(R_MALFORMED, length)
            return XDP_PASS
        gflags = gre.flags
        if gflags & 0x4007 or gflags & 0x0F78:
            count(R_UNSUPPORTED, length)         # routing present, version != 0, reserved
            return XDP_PASS
        if gflags & 0x8000:
            c.skip(4)                            # checksum + reserved1
        kind = K_GRE
        if gflags & 0x2000:
            key = c.load(be32, 0)
            if not key:
                count(R_MALFORMED, length)
                return XDP_PASS
            vni = key.value
            kind = K_GRE_KEY
            c.skip(4)
        if gflags & 0x1000:
            c.skip(4)                            # sequence number
        if gre.proto == 0x6558:
            l2 = 1
        elif gre.proto == ETH_P_IP or gre.proto == ETH_P_IPV6:
            inner = gre.proto
        else:
            kind = 0
    elif proto == 17:
        udp = c.parse(UDP)
        if not udp:
            count(R_MALFORMED, length)
            return XDP_PASS
        dport = udp.dest
        if dport == 0:
            kind = 0
        elif dport == VXLAN_PORT:
            vx = c.parse(VXLANHdr)
            if not vx or not vx.flags & 0x08:
                count(R_MALFORMED, length)
                return XDP_PASS
            kind = K_VXLAN
            vni = vx.vni_rsvd >> 8
            l2 = 1
        elif dport == GENEVE_PORT:
            gn = c.parse(GeneveHdr)
            if not gn:
                count(R_MALFORMED, length)
                return XDP_PASS
            if gn.gver != 0 or gn.critical:
                count(R_UNSUPPORTED, length)     # critical options we do not process
                return XDP_PASS
            kind = K_GENEVE
            vni = gn.vni_rsvd >> 8
            if gn.proto == 0x6558:
                l2 = 1
            elif gn.proto == ETH_P_IP or gn.proto == ETH_P_IPV6:
                inner = gn.proto
            else:
                kind = 0
        elif dport == GUE_PORT:
            first = c.load(u8, 0)
            if not first:
                count(R_MALFORMED, length)
                return XDP_PASS
            variant = first.value >> 6
            kind = K_GUE
            if variant == 1:
                v = first.value >> 4
                if v == 4:
                    inner = ETH_P_IP
                elif v == 6:
                    inner = ETH_P_IPV6
                else:
                    count(R_MALFORMED, length)
                    return XDP_PASS
            elif variant == 0:
                gue = c.parse(GUE)
                if not gue:
                    count(R_MALFORMED, length)
                    return XDP_PASS
                if gue.ver_c_hlen & 0x20:
                    count(R_UNSUPPORTED, length)  # a GUE control message
                    return XDP_PASS
                if gue.proto_ctype == 4:
                    inner = ETH_P_IP
                elif gue.proto_ctype == 41:
                    inner = ETH_P_IPV6
                else:
                    count(R_UNSUPPORTED, length)
                    return XDP_PASS
            else:
                count(R_MALFORMED, length)
                return XDP_PASS
    if kind != 0:
        off = c.offset()
        if l2:
            ie = c.parse(Ethernet)
            if not ie:
                count(R_MALFORMED, length)
                return XDP_PASS
        elif inner == ETH_P_IP:
            i4 = c.parse(IPv4)
            if not i4:
                count(R_MALFORMED, length)
                return XDP_PASS
        else:
            i6 = c.parse(IPv6)
            if not i6:
                count(R_MALFORMED, length)
                return XDP_PASS
        k = TunKey(kind=kind, family=fam, vni=vni, a=ka, b=kb)
        if srv6 == 0:
            t = decap.lookup(k)
            if t:
                dv = decapsulate(ctx, t, off, inner | (l2 << 16), length)
                return forward_inner(ctx, length) if dv == 16 else dv
        if fam == 6 and (srv6 or kind == K_IPIP or kind == K_IP6IP):
            # SRv6 (an SRH, or reduced encapsulation straight to the SID): by the SID
            k.kind = K_DX4 if inner == ETH_P_IP else K_DX6
            k.vni = 0
            k.a = sida
            k.b = sidb
            sid = decap.lookup(k)
            if sid:
                sv = decapsulate(ctx, sid, off, inner, length)
                return forward_inner(ctx, length) if sv == 16 else sv
        count(R_UNKNOWN_ENDPOINT, length)
        return XDP_PASS

    # -- encapsulation: by the destination -------------------------------------------------
    eidx: u32 = 0
    found: u8 = 0
    h: u32 = 0
    dfbit: u8 = 0
    ttl: u8 = 64
    if fam == 4:
        c4 = ctx.cursor()
        c4.skip(14)
        ih = c4.parse(IPv4)
        if not ih:
            return XDP_PASS
        r = routes4.lookup(LpmKey4(prefixlen=32, addr=ih.daddr))
        if r:
            eidx = r.value
            found = 1
        h = mix(ih.saddr ^ mix(ih.daddr ^ ih.protocol))
        if ih.protocol == 6 or ih.protocol == 17:
            pp = c4.load(u32, 0)
            if pp and not ih.frag_off & 0x3FFF:
                h = mix(h ^ pp.value)
        dfbit = 1 if ih.frag_off & 0x4000 else 0
        ttl = ih.ttl
        if ih.ihl != 5:
            dfbit = dfbit | 2                    # options: no ICMP answer of ours
    else:
        c6 = ctx.cursor()
        c6.skip(14)
        jh = c6.parse(IPv6)
        if not jh:
            return XDP_PASS
        r6 = routes6.lookup(LpmKey6(prefixlen=128, addr=jh.daddr))
        if r6:
            eidx = r6.value
            found = 1
        w0 = ctx.load(u32, 22)
        w1 = ctx.load(u32, 34)
        w2 = ctx.load(u32, 38)
        w3 = ctx.load(u32, 50)
        if w0 and w1 and w2 and w3:
            h = mix(w0.value ^ mix(w1.value ^ mix(w2.value ^ mix(w3.value ^ jh.nexthdr))))
        if jh.nexthdr == 6 or jh.nexthdr == 17:
            pq = c6.load(u32, 0)
            if pq:
                h = mix(h ^ pq.value)
        ttl = jh.hop_limit
    if found == 0:
        count(R_NOT_TUNNEL, length)
        return XDP_PASS
    e = encaps.lookup(eidx)
    if not e or e.kind == 0:
        count(R_NOT_TUNNEL, length)
        return XDP_PASS
    v = encapsulate(ctx, e, h, fam | (dfbit << 8) | (ttl << 16))
    if v < 16:
        return v
    # too big once encapsulated: answer with the MTU left for the inner packet, back out
    # of the ingress port through the devmap (XDP_TX if that fails).  Not XDP_TX first: a
    # veth does not wake its peer for XDP_TX frames unless the peer runs XDP itself
    # (veth_xdp_flush), so the answer would wait in the peer's ring for unrelated traffic
    sent = too_big4(ctx, v >> 4, length) if fam == 4 else too_big6(ctx, v >> 4, length)
    if sent != 0:
        return XDP_DROP
    return tx_ports.redirect(ctx.ingress_ifindex, XDP_TX)

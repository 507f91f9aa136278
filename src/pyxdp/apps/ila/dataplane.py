# mypy: ignore-errors
"""The ILA translator's packet path, in pyxdp's Python dialect (compiled, never imported to
run).  IPv6 only; one program, two roles (``ROLE``, set at load time):

* **router** (``ROLE = 0``, SIR -> ILA): a packet whose destination's upper 64 bits is a
  configured SIR prefix (``sirs``) gets them replaced by the locator its identifier (the
  lower 64 bits) maps to in the active mapping table; an identifier without a mapping is
  passed, dropped or sent to the SIR's default locator (per SIR);
* **host** (``ROLE = 1``, ILA -> SIR): a destination whose upper 64 bits is a locator of
  this host (``locators``: locator -> SIR prefix) and whose identifier maps to exactly that
  locator gets the SIR prefix back.

Checksums (per SIR, draft-herbert-intarea-ila): *neutral* sets the C-bit (bit 3 of the
identifier, after the 3-bit type) and folds the one's-complement difference of the locator
change and of the C-bit into the identifier's low 16 bits, so the address's sum, hence every
transport checksum, is unchanged (host role: undone and the C-bit cleared); *adjust*
rewrites the TCP/UDP/ICMPv6 checksum (csum_replace4 over the changed 64 bits); *none*
touches nothing but the locator.

The mapping table is double-buffered: ``mappings0``/``mappings1``, ``active[0]`` says which
one packets use.  The control plane refills the idle one and switches ``active`` last, so a
packet sees the old or the new table, never a mix.  Keys and addresses are the packet's raw
8-byte words (``ctx.load(u64, off).value``), stored the same way by the control plane.

After translation the packet goes to the stack (XDP_PASS), which forwards (router) or
delivers (host) by the new destination.  Every verdict is counted in ``stats``.
"""

from pyxdp.compiler.lang import (  # type: ignore[attr-defined]
    ETH_P_IPV6,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    XDP_DROP,
    XDP_PASS,
    ArrayMap,
    Const,
    Ethernet,
    HashMap,
    IPv6,
    PerCpuArray,
    Struct,
    be16,
    be32,
    bswap16,
    csum_replace4,
    u8,
    u16,
    u32,
    u64,
    xdp,
)

# reasons (indices into `stats`); pyxdp.apps.ila.control.REASONS names them
R_TRANSLATED = 0       # mapping found, destination rewritten
R_NOT_IPV6 = 1
R_MALFORMED = 2        # truncated Ethernet/IPv6/transport header
R_NOT_ILA = 3          # router: not a SIR prefix; host: not one of our locators
R_UNKNOWN_PASS = 4     # router: SIR known, identifier not: passed untouched
R_UNKNOWN_DROP = 5     # router: ... dropped
R_UNKNOWN_DEFAULT = 6  # router: ... sent to the SIR's default locator
R_CBIT = 7             # neutral mode: router got a SIR address with the C-bit set /
                       # host got an ILA address without it: passed untouched
R_NO_L4 = 8            # adjust mode: no TCP/UDP/ICMPv6 right after the IPv6 header:
                       # translated, no transport checksum to fix
R_HOST_MISMATCH = 9    # host: identifier not mapped to this locator: passed untouched
R_UDP_ZERO = 10        # adjust mode: UDP checksum 0 (invalid in IPv6) left as it is
N_REASONS = 16

# unknown-identifier policy (SirInfo.unknown)
U_PASS = 0
U_DROP = 1
U_DEFAULT = 2
# checksum modes (SirInfo.csum, Mapping.flags)
CS_NEUTRAL = 0
CS_ADJUST = 1
CS_NONE = 2

ROLE_ROUTER = 0
ROLE_HOST = 1
ROLE = Const(u32, 0)

MAX_MAPPINGS = 131072  # per table; resized by the control plane
MAX_SIRS = 1024

# offsets in the frame: Ethernet 14, IPv6 destination at 38 (upper 64) and 46 (lower 64)
DST_HI = 38
DST_LO = 46
CBIT = 0x1000          # the C-bit in the identifier's first 16-bit word (host order)


class Counter(Struct):
    packets: u64
    bytes: u64


class IlaKey(Struct):
    """(SIR prefix, identifier), each the raw 8 bytes of the address as a u64."""

    sir: u64
    ident: u64


class Mapping(Struct):
    locator: u64       # raw 8 bytes
    flags: u32         # reserved (0)
    counter: u32       # reserved (0): per-mapping counters are not implemented


class SirInfo(Struct):
    default_locator: u64  # raw 8 bytes, valid when has_default
    has_default: u8
    unknown: u8           # U_*
    csum: u8              # CS_*
    pad: u8


class LocInfo(Struct):
    sir: u64           # raw 8 bytes: the SIR prefix this locator translates back to
    csum: u8
    pad: u8


stats = PerCpuArray[u32, Counter](max_entries=N_REASONS)
sirs = HashMap[u64, SirInfo](max_entries=MAX_SIRS)
locators = HashMap[u64, LocInfo](max_entries=MAX_SIRS)
mappings0 = HashMap[IlaKey, Mapping](max_entries=MAX_MAPPINGS)
mappings1 = HashMap[IlaKey, Mapping](max_entries=MAX_MAPPINGS)
active = ArrayMap[u32, u32](max_entries=1)


def count(reason, length):
    c = stats.lookup(reason)
    if c:
        c.packets += 1
        c.bytes += length


def fold(s):
    """One's-complement fold of a 32-bit partial sum to 16 bits (0 only for 0)."""
    t: u32 = (s & 0xFFFF) + (s >> 16)
    t = (t & 0xFFFF) + (t >> 16)
    return t


def word_sum(x):
    """The one's-complement partial sum of the four 16-bit words of a raw u64 (the bytes
    of the packet as a little-endian load gives them: each word is byte-swapped)."""
    s: u32 = (bswap16(u16(x & 0xFFFF)) + bswap16(u16((x >> 16) & 0xFFFF))
              + bswap16(u16((x >> 32) & 0xFFFF)) + bswap16(u16((x >> 48) & 0xFFFF)))
    return s


def l4_check_offset(nexthdr):
    """Offset of the transport checksum in the frame, 0 when not TCP/UDP/ICMPv6."""
    if nexthdr == IPPROTO_TCP:
        return 54 + 16
    if nexthdr == IPPROTO_UDP:
        return 54 + 6
    if nexthdr == IPPROTO_ICMPV6:
        return 54 + 2
    return 0


@xdp
def xdp_ila(ctx):
    length = ctx.data_end - ctx.data
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        count(R_MALFORMED, length)
        return XDP_PASS
    if eth.proto != ETH_P_IPV6:
        count(R_NOT_IPV6, length)
        return XDP_PASS
    ip6 = c.parse(IPv6)
    if not ip6:
        count(R_MALFORMED, length)
        return XDP_PASS
    hi = ctx.load(u64, DST_HI)
    lo = ctx.load(u64, DST_LO)
    w0 = ctx.load(be16, DST_LO)
    w3 = ctx.load(be16, DST_LO + 6)
    a1 = ctx.load(be32, DST_HI)
    a2 = ctx.load(be32, DST_HI + 4)
    if not hi or not lo or not w0 or not w3 or not a1 or not a2:
        count(R_MALFORMED, length)
        return XDP_PASS
    old_hi = hi.value
    ident = lo.value
    new_hi: u64 = 0
    mode: u32 = CS_NONE
    reason: u32 = R_TRANSLATED
    sel = active.lookup(0)
    if not sel:
        count(R_NOT_ILA, length)
        return XDP_PASS
    if ROLE == ROLE_ROUTER:
        s = sirs.lookup(old_hi)
        if not s:
            count(R_NOT_ILA, length)
            return XDP_PASS
        mode = s.csum
        if mode == CS_NEUTRAL and (w0.value & CBIT):
            count(R_CBIT, length)
            return XDP_PASS
        k = IlaKey(sir=old_hi, ident=ident)
        found = 0
        if sel.value == 1:
            m1 = mappings1.lookup(k)
            if m1:
                new_hi = m1.locator
                found = 1
        else:
            m0 = mappings0.lookup(k)
            if m0:
                new_hi = m0.locator
                found = 1
        if not found:
            if s.unknown == U_DROP:
                count(R_UNKNOWN_DROP, length)
                return XDP_DROP
            if s.unknown == U_DEFAULT and s.has_default:
                new_hi = s.default_locator
                reason = R_UNKNOWN_DEFAULT
            else:
                count(R_UNKNOWN_PASS, length)
                return XDP_PASS
    else:
        li = locators.lookup(old_hi)
        if not li:
            count(R_NOT_ILA, length)
            return XDP_PASS
        mode = li.csum
        new_hi = li.sir
        orig = ident
        if mode == CS_NEUTRAL:
            if not (w0.value & CBIT):
                count(R_CBIT, length)
                return XDP_PASS
            # undo the router's adjustment: locator back to SIR, C-bit cleared
            d: u32 = word_sum(new_hi) + (0xFFFF * 4 - word_sum(old_hi)) + (0xFFFF - CBIT)
            low: u32 = fold(w3.value + (0xFFFF - fold(d)))
            # raw layout: byte 46 is the lowest byte (C-bit = 0x10), bytes 52..53 the top
            orig = ((ident & 0x0000FFFFFFFFFFEF)
                    | (u64(bswap16(u16(low))) << 48))
        hk = IlaKey(sir=new_hi, ident=orig)
        ok = 0
        if sel.value == 1:
            h1 = mappings1.lookup(hk)
            if h1 and h1.locator == old_hi:
                ok = 1
        else:
            h0 = mappings0.lookup(hk)
            if h0 and h0.locator == old_hi:
                ok = 1
        if not ok:
            count(R_HOST_MISMATCH, length)
            return XDP_PASS
    # -- rewrite ---------------------------------------------------------------------------
    if mode == CS_ADJUST:
        off = l4_check_offset(ip6.nexthdr)
        if off == 0:
            hi.value = new_hi
            count(R_NO_L4 if reason == R_TRANSLATED else reason, length)
            return XDP_PASS
        ck = ctx.load(be16, off)
        if not ck:
            count(R_MALFORMED, length)
            return XDP_PASS
        old1 = a1.value
        old2 = a2.value
        hi.value = new_hi
        b1 = ctx.load(be32, DST_HI)
        b2 = ctx.load(be32, DST_HI + 4)
        ck2 = ctx.load(be16, off)
        if not b1 or not b2 or not ck2:
            count(R_MALFORMED, length)
            return XDP_PASS
        if ip6.nexthdr == IPPROTO_UDP and ck2.value == 0:
            count(R_UDP_ZERO, length)
            return XDP_PASS
        v = csum_replace4(ck2.value, old1, b1.value)
        v = csum_replace4(v, old2, b2.value)
        if ip6.nexthdr == IPPROTO_UDP and v == 0:
            v = 0xFFFF
        ck2.value = v
    elif mode == CS_NEUTRAL:
        if ROLE == ROLE_ROUTER:
            # sum change: the locator's words, plus the C-bit set in word 0; the low word
            # of the identifier takes the opposite
            dd: u32 = word_sum(new_hi) + (0xFFFF * 4 - word_sum(old_hi)) + CBIT
            adj: u32 = fold(w3.value + (0xFFFF - fold(dd)))
            hi.value = new_hi
            w0.value = w0.value | CBIT
            w3.value = adj
        else:
            hi.value = new_hi
            lo.value = orig
    else:
        hi.value = new_hi
    count(reason, length)
    return XDP_PASS

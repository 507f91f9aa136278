"""The filter's packet path, written in pyxdp's Python dialect (compiled, never imported
for execution): parse, find candidate rules through indexes, check them, count, decide.

Indexes: four LPM tries (source/destination, IPv4/IPv6) and a source-MAC hash map give an
*index value* per packet: 0 (nothing), ``SINGLE | rule`` (the common case: one rule) or the
id of a list of up to ``MAX_LIST`` rule numbers in ``lists`` (ascending, ``NO_RULE``
padded).  Rules without prefix or MAC are scanned from ``generic``.  A rule number is its
priority (position in the rule set): the lowest matching number wins, so every scan stops
as soon as it reaches a number not below the best match so far.

A rule is reached through one *primary* index (source prefixes, else destination
prefixes, else MAC, else generic); its other conditions live in its ``RuleEntry`` and are
checked after the hit.  A rule with source *and* destination prefixes is found through the
source trie and its destination membership checked in the packet's destination list.

Rate-limited rules are metered last: the scan records them as "matches but for the rate"
(the ``MAX_RATED`` lowest, sorted) and only those below the best rule without a rate take a
token, in rule order, so a rule never spends tokens on packets another rule decides.

Every ``Const`` below is set by the control plane before load: features a rule set does
not use are constant-false branches the verifier removes, so they cost no cycles.

Known limitations:

* Token buckets are updated under a ``bpf_spin_lock`` (one of ``BUCKET_LOCKS`` stripes,
  by a hash of the bucket key: the kernel has no spin locks in LRU hash values), so one
  source metered on several CPUs at once shares one bucket: the limit holds across CPUs.
  The count-min sketch behind the bucket table (below) is updated without a lock: its
  cells can undercount by the packets of a race, never overcount.
* Sources beyond the bucket table (``Sizes.sources``; LRU) do not escape the limit: every
  packet a rate rule passes is counted in a count-min sketch (``SKETCH_ROWS`` x
  ``SKETCH_WIDTH`` cells, one-second windows), and a source whose smallest cell has
  reached pps + burst in the window is over, even with a fresh bucket after an eviction.
  Only passed packets are counted, so a cell holds at most pps + burst per source that
  hashes to it; a source that shares all its cells with others can be limited early.
  Byte-rate (bps) limits are not counted in it, only packet rates.
* At most ``MAX_RATED`` rate-limited rules are metered for one packet: a fifth
  overlapping rate-limited candidate (lower priority than four that all passed) is not.
* IPv6: ``MAX_EXT`` extension headers are walked; a longer chain is malformed.
"""

from pyxdp.compiler.lang import (
    BPF_F_MMAPABLE,
    BPF_F_NO_PREALLOC,
    BPF_NOEXIST,
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_IP,
    ETH_P_IPV6,
    ICMP,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_ROUTING,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP,
    UDP,
    VLAN,
    XDP_DROP,
    XDP_PASS,
    ArrayMap,
    Const,
    Ethernet,
    HashMap,
    ICMPv6,
    IPv4,
    IPv6,
    IPv6Ext,
    LpmKey4,
    LpmKey6,
    LpmTrie,
    LruHashMap,
    PerCpuArray,
    SpinLock,
    Struct,
    atomic_add,
    be16,
    be32,
    be64,
    ktime_get_ns,
    subprog,
    u8,
    u32,
    u64,
    xdp,
)

# -- sizes (compile-time) ---------------------------------------------------------------------
MAX_LIST = 8            # rules one address can reach through one index
MAX_GENERIC = 32        # rules without prefix or MAC
MAX_PORT_RANGES = 8     # per port field of a rule
PATTERN_LEN = 16
MAX_RATED = 4           # rate-limited candidates metered per packet (Pkt.r0..r3)
SKETCH_ROWS = 2         # count-min sketch behind the rate buckets (see over_rate)
SKETCH_WIDTH = 1 << 16
SKETCH_SHIFT = 48       # 64 - log2(SKETCH_WIDTH)
SKETCH_WINDOW = 1000000000   # ns
MAX_EXT = 6             # IPv6 extension headers walked (more: the packet is malformed)
IPPROTO_AH = 51
NO_RULE = 0xFFFFFFFF
SINGLE = 0x80000000
NS = 1000000000

# packet facts (Pkt.bits)
P_MALF = 1       # a header is truncated or inconsistent
P_FRAG = 2       # a fragment (first or later)
P_LATER = 4      # a non-first fragment: no L4 header
P_OPTS = 8       # IPv4 options / IPv6 extension headers (other than fragment)
P_PORTS = 16     # TCP/UDP header present: sport/dport valid
P_TCP = 32       # TCP header present: tcp flags valid
P_L4 = 64        # L4 header start known (pattern base l4/payload)
P_VLAN = 128
P_IP = 256       # ethertype says IPv4/IPv6 (the default policy applies)

# rule conditions (RuleEntry.flags)
F_PROTO = 1
F_SPORT = 2
F_DPORT = 4
F_MAC = 8
F_VLAN = 16
F_TCPF = 32
F_FRAG = 64
F_FRAG_V = 128
F_OPTS = 256
F_OPTS_V = 512
F_MALF = 1024
F_MALF_V = 2048
F_LEN = 4096
F_PAT = 8192
F_RATE = 16384
F_SRC = 32768
F_DST = 65536
F_IP = 131072    # needs an IP packet
F_DENY = 262144
F_EXPR = 524288   # a tcpdump expression (RuleEntry.expr: which of expr_0..expr_3)
MAX_EXPR = 4

# counter slots (rules use SLOT_FIRST and up, stable per rule name)
SLOT_DEFAULT = 0  # matched no rule
SLOT_PASSED = 1
SLOT_DROPPED = 2  # dropped (or, dry run, would have been)
SLOT_FIRST = 3

# -- configuration (.rodata, set per rule-set generation) ---------------------------------------
DEFAULT_DENY = Const(u32, 0)
DRY_RUN = Const(u32, 0)
USE_SRC4 = Const(u32, 0)
USE_SRC6 = Const(u32, 0)
USE_DST4 = Const(u32, 0)
USE_DST6 = Const(u32, 0)
USE_MACS = Const(u32, 0)
LIST_LEN = Const(u32, 0)      # longest list in use (1 when every index value is SINGLE)
N_GENERIC = Const(u32, 0)
USE_PORTS = Const(u32, 0)
USE_TCPF = Const(u32, 0)
USE_VLAN = Const(u32, 0)
USE_MAC = Const(u32, 0)
USE_FLAGS = Const(u32, 0)     # fragment / ip_options / malformed conditions
USE_LEN = Const(u32, 0)
USE_PATTERN = Const(u32, 0)
USE_RATE = Const(u32, 0)
USE_TALKERS = Const(u32, 1)
TALKER_SAMPLE = Const(u32, 16)  # top talkers: one drop in N is recorded, counting N
FAKE_CLOCK = Const(u32, 0)    # tests: time comes from clock[0], not ktime_get_ns
FAST4 = Const(u32, 0)         # the block-list fast path for IPv4 (see xdp_filter)
USE_EXPR = Const(u32, 0)
EXPR_NONE = Const(u32, 0)     # what an unused expression placeholder returns (no match)

# prefix lookups: per index (src4, dst4, src6, dst6) HASH_<idx> = how many prefix lengths a
# hash lookup probes (0: the LPM trie is used), longest first: L<idx>_<j> the length,
# M<idx>_<j> its mask (host order; IPv6: MH/ML for the two 64-bit halves)
HASH_S4 = Const(u32, 0)
LS4_0 = Const(u32, 0)
MS4_0 = Const(u32, 0)
LS4_1 = Const(u32, 0)
MS4_1 = Const(u32, 0)
LS4_2 = Const(u32, 0)
MS4_2 = Const(u32, 0)
LS4_3 = Const(u32, 0)
MS4_3 = Const(u32, 0)
HASH_D4 = Const(u32, 0)
LD4_0 = Const(u32, 0)
MD4_0 = Const(u32, 0)
LD4_1 = Const(u32, 0)
MD4_1 = Const(u32, 0)
LD4_2 = Const(u32, 0)
MD4_2 = Const(u32, 0)
LD4_3 = Const(u32, 0)
MD4_3 = Const(u32, 0)
HASH_S6 = Const(u32, 0)
LS6_0 = Const(u32, 0)
MHS6_0 = Const(u64, 0)
MLS6_0 = Const(u64, 0)
LS6_1 = Const(u32, 0)
MHS6_1 = Const(u64, 0)
MLS6_1 = Const(u64, 0)
LS6_2 = Const(u32, 0)
MHS6_2 = Const(u64, 0)
MLS6_2 = Const(u64, 0)
LS6_3 = Const(u32, 0)
MHS6_3 = Const(u64, 0)
MLS6_3 = Const(u64, 0)
HASH_D6 = Const(u32, 0)
LD6_0 = Const(u32, 0)
MHD6_0 = Const(u64, 0)
MLD6_0 = Const(u64, 0)
LD6_1 = Const(u32, 0)
MHD6_1 = Const(u64, 0)
MLD6_1 = Const(u64, 0)
LD6_2 = Const(u32, 0)
MHD6_2 = Const(u64, 0)
MLD6_2 = Const(u64, 0)
LD6_3 = Const(u32, 0)
MHD6_3 = Const(u64, 0)
MLD6_3 = Const(u64, 0)
# DIR-k tables (apps/filter/dir4.py) for the IPv4 indexes: DIR_<idx> = 1 when the table
# is one (it then wins over HASH_<idx>), DSH<idx> = 32 - k (shift to the first-level
# index), DWS<idx> = log2 of a chunk's 64-bit words (26 - k)
DIR_CHUNK = 0x40000000
DIR_S4 = Const(u32, 0)
DSHS4 = Const(u32, 8)
DWSS4 = Const(u32, 2)
DIR_D4 = Const(u32, 0)
DSHD4 = Const(u32, 8)
DWSD4 = Const(u32, 2)



# -- map types ------------------------------------------------------------------------------------
class RuleEntry(Struct):
    flags: u32
    slot: u32
    proto: u32
    vlan: u32
    tcp_mask: u32
    tcp_value: u32
    len_lo: u32
    len_hi: u32
    sgroup: u32       # bit of this rule's sport ranges in sports[port]
    dgroup: u32
    pattern: u32
    limit: u32
    mac: u64          # the 6 bytes in wire order, big-endian in the low 48 bits
    expr: u32         # F_EXPR: the expression's subprogram (0..MAX_EXPR-1)
    pad: u32


class PairKey(Struct):
    rule: u32
    dlist: u32


class PatternEntry(Struct):
    base: u32         # 0 l3, 1 l4, 2 payload
    end: u32          # offset + length, from the base
    v0: u64           # window [end-16, end-8) as a native u64, already masked
    v1: u64           # window [end-8, end)
    m0: u64           # 0 when the pattern fits the second window
    m1: u64


class Limit(Struct):
    pps: u64
    bps: u64          # byte-bucket refill per ns, in token units (see byte_cost)
    pkt_cap: u64      # burst in nano-packets
    bit_cap: u64      # byte burst * byte_cost
    pkt_fill: u64     # ns to fill the empty packet bucket (caps the refill product)
    bit_fill: u64
    mask4: u32
    pad: u32
    mask6_hi: u64     # as the native u64 of the first 8 address bytes
    mask6_lo: u64
    byte_cost: u64    # tokens per byte: 8e9 nano-bits >> k, coarser above ~4.6 Gbit/s
    win_allow: u64    # packets a source may send per sketch window (pps + burst); 0: none


class BucketKey(Struct):
    slot: u32
    fam: u32
    hi: u64
    lo: u64


class Bucket(Struct):
    pkt_tokens: u64
    bit_tokens: u64
    last: u64


class LockCell(Struct):
    lock: SpinLock


BUCKET_LOCKS = 1024


class AddrKey(Struct):
    fam: u32
    pad: u32
    hi: u64           # IPv6: native u64 of bytes 0..7; IPv4: 0
    lo: u64           # IPv6: bytes 8..15; IPv4: the address (host order)


class HKey6(Struct):
    """LpmKey6's bytes (prefix length, then the address in network order) as two be64
    halves, so a hash probe can mask them."""

    _packed_ = True
    prefixlen: u32
    hi: be64
    lo: be64


class Counter(Struct):
    packets: u64
    bytes: u64


class AuthHdr(Struct):
    """IPv6 Authentication Header (RFC 4302): its length counts 4-byte words, minus 2."""

    _packed_ = True
    _hdrlen_ = ("hdrlen", 4, 8)
    nexthdr: u8
    hdrlen: u8
    reserved: be16
    spi: be32


class Frag6(Struct):
    nexthdr: u8
    reserved: u8
    off: be16
    ident: be32


class Pkt(Struct):
    bits: u32
    fam: u32
    proto: u32
    sport: u32
    dport: u32
    tcpf: u32
    vlan: u32
    length: u32
    l3: u32
    l4: u32
    pay: u32
    s4: u32
    slist: u32
    dlist: u32
    mlist: u32
    pad: u32
    mac: u64
    s_hi: u64
    s_lo: u64
    r0: u32           # rate-limited rules matching but for the rate, ascending (MAX_RATED)
    r1: u32
    r2: u32
    r3: u32


# per generation (built fresh for every rule set)
src4 = LpmTrie[LpmKey4, u32](max_entries=1 << 21)
src6 = LpmTrie[LpmKey6, u32](max_entries=1 << 20)
dst4 = LpmTrie[LpmKey4, u32](max_entries=1 << 21)
dst6 = LpmTrie[LpmKey6, u32](max_entries=1 << 20)
# the same contents as hash maps, probed per prefix length (the control plane picks these
# when a table has at most 4 distinct lengths: a /32 block list is one probe)
hsrc4 = HashMap[LpmKey4, u32](max_entries=1 << 21, flags=BPF_F_NO_PREALLOC)
hdst4 = HashMap[LpmKey4, u32](max_entries=1 << 21, flags=BPF_F_NO_PREALLOC)
hsrc6 = HashMap[HKey6, u32](max_entries=1 << 20, flags=BPF_F_NO_PREALLOC)
hdst6 = HashMap[HKey6, u32](max_entries=1 << 20, flags=BPF_F_NO_PREALLOC)
# DIR-k tables: first level (two u32 entries a u64, mmapable: written in one copy),
# chunk bitmaps, chunk values (hi: the longer prefixes', lo: the /k's own)
dir_s4_l1 = ArrayMap[u32, u64](max_entries=1 << 23, flags=BPF_F_MMAPABLE)
dir_s4_bits = ArrayMap[u32, u64](max_entries=1, flags=BPF_F_MMAPABLE)
dir_s4_info = ArrayMap[u32, u64](max_entries=1, flags=BPF_F_MMAPABLE)
dir_d4_l1 = ArrayMap[u32, u64](max_entries=1 << 23, flags=BPF_F_MMAPABLE)
dir_d4_bits = ArrayMap[u32, u64](max_entries=1, flags=BPF_F_MMAPABLE)
dir_d4_info = ArrayMap[u32, u64](max_entries=1, flags=BPF_F_MMAPABLE)
macs = HashMap[u64, u32](max_entries=4096)
lists = ArrayMap[u32, u32](max_entries=4096 * MAX_LIST)
generic = ArrayMap[u32, u32](max_entries=MAX_GENERIC)
rules = ArrayMap[u32, RuleEntry](max_entries=65536)
sports = ArrayMap[u32, u64](max_entries=65536)   # port -> bit per distinct sport range set
dports = ArrayMap[u32, u64](max_entries=65536)
pairs = HashMap[PairKey, u32](max_entries=65536)  # (src+dst rule, dst index) -> 1
patterns = ArrayMap[u32, PatternEntry](max_entries=4096)
limits = ArrayMap[u32, Limit](max_entries=4096)
# shared by every generation (pinned): counters, rate state, top talkers, test clock
stats = PerCpuArray[u32, Counter](max_entries=65536 + 3)
buckets = LruHashMap[BucketKey, Bucket](max_entries=65536)
talkers = LruHashMap[AddrKey, u64](max_entries=16384)
clock = ArrayMap[u32, u64](max_entries=1)
# striped locks for the token buckets: the kernel keeps bpf_spin_lock only in (plain) hash
# and array values, not in the LRU hash the buckets live in; a bucket's read-modify-write
# holds the lock of its stripe (shared by every generation, like the buckets)
bucket_locks = ArrayMap[u32, LockCell](max_entries=BUCKET_LOCKS)
# the rate limits' memory beyond the bucket table: a count-min sketch of packets per source
# and one-second window (SKETCH_ROWS rows of SKETCH_WIDTH cells: window << 32 | count),
# consulted when a source has no bucket (new, or evicted by LRU churn)
sketch = ArrayMap[u32, u64](max_entries=SKETCH_ROWS * SKETCH_WIDTH)
# per-CPU scratch for the packet facts: the BPF stack (512 bytes) is too small for them
# next to the spills of the inlined rule check
scratch = PerCpuArray[u32, Pkt](max_entries=1)
# per-CPU state of the top talkers' sampling (see sampled)
rng = PerCpuArray[u32, u64](max_entries=1)


# -- parsing helpers -------------------------------------------------------------------------
def mac48(a):
    return (u64(a[0]) << 40 | u64(a[1]) << 32 | u64(a[2]) << 24 | u64(a[3]) << 16
            | u64(a[4]) << 8 | u64(a[5]))


def mismatch(bits, pbit, f, fbit, vbit):
    """A yes/no condition of the rule (``fbit``, wanted value ``vbit``) the packet fails."""
    if not (f & fbit):
        return 0
    if ((bits & pbit) != 0) != ((f & vbit) != 0):
        return 1
    return 0


def index_of(v):
    if v:
        return v.value
    return 0


# -- prefix lookups ---------------------------------------------------------------------------
# One probe function per table, spelled out: a dialect helper cannot take a map as an
# argument, and each table has its own lengths and masks (rodata constants the verifier
# folds, so unused probes cost nothing).
def probe_s4(addr):
    """Longest match of ``addr`` among the hash table's prefix lengths (0: none); one key,
    rewritten for each length (one stack slot, not one per probe)."""
    k = LpmKey4(prefixlen=LS4_0, addr=addr & MS4_0)
    v0 = hsrc4.lookup(k)
    if v0:
        return v0.value
    if HASH_S4 > 1:
        k.prefixlen = LS4_1
        k.addr = addr & MS4_1
        v1 = hsrc4.lookup(k)
        if v1:
            return v1.value
    if HASH_S4 > 2:
        k.prefixlen = LS4_2
        k.addr = addr & MS4_2
        v2 = hsrc4.lookup(k)
        if v2:
            return v2.value
    if HASH_S4 > 3:
        k.prefixlen = LS4_3
        k.addr = addr & MS4_3
        v3 = hsrc4.lookup(k)
        if v3:
            return v3.value
    return 0


def probe_d4(addr):
    """Longest match of ``addr`` among the hash table's prefix lengths (0: none); one key,
    rewritten for each length (one stack slot, not one per probe)."""
    k = LpmKey4(prefixlen=LD4_0, addr=addr & MD4_0)
    v0 = hdst4.lookup(k)
    if v0:
        return v0.value
    if HASH_D4 > 1:
        k.prefixlen = LD4_1
        k.addr = addr & MD4_1
        v1 = hdst4.lookup(k)
        if v1:
            return v1.value
    if HASH_D4 > 2:
        k.prefixlen = LD4_2
        k.addr = addr & MD4_2
        v2 = hdst4.lookup(k)
        if v2:
            return v2.value
    if HASH_D4 > 3:
        k.prefixlen = LD4_3
        k.addr = addr & MD4_3
        v3 = hdst4.lookup(k)
        if v3:
            return v3.value
    return 0


def dir_s4(addr):
    """Longest match of ``addr`` in the source DIR-k table (0: none): at most three
    array loads, whatever the table holds."""
    s = addr >> DSHS4
    w = dir_s4_l1.lookup(s >> 1)
    if not w:
        return 0
    e = u32((w.value >> ((s & 1) << 5)) & 0xFFFFFFFF)
    if (e & DIR_CHUNK) == 0:
        return e
    c = e & (DIR_CHUNK - 1)
    lo = addr & ((u32(1) << DSHS4) - 1)
    b = dir_s4_bits.lookup((c << DWSS4) + (lo >> 6))
    i = dir_s4_info.lookup(c)
    if not b or not i:
        return 0
    if (b.value >> (lo & 63)) & 1:
        return u32(i.value >> 32)
    return u32(i.value & 0xFFFFFFFF)


def dir_d4(addr):
    """Longest match of ``addr`` in the destination DIR-k table (0: none)."""
    s = addr >> DSHD4
    w = dir_d4_l1.lookup(s >> 1)
    if not w:
        return 0
    e = u32((w.value >> ((s & 1) << 5)) & 0xFFFFFFFF)
    if (e & DIR_CHUNK) == 0:
        return e
    c = e & (DIR_CHUNK - 1)
    lo = addr & ((u32(1) << DSHD4) - 1)
    b = dir_d4_bits.lookup((c << DWSD4) + (lo >> 6))
    i = dir_d4_info.lookup(c)
    if not b or not i:
        return 0
    if (b.value >> (lo & 63)) & 1:
        return u32(i.value >> 32)
    return u32(i.value & 0xFFFFFFFF)


@subprog
def probe_s6(hi, lo):
    k = HKey6(prefixlen=LS6_0, hi=hi & MHS6_0, lo=lo & MLS6_0)
    v0 = hsrc6.lookup(k)
    if v0:
        return v0.value
    if HASH_S6 > 1:
        k.prefixlen = LS6_1
        k.hi = hi & MHS6_1
        k.lo = lo & MLS6_1
        v1 = hsrc6.lookup(k)
        if v1:
            return v1.value
    if HASH_S6 > 2:
        k.prefixlen = LS6_2
        k.hi = hi & MHS6_2
        k.lo = lo & MLS6_2
        v2 = hsrc6.lookup(k)
        if v2:
            return v2.value
    if HASH_S6 > 3:
        k.prefixlen = LS6_3
        k.hi = hi & MHS6_3
        k.lo = lo & MLS6_3
        v3 = hsrc6.lookup(k)
        if v3:
            return v3.value
    return 0


@subprog
def probe_d6(hi, lo):
    k = HKey6(prefixlen=LD6_0, hi=hi & MHD6_0, lo=lo & MLD6_0)
    v0 = hdst6.lookup(k)
    if v0:
        return v0.value
    if HASH_D6 > 1:
        k.prefixlen = LD6_1
        k.hi = hi & MHD6_1
        k.lo = lo & MLD6_1
        v1 = hdst6.lookup(k)
        if v1:
            return v1.value
    if HASH_D6 > 2:
        k.prefixlen = LD6_2
        k.hi = hi & MHD6_2
        k.lo = lo & MLD6_2
        v2 = hdst6.lookup(k)
        if v2:
            return v2.value
    if HASH_D6 > 3:
        k.prefixlen = LD6_3
        k.hi = hi & MHD6_3
        k.lo = lo & MLD6_3
        v3 = hdst6.lookup(k)
        if v3:
            return v3.value
    return 0


# -- tcpdump expressions ----------------------------------------------------------------------
# Placeholders: the control plane replaces the body of expr_<j> with the eBPF translation of
# the classic BPF that libpcap makes of rule j's expression (pyxdp.cbpf), which returns 0
# for no match.  ctx is read (times a configuration value) so that the compiler keeps it
# as the argument the translated code takes.
@subprog
def expr_0(ctx):
    return ctx.ingress_ifindex * EXPR_NONE


@subprog
def expr_1(ctx):
    return ctx.ingress_ifindex * EXPR_NONE


@subprog
def expr_2(ctx):
    return ctx.ingress_ifindex * EXPR_NONE


@subprog
def expr_3(ctx):
    return ctx.ingress_ifindex * EXPR_NONE


def expr_match(ctx, j):
    if j == 0:
        return expr_0(ctx)
    if j == 1:
        return expr_1(ctx)
    if j == 2:
        return expr_2(ctx)
    return expr_3(ctx)


# -- rule checks -----------------------------------------------------------------------------
def pattern_ok(ctx, p, pi):
    """Compare one or two 8-byte windows that end where the pattern ends (the control
    plane put the masked pattern at the windows' ends, zero mask elsewhere): no byte loop,
    and a pattern near the end of the packet needs no bytes behind it."""
    pat = patterns.lookup(pi)
    if not pat:
        return 0
    base: u32 = p.l3
    if pat.base != 0:
        if not (p.bits & P_L4):
            return 0
        base = p.l4
        if pat.base == 2:
            base = p.pay
    end: u32 = base + pat.end
    if end < 8:
        return 0
    w = ctx.load(u64, end - 8)
    if not w or (w.value & pat.m1) != pat.v1:
        return 0
    if pat.m0:
        if end < 16:        # only the first window needs 16 bytes before the end
            return 0
        w0 = ctx.load(u64, end - 16)
        if not w0 or (w0.value & pat.m0) != pat.v0:
            return 0
    return 1


def now_ns():
    if FAKE_CLOCK:
        t = clock.lookup(0)
        if t:
            return t.value
        return u64(0)
    return ktime_get_ns()


def sketch_hash(key):
    return (key.lo * 0x9E3779B97F4A7C15) ^ (key.hi * 0xC2B2AE3D27D4EB4F) ^ (
        u64(key.slot) * 0x165667B19E3779F9) ^ u64(key.fam)


def sketch_full(h, allow, window):
    """Whether the source with hash ``h`` already passed ``allow`` packets in ``window``:
    the smallest of its cells (the least overestimated count) has reached it."""
    least: u64 = 0xFFFFFFFF
    for row in range(SKETCH_ROWS):
        mixed: u64 = (h ^ (u64(row) * 0xD6E8FEB86659FD93)) * 0xFF51AFD7ED558CCD
        idx: u32 = u32(mixed >> SKETCH_SHIFT) + u32(row) * SKETCH_WIDTH
        cell = sketch.lookup(idx)
        if cell:
            n: u64 = 0
            if cell.value >> 32 == window & 0xFFFFFFFF:
                n = cell.value & 0xFFFFFFFF
            if n < least:
                least = n
    return least >= allow


def sketch_count(h, window):
    """Count one passed packet of the source with hash ``h`` in ``window``."""
    for row in range(SKETCH_ROWS):
        mixed: u64 = (h ^ (u64(row) * 0xD6E8FEB86659FD93)) * 0xFF51AFD7ED558CCD
        idx: u32 = u32(mixed >> SKETCH_SHIFT) + u32(row) * SKETCH_WIDTH
        cell = sketch.lookup(idx)
        if cell:
            n: u64 = 1
            if cell.value >> 32 == window & 0xFFFFFFFF:
                n = (cell.value & 0xFFFFFFFF) + 1
            cell.value = ((window & 0xFFFFFFFF) << 32) | (n & 0xFFFFFFFF)


def over_rate(p, slot, li):
    """Meter the packet against the rule's token bucket for its source (or prefix):
    True when it is above the rate."""
    lim = limits.lookup(li)
    if not lim:
        return 0
    key = BucketKey(slot=slot, fam=p.fam)
    if p.fam == 4:
        key.lo = p.s4 & lim.mask4
    else:
        key.hi = p.s_hi & lim.mask6_hi
        key.lo = p.s_lo & lim.mask6_lo
    now = now_ns()
    # The bucket table is an LRU: with more sources than it holds, a source is evicted
    # and comes back with a fresh full bucket, again and again.  The sketch counts every
    # packet each source passed in this one-second window, across evictions, and a
    # source that has passed pps + burst (the most its bucket can pass in a second) is
    # over whatever its bucket says.
    window: u64 = now // SKETCH_WINDOW
    h: u64 = 0
    if lim.win_allow:
        h = sketch_hash(key)
        if sketch_full(h, lim.win_allow, window):
            return 1
    b = buckets.lookup(key)
    if not b:
        # a new (or evicted) source starts with a full bucket
        buckets.update(key, Bucket(pkt_tokens=lim.pkt_cap, bit_tokens=lim.bit_cap, last=now),
                       BPF_NOEXIST)
        b = buckets.lookup(key)
        if not b:
            return 0
    cost: u64 = u64(p.length) * lim.byte_cost
    over = 0
    stripe = key.lo ^ (key.lo >> 32) ^ key.hi ^ (key.hi >> 32) ^ key.slot
    cell = bucket_locks.lookup(u32(stripe & (BUCKET_LOCKS - 1)))
    if not cell:
        return 0
    with cell.lock:       # every CPU metering this bucket sees the others' tokens
        el: u64 = 0
        if now > b.last:
            el = now - b.last
        pel = el
        if pel > lim.pkt_fill:
            pel = lim.pkt_fill
        bel = el
        if bel > lim.bit_fill:
            bel = lim.bit_fill
        pt = b.pkt_tokens + pel * lim.pps
        if pt > lim.pkt_cap:
            pt = lim.pkt_cap
        bt = b.bit_tokens + bel * lim.bps
        if bt > lim.bit_cap:
            bt = lim.bit_cap
        if lim.pps and pt < NS:
            over = 1
        if lim.bps and bt < cost:
            over = 1
        if not over:
            if lim.pps:
                pt -= NS
            if lim.bps:
                bt -= cost
        b.pkt_tokens = pt
        b.bit_tokens = bt
        if now > b.last:
            b.last = now
    if lim.win_allow and not over:
        sketch_count(h, window)
    return over


def matches(ctx, p, r, skip):
    """Whether rule number ``r`` matches the packet (``skip``: flags of rules whose primary
    index is another one, so they are not judged twice)."""
    e = rules.lookup(r)
    if not e:
        return 0
    f = e.flags
    if f & skip:
        return 0
    if (f & F_IP) and not p.fam:
        return 0
    if USE_FLAGS and (mismatch(p.bits, P_MALF, f, F_MALF, F_MALF_V)
                      or mismatch(p.bits, P_FRAG, f, F_FRAG, F_FRAG_V)
                      or mismatch(p.bits, P_OPTS, f, F_OPTS, F_OPTS_V)):
        return 0
    if (f & F_PROTO) and p.proto != e.proto:
        return 0
    if USE_LEN and (f & F_LEN) and (p.length < e.len_lo or p.length > e.len_hi):
        return 0
    if USE_VLAN and (f & F_VLAN) and (not (p.bits & P_VLAN) or p.vlan != e.vlan):
        return 0
    if USE_MAC and (f & F_MAC) and p.mac != e.mac:
        return 0
    if USE_TCPF and (f & F_TCPF) and (
            not (p.bits & P_TCP) or (p.tcpf & e.tcp_mask) != e.tcp_value):
        return 0
    if USE_PORTS and (f & (F_SPORT | F_DPORT)):
        if not (p.bits & P_PORTS):
            return 0
        if f & F_SPORT:
            sp = sports.lookup(p.sport)
            if not sp or not ((sp.value >> e.sgroup) & 1):
                return 0
        if f & F_DPORT:
            dp = dports.lookup(p.dport)
            if not dp or not ((dp.value >> e.dgroup) & 1):
                return 0
    if (f & F_SRC) and (f & F_DST) and not pairs.lookup(PairKey(rule=r, dlist=p.dlist)):
        return 0
    if USE_PATTERN and (f & F_PAT) and not pattern_ok(ctx, p, e.pattern):
        return 0
    if USE_EXPR and (f & F_EXPR) and expr_match(ctx, e.expr) == 0:
        return 0
    if USE_RATE and (f & F_RATE):
        return 2        # metered later, only if no better rule wins (see xdp_filter)
    return 1


def note_rated(p, r):
    """Keep the ``MAX_RATED`` lowest rate-limited candidates, sorted (a compare-and-swap
    chain: fields are only indexed by constants)."""
    if r >= p.r3:
        return
    p.r3 = r
    if p.r3 < p.r2:
        p.r2, p.r3 = p.r3, p.r2
    if p.r2 < p.r1:
        p.r1, p.r2 = p.r2, p.r1
    if p.r1 < p.r0:
        p.r0, p.r1 = p.r1, p.r0


def rated(p, k):
    if k == 0:
        return p.r0
    if k == 1:
        return p.r1
    if k == 2:
        return p.r2
    return p.r3


def candidate(idx, j):
    """Rule number ``j`` of an index value (``NO_RULE`` past its end)."""
    if idx == 0:
        return u32(NO_RULE)
    if idx & SINGLE:
        if j == 0:
            return idx & 0x7FFFFFFF
        return u32(NO_RULE)
    e = lists.lookup(idx * MAX_LIST + j)
    if not e:
        return u32(NO_RULE)
    return e.value


def generic_rule(j):
    g = generic.lookup(j)
    if not g:
        return u32(NO_RULE)
    return g.value


def count(slot, n):
    c = stats.lookup(slot)
    if c:
        c.packets += 1
        c.bytes += n


def note_talker(p):
    if p.fam == 6:
        talker(6, p.s_hi, p.s_lo)
    else:
        talker(4, 0, u64(p.s4))


def sampled():
    """True for one call in TALKER_SAMPLE (a power of two), at random: a per-CPU xorshift64
    (no helper call, unlike bpf_get_prandom_u32, which cost ~15 ns on every drop), seeded
    from the clock on its first use on a CPU."""
    s = rng.lookup(0)
    if not s:
        return 0
    x: u64 = s.value
    if x == 0:
        x = ktime_get_ns() | 1
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    s.value = x
    if ((x >> 32) & (TALKER_SAMPLE - 1)) == 0:
        return 1
    return 0


def talker(fam, hi, lo):
    # sampled: one drop in TALKER_SAMPLE updates the LRU map, by TALKER_SAMPLE.  A flood
    # from random sources would otherwise insert into the (globally locked) LRU map for
    # every packet and cut the drop rate in half; big talkers are still found.
    if TALKER_SAMPLE > 1 and not sampled():
        return
    record_talker(fam, hi, lo)


@subprog
def record_talker(fam, hi, lo):
    """A subprogram: its key and lookups stay off the main program's 512-byte frame."""
    k = AddrKey(fam=fam, hi=hi, lo=lo)
    v = talkers.lookup(k)
    if v:
        atomic_add(v.value, TALKER_SAMPLE)
    elif talkers.update(k, u64(TALKER_SAMPLE), BPF_NOEXIST) != 0:
        v2 = talkers.lookup(k)
        if v2:
            atomic_add(v2.value, TALKER_SAMPLE)


# -- the program -----------------------------------------------------------------------------
@xdp
def xdp_filter(ctx):
    if FAST4:
        # the block-list fast path (the control plane sets FAST4 when every rule matches
        # on source prefixes alone and each address reaches at most one rule): a
        # well-formed untagged IPv4 packet is decided right here, exactly as the general
        # path below would decide it; anything else takes the general path
        c0 = ctx.cursor()
        e0 = c0.parse(Ethernet)
        if e0 and e0.proto == ETH_P_IP:
            n0 = ctx.packet_len()
            ip0 = c0.parse(IPv4)
            if ip0 and ip0.version == 4 and ip0.tot_len >= ip0.ihl * 4 and (
                    14 + ip0.tot_len <= n0):
                hit: u32 = 0
                if DIR_S4:
                    hit = dir_s4(ip0.saddr)
                elif HASH_S4:
                    hit = probe_s4(ip0.saddr)
                else:
                    hit = index_of(src4.lookup(LpmKey4(prefixlen=32, addr=ip0.saddr)))
                slot0: u32 = SLOT_DEFAULT
                deny0 = DEFAULT_DENY != 0
                if hit:
                    e1 = rules.lookup(hit & (SINGLE - 1))
                    if e1:
                        slot0 = e1.slot
                        deny0 = (e1.flags & F_DENY) != 0
                count(slot0, n0)
                if deny0:
                    count(SLOT_DROPPED, n0)
                    if USE_TALKERS:
                        talker(4, 0, u64(ip0.saddr))
                    if not DRY_RUN:
                        return XDP_DROP
                else:
                    count(SLOT_PASSED, n0)
                return XDP_PASS
    p = scratch.lookup(0)
    if not p:
        return XDP_PASS
    p.bits = 0
    p.fam = 0
    p.proto = 0
    p.sport = 0
    p.dport = 0
    p.tcpf = 0
    p.vlan = 0
    p.l4 = 0
    p.pay = 0
    p.s4 = 0
    p.slist = 0
    p.dlist = 0
    p.mlist = 0
    p.mac = 0
    p.s_hi = 0
    p.s_lo = 0
    p.r0 = NO_RULE
    p.r1 = NO_RULE
    p.r2 = NO_RULE
    p.r3 = NO_RULE
    p.length = ctx.data_end - ctx.data
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        p.bits = P_MALF
    else:
        p.mac = mac48(eth.src)
        proto = eth.proto
        for _ in range(2):
            if proto != ETH_P_8021Q and proto != ETH_P_8021AD:
                break
            tag = c.parse(VLAN)
            if not tag:
                p.bits |= P_MALF
                break
            if not (p.bits & P_VLAN):
                p.vlan = tag.tci & 0xFFF
                p.bits |= P_VLAN
            proto = tag.proto
        if (p.bits & P_MALF) == 0 and proto in (ETH_P_8021Q, ETH_P_8021AD):
            # a third tag: what it carries is unknown, so it cannot be exempt from the
            # policy as non-IP (nor from the rules, by hiding an IP packet deeper)
            p.bits |= P_MALF | P_IP
        if USE_MACS:
            p.mlist = index_of(macs.lookup(p.mac))
        l4proto: u32 = 0
        p.l3 = c.offset()
        if (p.bits & P_MALF) == 0 and proto == ETH_P_IP:
            p.bits |= P_IP
            ip = c.parse(IPv4)
            if not ip or ip.version != 4 or ip.tot_len < ip.ihl * 4 or (
                    p.l3 + ip.tot_len > p.length):
                p.bits |= P_MALF
            else:
                p.fam = 4
                p.s4 = ip.saddr
                p.s_lo = ip.saddr
                l4proto = ip.protocol
                if ip.ihl > 5:
                    p.bits |= P_OPTS
                if ip.frag_off & 0x3FFF:
                    p.bits |= P_FRAG
                    if ip.frag_off & 0x1FFF:
                        p.bits |= P_LATER
                if USE_SRC4:
                    if DIR_S4:
                        p.slist = dir_s4(ip.saddr)
                    elif HASH_S4:
                        p.slist = probe_s4(ip.saddr)
                    else:
                        p.slist = index_of(src4.lookup(LpmKey4(prefixlen=32, addr=ip.saddr)))
                if USE_DST4:
                    if DIR_D4:
                        p.dlist = dir_d4(ip.daddr)
                    elif HASH_D4:
                        p.dlist = probe_d4(ip.daddr)
                    else:
                        p.dlist = index_of(dst4.lookup(LpmKey4(prefixlen=32, addr=ip.daddr)))
        elif (p.bits & P_MALF) == 0 and proto == ETH_P_IPV6:
            p.bits |= P_IP
            ip6 = c.parse(IPv6)
            if not ip6 or ip6.version != 6 or p.l3 + 40 + ip6.payload_len > p.length:
                p.bits |= P_MALF
            else:
                p.fam = 6
                hi = ctx.load(u64, p.l3 + 8)
                lo = ctx.load(u64, p.l3 + 16)
                if hi and lo:
                    p.s_hi = hi.value
                    p.s_lo = lo.value
                if USE_SRC6:
                    if HASH_S6:
                        sh = ctx.load(be64, p.l3 + 8)
                        sl = ctx.load(be64, p.l3 + 16)
                        if sh and sl:
                            p.slist = probe_s6(sh.value, sl.value)
                    else:
                        p.slist = index_of(src6.lookup(LpmKey6(prefixlen=128, addr=ip6.saddr)))
                if USE_DST6:
                    if HASH_D6:
                        dh = ctx.load(be64, p.l3 + 24)
                        dl = ctx.load(be64, p.l3 + 32)
                        if dh and dl:
                            p.dlist = probe_d6(dh.value, dl.value)
                    else:
                        p.dlist = index_of(dst6.lookup(LpmKey6(prefixlen=128, addr=ip6.daddr)))
                nh: u32 = ip6.nexthdr
                for _ in range(MAX_EXT):
                    if nh in (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS):
                        p.bits |= P_OPTS
                        ext = c.parse(IPv6Ext)
                        if not ext:
                            p.bits |= P_MALF
                            break
                        nh = ext.nexthdr
                    elif nh == IPPROTO_AH:
                        p.bits |= P_OPTS
                        ah = c.parse(AuthHdr)
                        if not ah:
                            p.bits |= P_MALF
                            break
                        nh = ah.nexthdr
                    elif nh == IPPROTO_FRAGMENT:
                        fr = c.parse(Frag6)
                        if not fr:
                            p.bits |= P_MALF
                            break
                        p.bits |= P_FRAG
                        nh = fr.nexthdr
                        if fr.off & 0xFFF8:
                            # a later fragment carries no headers: what follows is data
                            p.bits |= P_LATER
                            break
                    else:
                        break
                # still an extension header after MAX_EXT: the L4 header was not reached,
                # so rules on it could be bypassed by padding; malformed (policy and
                # ``malformed`` rules decide)
                if (p.bits & (P_MALF | P_LATER)) == 0 and nh in (
                        IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
                        IPPROTO_AH):
                    p.bits |= P_MALF
                l4proto = nh
        if p.fam and (p.bits & (P_MALF | P_LATER)) == 0:
            p.proto = l4proto
            p.l4 = c.offset()
            if l4proto == IPPROTO_TCP:
                tcp = c.parse(TCP)
                if not tcp:
                    p.bits |= P_MALF
                else:
                    p.sport = tcp.source
                    p.dport = tcp.dest
                    p.tcpf = tcp.flags
                    p.bits |= P_PORTS | P_TCP | P_L4
            elif l4proto == IPPROTO_UDP:
                udp = c.parse(UDP)
                if not udp:
                    p.bits |= P_MALF
                else:
                    p.sport = udp.source
                    p.dport = udp.dest
                    p.bits |= P_PORTS | P_L4
            elif l4proto == IPPROTO_ICMP:
                icmp = c.parse(ICMP)
                if not icmp:
                    p.bits |= P_MALF
                else:
                    p.bits |= P_L4
            elif l4proto == IPPROTO_ICMPV6:
                icmp6 = c.parse(ICMPv6)
                if not icmp6:
                    p.bits |= P_MALF
                else:
                    p.bits |= P_L4
            else:
                p.bits |= P_L4
            p.pay = c.offset()
            if p.pay > p.length:
                p.bits |= P_MALF
        elif p.fam:
            p.proto = l4proto

    # sources: 0 source prefixes, 1 destination prefixes, 2 MAC, 3 generic rules; one
    # loop so that the rule check is inlined (and verified) once
    best: u32 = NO_RULE
    for src in range(4):
        idx: u32 = 0
        skip: u32 = 0
        limit: u32 = LIST_LEN
        if src == 0:
            if not (USE_SRC4 or USE_SRC6):
                continue
            idx = p.slist
        elif src == 1:
            if not (USE_DST4 or USE_DST6):
                continue
            idx = p.dlist
            skip = F_SRC
        elif src == 2:
            if not USE_MACS:
                continue
            idx = p.mlist
            skip = F_SRC | F_DST
        else:
            limit = N_GENERIC
        for j in range(MAX_GENERIC):
            if j >= limit:
                break
            r: u32 = NO_RULE
            if src == 3:
                r = generic_rule(j)
            else:
                r = candidate(idx, j)
            if r >= best:
                break
            m = matches(ctx, p, r, skip)
            if m == 1:
                best = r
                break
            if m == 2:
                note_rated(p, r)
    # rate-limited candidates take tokens only when they would decide: in rule order, and
    # only below the best rule that matched without a rate
    if USE_RATE:
        for k in range(MAX_RATED):
            rr = rated(p, k)
            if rr >= best:
                break
            re = rules.lookup(rr)
            if re and over_rate(p, re.slot, re.limit):
                best = rr
                break

    deny = DEFAULT_DENY != 0 and (p.bits & P_IP) != 0
    slot: u32 = SLOT_DEFAULT
    if best != NO_RULE:
        e = rules.lookup(best)
        if e:
            slot = e.slot
            deny = (e.flags & F_DENY) != 0
    count(slot, p.length)
    if deny:
        count(SLOT_DROPPED, p.length)
        if USE_TALKERS and p.fam:
            note_talker(p)
        if not DRY_RUN:
            return XDP_DROP
    else:
        count(SLOT_PASSED, p.length)
    return XDP_PASS

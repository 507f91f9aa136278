"""Rule set → map contents and feature flags for one data-plane generation (pure Python).

Nothing here touches the kernel, so every refusal (full table, too many overlapping rules,
too many port-range sets) happens before anything is loaded: a rule set is compiled whole
or not at all.  :meth:`Tables.write` fills kernel or emulator maps alike.

Index values (what the tries and the MAC hash hold): ``SINGLE | rule`` when one rule
covers an address — almost always, and a 1M-prefix block list is one rule — else the id of
a list of rule numbers.  A prefix's list holds the rules of the prefix *and of every
shorter prefix containing it* (the trie only returns the longest match), found by one sweep
over the prefixes sorted by start address: CIDR blocks nest or are disjoint, so a stack
holds exactly the enclosing blocks.

Lookup strategy, per table, from the rule set's shape (``compile_tables(strategy=)``):
the same keys (prefix length, address) and index values go into a DIR-k table
(:mod:`.dir4`, IPv4), into a hash map probed once per prefix length in use, longest first
(the lengths and masks are ``.rodata`` constants, so the verifier drops the probes a table
does not need), or into the LPM trie.  Measured on this machine (BPF_PROG_TEST_RUN, ns a
packet over a program that only parses): one hash probe into a million entries +22 ns
(a jhash and a bucket walk; flat in the table's size once its bucket array is sized to
it), the trie +100 to +130 at 100k-1M mixed lengths (its walk grows with the table), an
array load +2 (the verifier inlines it).  So ``auto`` makes every IPv4 table that fits a
DIR-k table (at most three array loads whatever the prefixes; a table whose longer
prefixes put two index values in one chunk, or that would need more than
:data:`DIR_MAX_BYTES`, does not fit), an IPv6 table with at most :data:`MAX_HASH_LENGTHS`
lengths a hash probe, and any other table the trie.  ``bench/results/filter_speed.md``
has the three side by side at 1 to 1,000,000 prefixes.
"""

from __future__ import annotations

import array
import ipaddress
import struct
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pyxdp.apps.filter import dataplane as dp
from pyxdp.apps.filter import dir4
from pyxdp.apps.filter.dir4 import Dir4
from pyxdp.apps.filter.prefixes import Prefixes
from pyxdp.apps.filter.rules import Action, Rule, RuleError, RuleSet
from pyxdp.maps import MapBase

MAX_HASH_LENGTHS = 4   # prefix lengths a hash lookup probes (dataplane: L<idx>_0..3)
DIR_MAX_BYTES = 256 << 20   # "auto" keeps a larger DIR-k table in the hash map or the trie
STRATEGIES = ("auto", "dir", "hash", "lpm")
PORT_GROUPS = 64       # distinct sport (and dport) range lists per rule set: bits of a u64
MAX_BURST_BITS = 1 << 62
MAX_SHIFT = 12         # 8 * NS is divisible by 2**12: byte costs stay exact


class TableFullError(RuleError):
    """A rule set needs more entries than a table was sized for (see :class:`Sizes`)."""


@dataclass(frozen=True)
class Sizes:
    """Table capacities (max_entries), fixed when a filter is attached: the shared maps
    are pinned and reused by every generation, so they cannot change later."""

    prefixes4: int = 1 << 21   # per IPv4 trie (source and destination each)
    prefixes6: int = 1 << 20
    rules: int = 65536
    lists: int = 4096
    macs: int = 4096
    patterns: int = 4096
    limits: int = 4096
    pairs: int = 65536
    sources: int = 65536       # rate-limit buckets tracked at once (LRU beyond)
    talkers: int = 16384       # dropped sources tracked (LRU beyond)
    talker_sample: int = 16    # record one drop in N in the top talkers (1: every drop;
    #                            a power of two)

    def __post_init__(self) -> None:
        n = self.talker_sample
        if not isinstance(n, int) or n < 1 or n & (n - 1):
            raise ValueError(f"talker_sample {n!r}: a power of two (1 records every drop)")

    def max_entries(self) -> dict[str, int]:
        return {"src4": self.prefixes4, "dst4": self.prefixes4, "src6": self.prefixes6,
                "dst6": self.prefixes6, "hsrc4": self.prefixes4, "hdst4": self.prefixes4,
                "hsrc6": self.prefixes6, "hdst6": self.prefixes6, "macs": self.macs,
                "lists": self.lists * dp.MAX_LIST,
                "rules": self.rules, "patterns": self.patterns, "limits": self.limits,
                "pairs": self.pairs, "stats": self.rules + dp.SLOT_FIRST,
                "buckets": self.sources, "talkers": self.talkers}


@dataclass
class Tables:
    """Everything one generation needs: configuration constants and map contents."""

    config: dict[str, int] = field(default_factory=dict)
    rules: dict[int, Any] = field(default_factory=dict)
    tries: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # raw key/value blobs
    # every prefix table's (prefix length, address) keys and index values, whichever
    # lookup holds it (the trie, its hash map, or a DIR-k table built from them)
    entries: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    macs: dict[int, int] = field(default_factory=dict)
    lists: dict[int, int] = field(default_factory=dict)
    generic: dict[int, int] = field(default_factory=dict)
    sports: dict[int, int] = field(default_factory=dict)
    dports: dict[int, int] = field(default_factory=dict)
    pairs: dict[tuple[int, int], int] = field(default_factory=dict)
    patterns: dict[int, Any] = field(default_factory=dict)
    limits: dict[int, Any] = field(default_factory=dict)
    hash_lengths: dict[str, list[int]] = field(default_factory=dict)   # probed, longest first
    dirs: dict[str, Dir4] = field(default_factory=dict)    # src4/dst4 held as DIR-k tables
    exprs: dict[int, str] = field(default_factory=dict)    # expr_<j> -> tcpdump expression

    def write(self, maps: Mapping[str, MapBase]) -> None:
        """Fill a fresh generation's maps (kernel :class:`~pyxdp.kernel.Map` or emulator
        maps with the declared codecs)."""
        for name, (keys, values) in self.tries.items():
            _write_raw(maps[name], keys, values)
        for name, d in self.dirs.items():
            m = "dir_" + name[0] + "4_"            # src4 -> dir_s4_
            maps[m + "l1"].write_array(d.l1)
            if d.chunks:
                maps[m + "bits"].write_array(d.bits)
                maps[m + "info"].write_array(d.info)
        for name, content in (("rules", self.rules), ("macs", self.macs),
                              ("lists", self.lists), ("generic", self.generic),
                              ("sports", self.sports), ("dports", self.dports),
                              ("patterns", self.patterns), ("limits", self.limits)):
            if content:
                maps[name].update_batch(list(content.items()))
        if self.pairs:
            maps["pairs"].update_batch([(dp.PairKey(rule=r, dlist=d), v)
                                        for (r, d), v in self.pairs.items()])


def _write_raw(m: MapBase, keys: bytes, values: bytes) -> None:
    if keys:
        m.update_batch_raw(keys, values)


# -- slots --------------------------------------------------------------------------------------
def assign_slots(rules: Iterable[Rule], old: Mapping[str, int], capacity: int) -> dict[str, int]:
    """Counter slots by rule name: a rule keeps its slot (and counters) across rule-set
    changes; new rules take the lowest slot unused by the old *and* the new set, so a
    deleted rule's counters stay readable until a later change needs its slot."""
    rules = list(rules)
    names = {r.name for r in rules}
    slots = {n: s for n, s in old.items() if n in names}
    taken = set(old.values())
    freed = sorted(taken - set(slots.values()))
    nxt = dp.SLOT_FIRST
    top = capacity + dp.SLOT_FIRST
    for r in rules:
        if r.name in slots:
            continue
        while nxt in taken:
            nxt += 1
        if nxt < top:
            slot = nxt
        elif freed:
            slot = freed.pop(0)
        else:
            raise TableFullError(f"more than {capacity} rules (raise Sizes.rules)", r.where,
                                 r.name)
        slots[r.name] = slot
        taken.add(slot)
    return slots


# -- indexes ------------------------------------------------------------------------------------
class _Lists:
    """Interned rule lists: index value per sorted tuple of rule numbers."""

    def __init__(self, capacity: int) -> None:
        self.ids: dict[tuple[int, ...], int] = {}
        self.entries: dict[int, int] = {}
        self.capacity = capacity
        self.longest = 0

    def value(self, rules: tuple[int, ...], what: Callable[[], str], rs: list[Rule]) -> int:
        """The index value for ``rules``; ``what()`` names the address for an error."""
        self.longest = max(self.longest, len(rules))
        if len(rules) == 1:
            return dp.SINGLE | rules[0]
        got = self.ids.get(rules)
        if got is not None:
            return got
        if len(rules) > dp.MAX_LIST:
            names = ", ".join(rs[i].name for i in rules)
            raise RuleError(f"{what()} is covered by {len(rules)} rules ({names}); at most"
                            f" {dp.MAX_LIST} rules may cover one address through one index",
                            rs[rules[0]].where, rs[rules[0]].name)
        lid = len(self.ids) + 1
        if lid >= self.capacity:
            raise TableFullError(f"more than {self.capacity - 1} distinct overlapping rule"
                                 " combinations (raise Sizes.lists)")
        self.ids[rules] = lid
        for j in range(dp.MAX_LIST):
            self.entries[lid * dp.MAX_LIST + j] = rules[j] if j < len(rules) else dp.NO_RULE
        return lid


def _cover(items: dict[tuple[int, int], set[int]], bits: int) -> dict[tuple[int, int],
                                                                      tuple[int, ...]]:
    """For each (address, prefixlen): every rule of it or of an enclosing prefix."""
    out: dict[tuple[int, int], tuple[int, ...]] = {}
    stack: list[tuple[int, frozenset[int]]] = []      # (last address, cumulative rules)
    for (addr, plen) in sorted(items):
        while stack and stack[-1][0] < addr:
            stack.pop()
        own = items[(addr, plen)]
        cum = stack[-1][1] | own if stack else frozenset(own)
        stack.append((addr | ((1 << (bits - plen)) - 1), cum))
        out[(addr, plen)] = tuple(sorted(cum))
    return out


def _packed_keys(p: Prefixes, v6: bool) -> tuple[bytes, int]:
    """LPM-trie (and hash) keys of one packed set: u32 prefix length, then the address in
    network order, built with array operations (no object per prefix)."""
    if not v6:
        n = len(p.l4)
        addrs = p.addrs4()
        addrs.byteswap()                        # host order -> network order
        keys = array.array("I", bytes(8 * n))
        keys[0::2] = array.array("I", array.array("B", p.l4))
        keys[1::2] = addrs
        return keys.tobytes(), n
    n = len(p.l6)
    out = bytearray(20 * n)
    plens = array.array("I", array.array("B", p.l6)).tobytes()
    for i in range(n):                          # IPv6 sets are small in practice
        out[20 * i:20 * i + 4] = plens[4 * i:4 * i + 4]
        out[20 * i + 4:20 * i + 20] = p.a6[16 * i:16 * i + 16]
    return bytes(out), n


def _entries(p: Any, v6: bool, rule: int) -> list[tuple[int, int, int]]:
    if isinstance(p, Prefixes):
        if v6:
            return [(int.from_bytes(p.a6[16 * i:16 * i + 16], "big"), plen, rule)
                    for i, plen in enumerate(p.l6)]
        return [(a, plen, rule) for a, plen in zip(p.addrs4(), p.l4, strict=True)]
    return [(int(n.network_address), n.prefixlen, rule) for n in p
            if n.version == (6 if v6 else 4)]


def _trie(owned: list[tuple[int, Any]], bits: int, lists: _Lists, rs: list[Rule],
          ) -> tuple[bytes, bytes, dict[int, tuple[int, ...]], int, set[int]]:
    """Key and value blobs of one trie, value → rules (for the src+dst pairs), the number
    of prefixes and the set of prefix lengths.  ``owned``: (rule, its prefixes)."""
    v6 = bits == 128
    if len(owned) == 1:                # the block-list case: one value, no overlap work
        only, p = owned[0]
        if not isinstance(p, Prefixes):
            p = Prefixes.from_networks(p)
        v = lists.value((only,), str, rs)
        keys, n = _packed_keys(p, v6)
        return (keys, (array.array("I", [v]) * n).tobytes(), {v: (only,)}, n,
                set(p.l6 if v6 else p.l4))
    nbytes = bits // 8
    pack = struct.Struct("<I").pack
    grouped: dict[tuple[int, int], set[int]] = {}
    for rule, p in owned:
        for a, plen, r in _entries(p, v6, rule):
            grouped.setdefault((a, plen), set()).add(r)
    cover = _cover(grouped, bits)
    net_type = ipaddress.IPv4Network if bits == 32 else ipaddress.IPv6Network
    vals = array.array("I")
    key_list: list[bytes] = []
    back: dict[int, tuple[int, ...]] = {}
    value = lists.value
    for (addr, plen), rules in cover.items():
        def what(a: int = addr, p: int = plen) -> str:
            return str(net_type((a, p)))

        v = value(rules, what, rs)
        back[v] = rules
        key_list.append(pack(plen) + addr.to_bytes(nbytes, "big"))
        vals.append(v)
    return (b"".join(key_list), vals.tobytes(), back, len(key_list),
            {plen for _, plen in cover})


# -- per-rule encodings -----------------------------------------------------------------------
def _pattern(p: Any) -> Any:
    """Two 8-byte windows ending where the pattern ends, as native (little-endian) u64s."""
    end = p.offset + len(p.value)
    win_v = bytes(16 - len(p.value)) + p.value
    win_m = bytes(16 - len(p.mask)) + p.mask
    base = {"l3": 0, "l4": 1, "payload": 2}[p.base]
    le = int.from_bytes
    return dp.PatternEntry(base=base, end=end, v0=le(win_v[:8], "little"),
                           v1=le(win_v[8:], "little"), m0=le(win_m[:8], "little"),
                           m1=le(win_m[8:], "little"))


def _limit(rule: Rule) -> Any:
    r = rule.rate
    assert r is not None
    ns = dp.NS
    pkt_cap = r.burst * ns if r.pps else 0
    if pkt_cap >= MAX_BURST_BITS:
        raise RuleError(f"rate.burst: at most {(MAX_BURST_BITS - 1) // ns} packets with pps",
                        rule.where, rule.name)
    # the byte bucket counts in units of 2**shift nano-bits: one second of nano-bits above
    # ~4.6 Gbit/s does not fit the 64-bit arithmetic.  8e9 = 2**12 * 5**9 keeps the
    # per-byte cost exact up to shift 12; the refill rounds down by < 2**shift bits/s.
    burst_bytes = max(r.burst * 1500, r.bps // 8)
    shift = 0
    while r.bps and (burst_bytes * 8 * ns) >> shift >= MAX_BURST_BITS and shift < MAX_SHIFT:
        shift += 1
    byte_cost = (8 * ns) >> shift
    bit_cap = burst_bytes * byte_cost if r.bps else 0
    if bit_cap >= MAX_BURST_BITS:
        most = (MAX_BURST_BITS - 1) // byte_cost
        raise RuleError(f"rate: a byte burst of {burst_bytes} bytes (max(burst * 1500,"
                        f" bps / 8)) is too large for the token bucket (at most {most}):"
                        " lower rate.burst or rate.bps", rule.where, rule.name)
    bps = r.bps >> shift
    m6 = (int(ipaddress.IPv6Network((0, r.prefix6)).netmask)).to_bytes(16, "big")
    return dp.Limit(pps=r.pps, bps=bps, pkt_cap=pkt_cap, bit_cap=bit_cap, byte_cost=byte_cost,
                    win_allow=r.pps + r.burst if r.pps else 0,
                    pkt_fill=-(-pkt_cap // r.pps) if r.pps else 0,
                    bit_fill=-(-bit_cap // bps) if bps else 0,
                    mask4=int(ipaddress.IPv4Network((0, r.prefix4)).netmask),
                    mask6_hi=int.from_bytes(m6[:8], "little"),
                    mask6_lo=int.from_bytes(m6[8:], "little"))


def _flags(rule: Rule) -> int:
    f = dp.F_DENY if rule.action is Action.DENY else 0
    ip = dp.F_IP
    for cond, bit, needs_ip in ((rule.proto is not None, dp.F_PROTO, True),
                                (bool(rule.sport), dp.F_SPORT, True),
                                (bool(rule.dport), dp.F_DPORT, True),
                                (rule.src_mac is not None, dp.F_MAC, False),
                                (rule.vlan is not None, dp.F_VLAN, False),
                                (rule.tcp_flags is not None, dp.F_TCPF, True),
                                (rule.length is not None, dp.F_LEN, False),
                                (rule.pattern is not None, dp.F_PAT, False),
                                (rule.expr is not None, dp.F_EXPR, False),
                                (rule.rate is not None, dp.F_RATE, True),
                                (bool(rule.src), dp.F_SRC, True),
                                (bool(rule.dst), dp.F_DST, True)):
        if cond:
            f |= bit | (ip if needs_ip else 0)
    for value, bit, vbit, needs_ip in ((rule.fragment, dp.F_FRAG, dp.F_FRAG_V, True),
                                       (rule.ip_options, dp.F_OPTS, dp.F_OPTS_V, True),
                                       (rule.malformed, dp.F_MALF, dp.F_MALF_V, False)):
        if value is not None:
            f |= bit | (vbit if value else 0) | (ip if needs_ip else 0)
    return f


# -- the whole set ----------------------------------------------------------------------------
def compile_tables(rs: RuleSet, slots: Mapping[str, int], sizes: Sizes,
                   strategy: str = "auto") -> Tables:
    """Map contents and feature flags for ``rs`` (validated here as a whole).

    Prefix lookups (``strategy``): ``"auto"`` puts an IPv4 table in a DIR-k table
    (:mod:`.dir4`: at most three array loads, whatever the prefixes) when it fits one and
    needs at most :data:`DIR_MAX_BYTES`; any other table with at most
    :data:`MAX_HASH_LENGTHS` distinct prefix lengths in a hash map probed once per length,
    longest first, and the rest in the LPM trie, whose walk grows with the table.
    ``"dir"`` insists on DIR-k tables for IPv4 (IPv6 as ``auto``), ``"hash"`` or
    ``"lpm"`` force one for every table."""
    if strategy not in STRATEGIES:
        raise ValueError(f"lookup strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    rs.validate()
    rules = rs.rules
    if len(rules) > sizes.rules:
        raise TableFullError(f"{len(rules)} rules, the filter holds {sizes.rules}"
                             " (raise Sizes.rules)")
    t = Tables()
    lists = _Lists(sizes.lists)
    trie_entries: dict[str, list[tuple[int, Any]]] = {
        "src4": [], "src6": [], "dst4": [], "dst6": []}
    mac_rules: dict[int, set[int]] = {}
    groups: dict[str, dict[tuple[Any, ...], int]] = {"sport": {}, "dport": {}}
    generic: list[int] = []
    for i, r in enumerate(rules):
        e = dp.RuleEntry(flags=_flags(r), slot=slots[r.name], proto=r.proto or 0,
                         vlan=r.vlan or 0)
        if r.tcp_flags is not None:
            e.tcp_mask, e.tcp_value = r.tcp_flags
        if r.length is not None:
            e.len_lo, e.len_hi = r.length
        if r.src_mac is not None:
            e.mac = int.from_bytes(r.src_mac, "big")
        for what in ("sport", "dport"):
            ranges = getattr(r, what)
            if ranges:
                g = groups[what].setdefault(ranges, len(groups[what]))
                if g >= PORT_GROUPS:
                    raise RuleError(f"more than {PORT_GROUPS} distinct {what} range lists in"
                                    " the rule set", r.where, r.name)
                setattr(e, what[0] + "group", g)
        if r.expr is not None:
            known = {x: j for j, x in t.exprs.items()}
            if r.expr not in known:
                if len(t.exprs) >= dp.MAX_EXPR:
                    raise RuleError(f"more than {dp.MAX_EXPR} distinct expr values in the"
                                    " rule set", r.where, r.name)
                known[r.expr] = len(t.exprs)
                t.exprs[known[r.expr]] = r.expr
            e.expr = known[r.expr]
        if r.pattern is not None:
            e.pattern = len(t.patterns)
            t.patterns[e.pattern] = _pattern(r.pattern)
        if r.rate is not None:
            e.limit = len(t.limits)
            t.limits[e.limit] = _limit(r)
        t.rules[i] = e
        for direction in ("src", "dst"):
            nets = getattr(r, direction)
            if not nets:
                continue
            if not isinstance(nets, Prefixes):
                nets = Prefixes.from_networks(nets)
            for version in nets.versions():
                trie_entries[f"{direction}{version}"].append((i, nets))
        if not r.src and not r.dst:
            if r.src_mac is not None:
                mac_rules.setdefault(e.mac, set()).add(i)
            else:
                generic.append(i)
    if len(generic) > dp.MAX_GENERIC:
        extra = rules[generic[dp.MAX_GENERIC]]
        raise RuleError(f"more than {dp.MAX_GENERIC} rules without src, dst or src_mac"
                        " (give them prefixes, or merge them)", extra.where, extra.name)
    _port_bitmaps(t, rules, groups)
    t.generic = dict(enumerate(generic))
    back_dst: dict[int, tuple[int, ...]] = {}
    for name, entries in trie_entries.items():
        if not entries:
            continue
        bits = 32 if name.endswith("4") else 128
        keys, values, back, n, plens = _trie(entries, bits, lists, rules)
        cap = sizes.prefixes4 if bits == 32 else sizes.prefixes6
        if n > cap:
            raise TableFullError(f"{n} {name} prefixes, the {name} trie holds {cap}"
                                 f" (raise Sizes.prefixes{name[-1]})")
        lengths = sorted(plens, reverse=True)
        t.entries[name] = (keys, values)
        d = _dir(keys, values, strategy) if bits == 32 and strategy in ("auto", "dir") else None
        if strategy == "dir" and bits == 32 and d is None:
            raise RuleError(f"{name}: not representable as a DIR-k table (two prefixes"
                            " longer than its first level inside one chunk reach different"
                            " rules); use hash or lpm")
        if d is not None:
            t.dirs[name] = d
        elif (strategy in ("auto", "dir") and len(lengths) <= MAX_HASH_LENGTHS) or (
                strategy == "hash"):
            if len(lengths) > MAX_HASH_LENGTHS:
                raise RuleError(f"{name}: {len(lengths)} prefix lengths, a hash lookup probes"
                                f" at most {MAX_HASH_LENGTHS} (use the LPM trie)")
            t.tries["h" + name] = (keys, values)
            t.hash_lengths[name] = lengths
        else:
            t.tries[name] = (keys, values)
        t.counts[name] = n
        if name.startswith("dst"):
            back_dst.update(back)
    for mac, owners in mac_rules.items():
        t.macs[mac] = lists.value(tuple(sorted(owners)), partial("MAC {:012x}".format, mac),
                                  rules)
    if len(t.macs) > sizes.macs:
        raise TableFullError(f"{len(t.macs)} MACs, the table holds {sizes.macs}")
    for value, dst_rules in back_dst.items():
        for ri in dst_rules:
            if rules[ri].src:
                t.pairs[(ri, value)] = 1
    if len(t.pairs) > sizes.pairs:
        raise TableFullError(f"{len(t.pairs)} (rule, destination list) pairs, the table"
                             f" holds {sizes.pairs} (raise Sizes.pairs)")
    for what, n, cap in (("patterns", len(t.patterns), sizes.patterns),
                         ("rate limits", len(t.limits), sizes.limits)):
        if n > cap:
            raise TableFullError(f"{n} {what}, the table holds {cap}")
    t.lists = lists.entries
    t.config = _config(rs, t, lists, sizes)
    return t


def _dir(keys: bytes, values: bytes, strategy: str) -> Dir4 | None:
    """The DIR-k table of one IPv4 table's trie keys and values, or None when it cannot
    hold them (or, for ``auto``, would take more than :data:`DIR_MAX_BYTES`)."""
    k = array.array("I", keys)
    if sys.byteorder != "little":
        k.byteswap()
    addrs = k[1::2]
    if sys.byteorder == "little":
        addrs.byteswap()                       # network order -> host order
    plens = bytes(array.array("B", k[0::2]))
    vals = array.array("I", values)
    width, need = dir4.choose_k(addrs, plens)
    if strategy == "auto" and need > DIR_MAX_BYTES:
        return None
    one = vals[0] if vals and vals.count(vals[0]) == len(vals) else None
    return dir4.build(addrs, plens, one if one is not None else vals, width)


def _port_bitmaps(t: Tables, rules: list[Rule], groups: dict[str, dict[Any, int]]) -> None:
    for what, out in (("sport", t.sports), ("dport", t.dports)):
        for ranges, g in groups[what].items():
            bit = 1 << g
            for pr in ranges:
                for port in range(pr.lo, pr.hi + 1):
                    out[port] = out.get(port, 0) | bit


def _config(rs: RuleSet, t: Tables, lists: _Lists, sizes: Sizes) -> dict[str, int]:
    rules = rs.rules

    def any_(pred: Any) -> int:
        return int(any(pred(r) for r in rules))

    return {
        "DEFAULT_DENY": int(rs.default is Action.DENY),
        "DRY_RUN": int(rs.dry_run),
        "USE_SRC4": int("src4" in t.counts), "USE_SRC6": int("src6" in t.counts),
        "USE_DST4": int("dst4" in t.counts), "USE_DST6": int("dst6" in t.counts),
        **_hash_config(t),
        **_dir_config(t),
        "USE_MACS": int(bool(t.macs)),
        "LIST_LEN": lists.longest,
        "N_GENERIC": len(t.generic),
        "USE_PORTS": any_(lambda r: r.sport or r.dport),
        "USE_TCPF": any_(lambda r: r.tcp_flags is not None),
        "USE_VLAN": any_(lambda r: r.vlan is not None),
        "USE_MAC": any_(lambda r: r.src_mac is not None),
        "USE_FLAGS": any_(lambda r: (r.fragment, r.ip_options, r.malformed) != (None,) * 3),
        "USE_LEN": any_(lambda r: r.length is not None),
        "USE_PATTERN": int(bool(t.patterns)),
        "USE_EXPR": int(bool(t.exprs)),
        "USE_RATE": int(bool(t.limits)),
        "TALKER_SAMPLE": max(1, sizes.talker_sample),
        "FAST4": int(_fast4(rules, t, lists)),
    }


def _fast4(rules: list[Rule], t: Tables, lists: _Lists) -> bool:
    """Whether IPv4 packets can take the data plane's block-list fast path: every rule
    matches on source prefixes alone (no other condition, no rate), no rule is reached
    another way (destination, MAC, generic), and every address reaches one rule at most
    (index values are all SINGLE)."""
    if "src4" not in t.counts or lists.longest > 1 or t.macs or t.generic:
        return False
    own = dp.F_SRC | dp.F_IP | dp.F_DENY
    return all((e.flags & ~own) == 0 for e in t.rules.values())


def _dir_config(t: Tables) -> dict[str, int]:
    """DIR_<idx>, DSH<idx> and DWS<idx> of every DIR-k table."""
    out: dict[str, int] = {}
    for name, d in t.dirs.items():
        idx = name[0].upper() + name[-1]          # src4 -> S4
        out[f"DIR_{idx}"] = 1
        out[f"DSH{idx}"] = 32 - d.k
        out[f"DWS{idx}"] = (32 - d.k) - 6
    return out


def _hash_config(t: Tables) -> dict[str, int]:
    """HASH_<idx>, L<idx>_<j> and the masks of every hash-probed table."""
    out: dict[str, int] = {}
    for name, lengths in t.hash_lengths.items():
        idx = name[0].upper() + name[-1]          # src4 -> S4
        bits = 32 if name.endswith("4") else 128
        out[f"HASH_{idx}"] = len(lengths)
        for j, plen in enumerate(lengths):
            mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
            out[f"L{idx}_{j}"] = plen
            if bits == 32:
                out[f"M{idx}_{j}"] = mask
            else:
                out[f"MH{idx}_{j}"] = mask >> 64
                out[f"ML{idx}_{j}"] = mask & ((1 << 64) - 1)
    return out


__all__ = ["DIR_MAX_BYTES", "MAX_HASH_LENGTHS", "PORT_GROUPS", "STRATEGIES", "Sizes",
           "TableFullError", "Tables", "assign_slots", "compile_tables"]

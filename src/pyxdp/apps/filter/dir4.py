"""A DIR-k table with bitmap chunks for one IPv4 prefix table (pure Python, no kernel).

The per-packet cost of a hash probe (a jhash and a bucket walk, once per prefix length in
use) and of the LPM trie's walk (which grows with the table) both sit above two or three
array loads, which the verifier inlines.  This layout answers a longest-prefix match with
at most three array loads, whatever the number or the lengths of the prefixes:

* ``dir4_l1``: one 32-bit entry per ``/k`` (``k`` in :data:`KS`, chosen per table), two
  entries to a 64-bit array value: ``0`` (no prefix covers it), the index value of the
  longest prefix of length ``<= k`` covering it, or ``CHUNK | c`` when longer prefixes
  start inside it;
* ``dir4_bits``: chunk ``c``'s bitmap, one bit per address of the ``/k``
  (``2**(32-k)`` bits, :func:`words` 64-bit words): set where a prefix longer than ``k``
  covers the address;
* ``dir4_info``: chunk ``c``'s two index values: the one of the longer prefixes (``hi``
  32 bits) and the one of the ``/k`` itself (``lo``: its cover by prefixes ``<= k``, or 0).

So a chunk holds *one* value for all its longer prefixes: a table in which two longer
prefixes inside one ``/k`` have different index values (different rules, or a host and
its enclosing ``/28`` in different rules) is not representable and :func:`build` returns
``None`` (the control plane then keeps the hash probe or the trie).  A block list — one
rule, one value for every prefix — always fits.

The index values are those the trie would hold (a prefix's own and its enclosing
prefixes' rules, see ``tables._cover``), so the longest match here is the trie's longest
match: the differential tests compare all three strategies with a plain reference.

``k`` is the one of :data:`KS` that needs the least memory for the table: a /32 block list
of a million random addresses takes ``k = 24`` (64 MiB of first level, 40 bytes a chunk),
a single address ``k = 16`` (256 KiB of first level and one 8 KiB chunk).
"""

from __future__ import annotations

import array
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CHUNK = 0x40000000           # an l1 entry that names a chunk (index values never set it)
KS = (16, 20, 24)            # first-level widths the data plane is built for


def words(k: int) -> int:
    """64-bit words of one chunk's bitmap: 2**(32-k) bits."""
    return 1 << (32 - k - 6)


@dataclass
class Dir4:
    """The contents of the three maps, ready for a batch write (native byte order)."""

    k: int
    l1: memoryview    # bytes of u64s: entry 2i in the low 32 bits, 2i+1 in the high
    bits: memoryview  # bytes of u64s: chunk c's words at [c * words(k), (c + 1) * words(k))
    info: memoryview  # bytes of u64s: hi << 32 | lo per chunk
    chunks: int

    def kernel_bytes(self) -> int:
        """The three arrays' value bytes (what the kernel allocates, give or take pages)."""
        return len(self.l1) + max(8, len(self.bits)) + max(8, len(self.info))


def _np(addrs: Sequence[int], plens: bytes) -> tuple[Any, Any]:
    import numpy as np

    a = np.frombuffer(addrs, dtype=np.uint32) if isinstance(addrs, array.array) and (
        addrs.typecode == "I") else np.asarray(addrs, dtype=np.uint32)
    return a, np.frombuffer(bytes(plens), dtype=np.uint8)


def _distinct(keys: Any) -> int:
    """Distinct values of a key array (a sorted one in one pass)."""
    import numpy as np

    if keys.size == 0:
        return 0
    if bool(np.all(keys[1:] >= keys[:-1])):
        return 1 + int(np.count_nonzero(keys[1:] != keys[:-1]))
    return int(np.unique(keys).size)


def memories(addrs: Sequence[int], plens: bytes) -> dict[int, int]:
    """Value bytes :func:`build` would need, per first-level width of :data:`KS` (the
    chunks of a width are the distinct ``/k`` of the prefixes longer than ``k``)."""
    a, p = _np(addrs, plens)
    return {k: 4 * (1 << k) + _distinct(a[p > k] >> (32 - k)) * (8 * words(k) + 8)
            for k in KS}


def memory(addrs: Sequence[int], plens: bytes, k: int) -> int:
    """Value bytes :func:`build` would need with first-level width ``k``."""
    return memories(addrs, plens)[k]


def choose_k(addrs: Sequence[int], plens: bytes) -> tuple[int, int]:
    """The first-level width of :data:`KS` with the least memory (the widest on a tie),
    and that memory in bytes."""
    m = memories(addrs, plens)
    k = min(reversed(KS), key=m.__getitem__)
    return k, m[k]


def build(addrs: Sequence[int], plens: bytes, values: Sequence[int] | int,
          k: int | None = None) -> Dir4 | None:
    """The DIR-k table of prefixes ``addrs[i]/plens[i]`` (host-order network addresses,
    host bits clear, no duplicates) with index values ``values[i]`` (or one value for
    all); ``None`` when two prefixes longer than ``k`` inside one ``/k`` have different
    values.  Array operations throughout (numpy): no Python object per prefix."""
    import numpy as np

    a, p = _np(addrs, plens)
    n = a.size
    if p.size != n or (not isinstance(values, int) and len(values) != n):
        raise ValueError("addrs, plens and values differ in length")
    if k is None:
        k = choose_k(addrs, plens)[0]
    if k not in KS:
        raise ValueError(f"first-level width {k}: one of {KS}")
    shift = 32 - k
    v = (np.full(n, values, dtype=np.uint32) if isinstance(values, int)
         else np.asarray(values, dtype=np.uint32))
    l1 = np.zeros(1 << k, dtype=np.uint32)
    # prefixes up to /k: shortest first, so a longer one overwrites the ranges it refines
    # (prefixes of one length are disjoint)
    for plen in sorted(int(x) for x in np.unique(p[p <= k])):
        sel = p == plen
        starts, vs = (a[sel] >> shift).astype(np.int64), v[sel]
        span = 1 << (k - plen)
        if span == 1:
            l1[starts] = vs
        elif span >= 4096 or starts.size * span > (1 << 24):
            for st, val in zip(starts.tolist(), vs.tolist(), strict=True):
                l1[st:st + span] = val
        else:
            l1[(starts[:, None] + np.arange(span)).ravel()] = np.repeat(vs, span)
    # longer prefixes: one chunk per /k they start in, a bit per address they cover
    sel = p > k
    la, lp, lv = a[sel], p[sel], v[sel]
    keys = la >> shift
    uniq, inverse = np.unique(keys, return_inverse=True)
    chunks = int(uniq.size)
    hi = np.zeros(chunks, dtype=np.uint32)
    hi[inverse] = lv
    if not bool(np.all(hi[inverse] == lv)):
        return None
    raw = np.zeros((chunks << shift) >> 3, dtype=np.uint8)
    bit = (inverse.astype(np.int64) << shift) | (la & ((1 << shift) - 1)).astype(np.int64)
    count = np.left_shift(1, (32 - lp).astype(np.int64))
    small = count < 8                       # up to a byte: one masked byte each
    if bool(small.any()):
        b = bit[small]
        masks = (((1 << count[small]) - 1) << (b & 7)).astype(np.uint8)
        order = np.argsort(b >> 3, kind="stable")
        byte, masks = (b >> 3)[order], masks[order]
        first = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
        raw[byte[first]] |= np.bitwise_or.reduceat(masks, first)
    for c in sorted(int(x) for x in np.unique(count[~small])):
        b = bit[count == c] >> 3              # whole bytes: an aligned run of c bits
        raw[(b[:, None] + np.arange(c >> 3)).ravel()] = 0xFF
    info = (hi.astype(np.uint64) << np.uint64(32)) | l1[uniq].astype(np.uint64)
    l1[uniq] = CHUNK | np.arange(chunks, dtype=np.uint32)
    if sys.byteorder != "little":
        raise NotImplementedError("DIR-k tables are laid out for little-endian hosts")
    # the arrays' own buffers, not copies (the first level alone is 64 MiB at k = 24)
    return Dir4(k=k, l1=l1.data.cast("B"), bits=raw.data.cast("B"),
                info=info.data.cast("B"), chunks=chunks)


def lookup(t: Dir4, addr: int) -> int:
    """The index value the data plane finds for ``addr`` (a reference for tests)."""
    shift = 32 - t.k
    s = addr >> shift
    l1, bits, info_ = (memoryview(x).cast("B").cast("Q") for x in (t.l1, t.bits, t.info))
    e = (l1[s >> 1] >> (32 * (s & 1))) & 0xFFFFFFFF
    if not e & CHUNK:
        return e
    c = e & (CHUNK - 1)
    lo = addr & ((1 << shift) - 1)
    word = bits[c * words(t.k) + (lo >> 6)]
    info = info_[c]
    return info >> 32 if word >> (lo & 63) & 1 else info & 0xFFFFFFFF


__all__ = ["CHUNK", "KS", "Dir4", "build", "choose_k", "lookup", "memories", "memory",
           "words"]

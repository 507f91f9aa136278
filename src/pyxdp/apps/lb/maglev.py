"""Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016), pure Python.

A ring (lookup table) of ``m`` entries, ``m`` prime, each naming one real.  Every real has
a permutation of the entries (``offset + j * skip mod m``, both from a hash of the real's
*identity*, so the ring depends on which reals exist, not on the order they were added);
the reals take turns claiming the next free entry of their permutation until the ring is
full.  Weights: in every round a real's credit grows by its weight and it claims one entry
per ``max weight`` of credit, so entries are shared in proportion to the weights (within
one entry per real).  A change of the set moves about the changed real's share of entries
and few others: removing one of ``n`` equal reals moves ~``1/n`` of the flows.

A weight of 0 is a real that takes no new flows (drained): it gets no entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

NONE = 0xFFFFFFFF          # a ring entry when no real can take flows
DEFAULT_SIZE = 16381       # Cilium's default; Katran uses 65537
MAX_SIZE = 1 << 20


class MaglevError(ValueError):
    """A ring size or weight that cannot be used."""


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def check_size(m: int) -> int:
    if not isinstance(m, int) or isinstance(m, bool) or not 3 <= m <= MAX_SIZE or (
            not is_prime(m)):
        raise MaglevError(f"ring size {m!r}: a prime between 3 and {MAX_SIZE}"
                          f" (e.g. {DEFAULT_SIZE} or 65537)")
    return m


def _perm(identity: str, m: int) -> tuple[int, int]:
    d = hashlib.blake2b(identity.encode(), digest_size=16, person=b"pyxdp-maglev").digest()
    offset = int.from_bytes(d[:8], "little") % m
    skip = int.from_bytes(d[8:], "little") % (m - 1) + 1
    return offset, skip


def build(reals: Mapping[str, tuple[int, int]], m: int = DEFAULT_SIZE) -> list[int]:
    """The ring for ``reals``: identity -> (slot, weight).  Entry values are slots (the
    data plane's index of the real); :data:`NONE` everywhere when no weight is positive."""
    check_size(m)
    live: list[tuple[str, int, int]] = []
    for ident, (slot, weight) in sorted(reals.items()):
        if not isinstance(weight, int) or weight < 0:
            raise MaglevError(f"real {ident}: weight {weight!r} is not a whole number >= 0")
        if weight:
            live.append((ident, slot, weight))
    ring = [NONE] * m
    if not live:
        return ring
    wmax = max(w for _, _, w in live)
    perms = [_perm(ident, m) for ident, _, _ in live]
    nxt = [0] * len(live)
    credit = [0] * len(live)
    filled = 0
    while True:
        for i, (_, slot, w) in enumerate(live):
            credit[i] += w
            while credit[i] >= wmax:
                credit[i] -= wmax
                off, skip = perms[i]
                j = nxt[i]
                e = (off + j * skip) % m
                while ring[e] != NONE:
                    j += 1
                    e = (off + j * skip) % m
                nxt[i] = j + 1
                ring[e] = slot
                filled += 1
                if filled == m:
                    return ring


def shares(ring: Sequence[int]) -> dict[int, float]:
    """The fraction of entries each slot holds."""
    out: dict[int, float] = {}
    for s in ring:
        out[s] = out.get(s, 0.0) + 1
    return {s: n / len(ring) for s, n in out.items()}


def moved(old: Sequence[int], new: Sequence[int]) -> float:
    """The fraction of entries whose real changed."""
    return sum(1 for a, b in zip(old, new, strict=True) if a != b) / len(old)


__all__ = ["DEFAULT_SIZE", "MAX_SIZE", "NONE", "MaglevError", "build", "check_size",
           "is_prime", "moved", "shares"]

"""The DIR-k layout (apps/filter/dir4.py) against a plain longest-prefix reference, for
every first-level width, random prefix sets and values (pure: no kernel)."""

from __future__ import annotations

import array
import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxdp.apps.filter import dir4

BASE = int(ipaddress.IPv4Address("198.18.0.0"))


@st.composite
def tables(draw: Any) -> tuple[list[tuple[int, int]], dict[tuple[int, int], int], int]:
    """Unique prefixes inside 198.18.0.0/15 (and a few wide ones around it), values such
    that all prefixes longer than k inside one /k share one (what a DIR-k table holds)."""
    k = draw(st.sampled_from(dir4.KS))
    lengths = draw(st.lists(st.integers(8, 32), min_size=1, max_size=8, unique=True))
    pfx = set()
    for _ in range(draw(st.integers(1, 60))):
        plen = draw(st.sampled_from(lengths))
        host = BASE | draw(st.integers(0, (1 << 17) - 1))
        pfx.add((host & ~((1 << (32 - plen)) - 1) & 0xFFFFFFFF, plen))
    values = {}
    for a, plen in pfx:
        # <= k: any value; > k: one value per /k (a function of the /k)
        values[(a, plen)] = (draw(st.integers(1, 9)) if plen <= k
                             else 100 + ((a >> (32 - k)) % 7))
    return sorted(pfx), values, k


def reference(pfx: list[tuple[int, int]], values: dict[tuple[int, int], int],
              addr: int) -> int:
    best, got = -1, 0
    for a, plen in pfx:
        if plen > best and (addr ^ a) >> (32 - plen) == 0:
            best, got = plen, values[(a, plen)]
    return got


def probes(pfx: list[tuple[int, int]]) -> list[int]:
    out = [BASE - 1, BASE + (1 << 17), 0, 0xFFFFFFFF]
    for a, plen in pfx:
        last = a | ((1 << (32 - plen)) - 1)
        out += [a, last, (a + last) // 2, max(0, a - 1), min(0xFFFFFFFF, last + 1)]
    return out


@settings(max_examples=150, deadline=None)
@given(tables())
def test_lookup_matches_the_longest_prefix_reference(t: Any) -> None:
    pfx, values, k = t
    addrs = array.array("I", [a for a, _ in pfx])
    plens = bytes(p for _, p in pfx)
    d = dir4.build(addrs, plens, [values[x] for x in pfx], k)
    assert d is not None and d.k == k
    for addr in probes(pfx):
        assert dir4.lookup(d, addr) == reference(pfx, values, addr), (
            str(ipaddress.IPv4Address(addr)), k)


@settings(max_examples=60, deadline=None)
@given(tables())
def test_memory_is_what_build_allocates_and_choose_k_takes_the_least(t: Any) -> None:
    pfx, _values, _ = t
    addrs = array.array("I", [a for a, _ in pfx])
    plens = bytes(p for _, p in pfx)
    mem = dir4.memories(addrs, plens)
    for k in dir4.KS:
        d = dir4.build(addrs, plens, 1, k)
        assert d is not None
        assert 4 * (1 << k) + d.chunks * (8 * dir4.words(k) + 8) == mem[k]
        assert len(d.l1) == 8 << (k - 1) and len(d.bits) == 8 * d.chunks * dir4.words(k)
    k, m = dir4.choose_k(addrs, plens)
    assert m == min(mem.values()) and mem[k] == m


def test_two_values_in_one_chunk_are_refused() -> None:
    a = array.array("I", [BASE | 0x0101, BASE | 0x0102])
    assert dir4.build(a, bytes([32, 32]), [5, 6], 24) is None
    assert dir4.build(a, bytes([32, 32]), [5, 5], 24) is not None
    # in different /24s they fit
    b = array.array("I", [BASE | 0x0101, BASE | 0x0201])
    d = dir4.build(b, bytes([32, 32]), [5, 6], 24)
    assert d is not None and dir4.lookup(d, BASE | 0x0201) == 6


def test_bad_arguments_are_named() -> None:
    a = array.array("I", [BASE])
    with pytest.raises(ValueError, match="differ in length"):
        dir4.build(a, bytes([32, 32]), 1)
    with pytest.raises(ValueError, match="first-level width 12"):
        dir4.build(a, bytes([32]), 1, 12)


def test_a_million_hosts_take_k24_and_about_100_bytes_each() -> None:
    import random

    rng = random.Random(5)
    a = array.array("I", sorted({rng.getrandbits(32) for _ in range(1_000_000)}))
    k, m = dir4.choose_k(a, bytes([32]) * len(a))
    assert k == 24 and m < 110 * len(a)
    d = dir4.build(a, bytes([32]) * len(a), 7)
    assert d is not None and d.k == 24
    for x in a[::9973]:
        assert dir4.lookup(d, x) == 7
    listed = set(a)
    absent = [x ^ 1 for x in a[:1000] if x ^ 1 not in listed]
    assert absent and all(dir4.lookup(d, x) == 0 for x in absent)

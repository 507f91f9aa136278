"""``a if c else b`` runs only the chosen arm (regression: both arms used to be evaluated
and a select taken, so the untaken arm's helper calls, map updates and packet writes
happened anyway — found by the tunnel data plane, whose decap-then-forward ran the
forwarding path for every decapsulated packet).  On both backends."""

from __future__ import annotations

from typing import Any

import pytest

from pyxdp.compiler import compile_module

SRC = '''
from pyxdp.compiler.lang import *

hits = ArrayMap[u32, u64](max_entries=4)

def bump(slot):
    v = hits.lookup(slot)
    if v:
        v.value += 1
    return slot + 10

@subprog
def mark(ctx, slot):
    v = hits.lookup(slot)
    if v:
        v.value += 100
    return 3

@xdp
def prog(ctx):
    n = ctx.packet_len()
    a = bump(0) if n == 60 else bump(1)
    b = mark(ctx, 2) if n == 61 else 4
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if eth:
        eth.proto = 0x1111 if n == 62 else eth.proto
    return XDP_PASS if a + b > 0 else XDP_DROP
'''


@pytest.mark.parametrize("size,want", [
    (60, [1, 0, 0]), (61, [0, 1, 100]), (62, [0, 1, 0]), (70, [0, 1, 0])])
def test_only_the_chosen_arm_runs(backend: Any, size: int, want: list[int]) -> None:
    obj = compile_module(SRC)
    with backend.load(obj.spec) as coll:
        frame = b"\x02" * 12 + b"\x22\x22" + b"x" * (size - 14)
        r = coll.programs["prog"].run_packet(frame)
        hits = obj.typed_maps(coll)["hits"]
        assert [hits[i] for i in range(3)] == want
        assert r.packet[12:14] == (b"\x11\x11" if size == 62 else b"\x22\x22")

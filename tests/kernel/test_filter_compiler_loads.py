"""The kernel verifier accepts the filter's load shape: a packet load at a variable offset
made of two unbounded parts (``base + i`` in a loop), bounded by the compiler."""

from __future__ import annotations

import pytest

from pyxdp.compiler import compile_module

pytestmark = pytest.mark.kernel

SUM_OFFSET = '''from pyxdp.compiler.lang import *

out = ArrayMap[u32, u64](max_entries=4)
table = ArrayMap[u32, u32](max_entries=1)


@xdp
def prog(ctx):
    t = table.lookup(0)
    if not t:
        return XDP_PASS
    base: u32 = t.value
    for i in range(4):
        b = ctx.load(u8, base + i)
        if not b:
            return XDP_DROP
        out.update(i, b.value)
    return XDP_PASS
'''


def test_variable_sum_offset_load_passes_the_verifier() -> None:
    with compile_module(SUM_OFFSET).load() as coll:
        prog = coll.programs["prog"]
        coll.maps["table"][0] = (14).to_bytes(4, "little")
        assert prog.test_run(bytes(range(64))).retval == 2
        coll.maps["table"][0] = (62).to_bytes(4, "little")
        assert prog.test_run(bytes(range(64))).retval == 1

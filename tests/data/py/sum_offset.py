"""A packet load at a variable offset made of two unbounded parts (``base + i``); the
compiler must bound it so the verifier accepts it (tests/*/test_*compiler_loads.py)."""

from pyxdp.compiler.lang import XDP_DROP, XDP_PASS, ArrayMap, u8, u32, u64, xdp

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

"""Bounded loops over variable counts (issue 11): ``for i in range(min(n, K))`` and
``range(lo, n, step)`` with a narrow ``n``, in the kernel (the verifier accepts them) and
the emulator, with Python's meaning (a negative or zero stop runs no iteration)."""

from __future__ import annotations

import pytest

from pyxdp.backend import Backend
from pyxdp.compiler import compile_module
from pyxdp.errors import CompileError

SRC = """
from pyxdp.compiler.lang import *
out = ArrayMap[u32, u64](max_entries=4)

@xdp
def prog(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        return XDP_PASS
    n = eth.dst[5]                       # a count from the packet (u8)
    total: u64 = 0
    for i in range(min(n, 16)):
        total += i
    out.update(0, total)
    s: u64 = 0
    for j in range(1, n, 3):             # u8: at most 255 iterations, known to the compiler
        s += j
    out.update(1, s)
    k: u64 = 0
    for m in range(min(i64(n) - 10, 8)):   # negative stop: no iteration, as in Python
        k += 1
    out.update(2, k)
    x: u64 = 0
    for q in range(min(n, 6)):           # a variable index bounded by the loop
        x = x * 256 + eth.src[q]
    out.update(3, x)
    return XDP_PASS
"""


@pytest.mark.parametrize("n", [0, 1, 5, 12, 40, 255])
def test_variable_loops_mean_what_python_means(backend: Backend, n: int) -> None:
    obj = compile_module(SRC)
    src_mac = bytes([1, 2, 3, 4, 5, 6])
    pkt = bytes([0, 0, 0, 0, 0, n]) + src_mac + bytes(52)
    with backend.load(obj.spec) as coll:
        assert coll.programs["prog"].run_packet(pkt).verdict.name == "PASS"
        out = obj.typed_maps(coll)["out"]
        got = [out[i] for i in range(4)]
    x = 0
    for q in range(min(n, 6)):
        x = x * 256 + src_mac[q]
    assert got == [sum(range(min(n, 16))), sum(range(1, n, 3)),
                   len(range(min(n - 10, 8))), x]


@pytest.mark.parametrize("loop,message", [
    ("for i in range(ctx.ingress_ifindex):", "bound it: range\\(min\\("),
    ("for i in range(min(ctx.ingress_ifindex, 5000)):", "at most 4096"),
    ("for i in range(ctx.rx_queue_index, 8):", "constant start"),
    ("for i in range(0, min(ctx.ingress_ifindex, 8), u32(ctx.rx_queue_index)):",
     "constant start and step"),
])
def test_unbounded_variable_loops_are_refused(loop: str, message: str) -> None:
    src = ("from pyxdp.compiler.lang import *\n@xdp\ndef prog(ctx):\n"
           f"    {loop}\n        pass\n    return XDP_PASS\n")
    with pytest.raises(CompileError, match=message):
        compile_module(src)


def test_wider_than_64_bit_ir_is_a_compile_error_not_an_abort() -> None:
    """The BPF backend ends the process on i65+ arithmetic; the compiler checks first."""
    from pyxdp.compiler.emit import _check_widths
    ir_text = ("define i32 @f(i65 %a) {\n  %w = mul nuw i65 %a, %a, !dbg !7\n"
               "  ret i32 0\n}\n!7 = !DILocation(line: 12, column: 5, scope: !3)\n")
    with pytest.raises(CompileError, match="wider than 64 bits") as info:
        _check_widths(ir_text, "prog.py")
    assert "prog.py:12" in str(info.value)
    _check_widths(ir_text.replace("i65", "i64"), "prog.py")     # 64 bits: fine

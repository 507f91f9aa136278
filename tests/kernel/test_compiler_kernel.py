"""Compiled programs in the real kernel: verifier errors map back to the Python line, and
integer semantics match the emulator's."""

from __future__ import annotations

import textwrap

import pytest

from pyxdp.compiler import compile_module
from pyxdp.emu import EmuBackend
from pyxdp.errors import VerifierError
from pyxdp.kernel import KernelBackend

pytestmark = pytest.mark.kernel

UNCHECKED = '''from pyxdp.compiler.lang import *


@xdp
def unchecked(ctx):
    p = ctx.data
    end = ctx.data_end
    if p + 14 > end:
        return XDP_PASS
    word = load(u32, p + 20)
    if word == 7:
        return XDP_DROP
    return XDP_PASS
'''


def test_verifier_error_names_the_python_line(tmp_path) -> None:
    path = tmp_path / "unchecked.py"
    path.write_text(UNCHECKED)
    obj = compile_module(str(path))
    with pytest.raises(VerifierError) as ei:
        KernelBackend().load(obj.spec)
    err = ei.value
    assert err.source is not None and "unchecked.py:10" in err.source, err.source
    assert "word = load(u32, p + 20)" in err.source
    assert "unchecked.py:10" in str(err)


def test_checked_raw_access_loads(tmp_path) -> None:
    fixed = UNCHECKED.replace("p + 14 > end", "p + 24 > end")
    obj = compile_module(fixed)
    with KernelBackend().load(obj.spec) as coll:
        prog = coll.programs["unchecked"]
        assert prog.test_run(bytes(20) + (7).to_bytes(4, "little") + bytes(40)).retval == 1
        assert prog.test_run(bytes(64)).retval == 2


SEMANTICS = """
out.update(0, u8(200) + u8(100))
out.update(1, i8(-1))
out.update(2, i32(-8) >> 1)
x = u8(250)
x += 10
out.update(3, x)
out.update(4, u8(1) if u32(1) < i32(-1) else u8(0))
n: u32 = 33
out.update(5, u32(1) << n)
out.update(6, csum_fold(0x1FFFF))
out.update(7, u32(ctx.ingress_ifindex) - 1)
"""


def test_integer_semantics_kernel_equals_emulator() -> None:
    src = ("from pyxdp.compiler.lang import *\nout = ArrayMap[u32, u64](max_entries=8)\n"
           "@xdp\ndef prog(ctx):\n" + textwrap.indent(SEMANTICS, "    ")
           + "    return XDP_PASS\n")
    obj = compile_module(src)
    results = []
    for backend in (KernelBackend(), EmuBackend()):
        with backend.load(obj.spec) as coll:
            coll.programs["prog"].run_packet(bytes(64))   # ingress lo (ifindex 1) on both
            results.append([obj.typed_maps(coll)["out"][i] for i in range(8)])
    kernel, emulated = results
    assert kernel == emulated
    assert kernel[:7] == [300, 2**64 - 1, 2**64 - 4, 4, 1, 2, 0xFFFE]
    assert kernel[7] == 0

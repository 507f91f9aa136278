"""Array-of-maps and hash-of-maps in the dialect (issue 11): ``ArrayOfMaps[K, inner]``
with an inline inner template, looked up in the program (None for an empty slot), the
inner map's own methods used on what the lookup gave; user space swaps inner maps under
the program, in the kernel and the emulator."""

from __future__ import annotations

import pytest

from pyxdp.abi import MapType
from pyxdp.backend import Backend
from pyxdp.compiler import compile_module
from pyxdp.errors import CompileError

SRC = """
from pyxdp.compiler.lang import *
outer = OUTER[u32, HashMap[u32, u64](max_entries=16)](max_entries=4)
out = ArrayMap[u32, u64](max_entries=1)

@xdp
def prog(ctx):
    m = outer.lookup(ctx.rx_queue_index)
    if not m:
        return XDP_ABORTED
    v = m.lookup(7)
    if not v:
        return XDP_PASS
    out.update(0, v.value)
    v.value += 1
    return XDP_DROP
"""


@pytest.mark.parametrize("kind", ["ArrayOfMaps", "HashOfMaps"])
def test_program_follows_the_inner_map_user_space_stores(backend: Backend, kind: str) -> None:
    obj = compile_module(SRC.replace("OUTER", kind))
    spec = obj.spec.maps["outer"]
    assert spec.type == (MapType.ARRAY_OF_MAPS if kind == "ArrayOfMaps"
                         else MapType.HASH_OF_MAPS)
    assert spec.inner is not None and spec.inner.type == MapType.HASH
    assert (spec.inner.key_size, spec.inner.value_size, spec.inner.max_entries) == (4, 8, 16)
    with backend.load(obj.spec) as coll:
        prog, outer = coll.programs["prog"], coll.maps["outer"]
        frame = bytes(64)
        assert prog.run_packet(frame).verdict.name == "ABORTED"     # empty slot 0
        a = backend.create_map(spec.inner)
        b = backend.create_map(spec.inner)
        try:
            outer[0] = a
            assert prog.run_packet(frame).verdict.name == "PASS"    # no key 7 in a
            a[7] = 41
            assert prog.run_packet(frame).verdict.name == "DROP"
            assert a[7] == 42 and obj.typed_maps(coll)["out"][0] == 41
            outer[0] = b                                            # swap: b is empty
            assert prog.run_packet(frame).verdict.name == "PASS"
            b[7] = 5
            assert prog.run_packet(frame).verdict.name == "DROP"
            assert (a[7], b[7]) == (42, 6)
            del outer[0]
            assert prog.run_packet(frame).verdict.name == "ABORTED"
        finally:
            a.close()
            b.close()


@pytest.mark.parametrize("body,message", [
    ("m = outer.lookup(0)\n    v = m.lookup(7)", "may be None"),
    ("outer.update(0, 1)", "only look maps up"),
    ("outer.delete(0)", "only look maps up"),
])
def test_refusals(body: str, message: str) -> None:
    src = ("from pyxdp.compiler.lang import *\n"
           "outer = ArrayOfMaps[u32, HashMap[u32, u64](max_entries=16)](max_entries=4)\n"
           f"@xdp\ndef prog(ctx):\n    {body}\n    return XDP_PASS\n")
    with pytest.raises(CompileError, match=message):
        compile_module(src)


def test_declaration_refusals() -> None:
    from pyxdp.compiler import lang
    with pytest.raises(TypeError, match="inner map template"):
        lang.ArrayOfMaps[lang.u32, lang.u64]
    with pytest.raises(TypeError, match="only of ArrayOfMaps"):
        lang.HashMap[lang.u32, lang.HashMap[lang.u32, lang.u32](4)]
    with pytest.raises(TypeError, match="cannot be an inner map"):
        lang.ArrayOfMaps[lang.u32, lang.ProgArray(4)]

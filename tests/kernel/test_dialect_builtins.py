"""Builtins a real XDP developer reaches for (issue 11), in the kernel and the emulator:
``min``/``max``/``abs`` with Python's meaning, ``ctx.packet_len()``, packet-length
arithmetic the verifier accepts, and refusals where a result would silently differ."""

from __future__ import annotations

import pytest

from pyxdp.backend import Backend
from pyxdp.compiler import compile_module
from pyxdp.errors import CompileError

HEAD = "from pyxdp.compiler.lang import *\nout = ArrayMap[u32, u64](max_entries=8)\n"


def run(backend: Backend, body: str, packet: bytes = bytes(64), extra: str = "") -> list[int]:
    src = HEAD + extra + "\n@xdp\ndef prog(ctx):\n" + "".join(
        f"    {line}\n" for line in body.strip().splitlines()) + "    return XDP_PASS\n"
    obj = compile_module(src)
    with backend.load(obj.spec) as coll:
        out = obj.typed_maps(coll)["out"]
        assert coll.programs["prog"].run_packet(packet).verdict.name == "PASS"
        return [out[i] for i in range(8)]


def signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def test_min_max_abs_mean_what_python_means(backend: Backend) -> None:
    got = run(backend, """
n = ctx.packet_len()
out.update(0, min(n, 100))
out.update(1, max(n, 100, 7))
out.update(2, abs(i64(n) - 1000))
out.update(3, min(i64(n) - 70, 5))
out.update(4, max(3, 9))
out.update(5, n)
out.update(6, abs(i32(-5)))
out.update(7, min(u8(n), u8(200)))
""", bytes(64))
    assert [signed(v) for v in got] == [64, 100, 936, -6, 9, 64, 5, 64]


def test_packet_length_adds_to_a_map_value_without_pointer_arithmetic(backend: Backend
                                                                     ) -> None:
    """``rec.bytes += ctx.data_end - ctx.data`` was reassociated into arithmetic on
    pkt_end, which the verifier refuses; both spellings load and count now."""
    extra = ("class Rec(Struct):\n    packets: u64\n    bytes: u64\n"
             "recs = ArrayMap[u32, Rec](max_entries=1)\n")
    body = """
rec = recs.lookup(0)
if not rec:
    return XDP_ABORTED
rec.bytes += ctx.data_end - ctx.data
rec.packets += ctx.packet_len()
out.update(0, rec.bytes)
out.update(1, rec.packets)
"""
    got = run(backend, body, bytes(100), extra)
    assert got[:2] == [100, 100]


@pytest.mark.parametrize(("stmt", "fragment"), [
    ("x = min(i64(ctx.ingress_ifindex), u32(1))", "mixes signed and unsigned"),
    ("x = min(ctx.ingress_ifindex, -1)", "negative"),
    ("x = min(ctx.ingress_ifindex)", "min"),
    ("x = abs(1, 2)", "abs"),
    ("x = ctx.packet_len(1)", "packet_len"),
])
def test_refused_with_a_clear_message(stmt: str, fragment: str) -> None:
    with pytest.raises(CompileError, match=fragment):
        compile_module(HEAD + f"\n@xdp\ndef prog(ctx):\n    {stmt}\n    return XDP_PASS\n")


def test_a_module_function_named_min_is_still_called() -> None:
    src = HEAD + ("def min(a, b):\n    return a + b\n\n@xdp\ndef prog(ctx):\n"
                  "    out.update(0, min(2, 3))\n    return XDP_PASS\n")
    from pyxdp.emu import EmuBackend

    obj = compile_module(src)
    coll = EmuBackend().load(obj.spec)
    coll.programs["prog"].run_packet(bytes(64))
    assert obj.typed_maps(coll)["out"][0] == 5


def test_structs_read_back_from_a_map_are_hashable(backend: Backend) -> None:
    extra = ("class Flow(Struct):\n    saddr: be32\n    port: u16\n    tag: u8[2]\n"
             "flows = HashMap[Flow, u64](max_entries=8)\n")
    body = """
f = Flow()
f.saddr = ip4("198.18.0.1")
f.port = 53
flows.update(f, 7)
"""
    src = HEAD + extra + "\n@xdp\ndef prog(ctx):\n" + "".join(
        f"    {line}\n" for line in body.strip().splitlines()) + "    return XDP_PASS\n"
    obj = compile_module(src)
    with backend.load(obj.spec) as coll:
        flows = obj.typed_maps(coll)["flows"]
        coll.programs["prog"].run_packet(bytes(64))
        seen = dict(flows.items())
    (key,) = seen
    flow_cls = type(key)
    assert seen[flow_cls(saddr=0xC6120001, port=53, tag=key.tag)] == 7
    assert len({key, flow_cls(saddr=0xC6120001, port=53, tag=key.tag)}) == 1
    assert hash(key) != hash(flow_cls(saddr=0xC6120001, port=54, tag=key.tag))


@pytest.mark.parametrize("arith", ["r2 += 4", "r3 = r2\n    r3 += -1", "w2 += 1",
                                   "r4 = 7\n    r4 += r2"])
def test_pointer_arithmetic_on_pkt_end_is_refused_by_both(backend: Backend, arith: str
                                                          ) -> None:
    """The emulator ran programs the verifier rejects (arithmetic on data_end); an XDP
    program from a spec is now refused at load by both backends."""
    from pyxdp.asm import assemble
    from pyxdp.errors import EmulatorError, VerifierError
    from pyxdp.spec import ObjectSpec, ProgramSpec, ProgType

    text = f"r2 = *(u32 *)(r1 + 4)\n    {arith}\n    r0 = 2\n    exit"
    prog = ProgramSpec("bad", ProgType.XDP, assemble(text.replace("    ", "")))
    with pytest.raises((EmulatorError, VerifierError), match="pkt_end") as ei:
        backend.load(ObjectSpec(programs={"bad": prog}))
    assert isinstance(ei.value, EmulatorError if backend.name == "emulator" else VerifierError)


def test_the_allowed_difference_of_packet_pointers_loads_in_both(backend: Backend) -> None:
    from pyxdp.asm import assemble
    from pyxdp.spec import ObjectSpec, ProgramSpec, ProgType

    text = ("r2 = *(u32 *)(r1 + 4)\nr3 = *(u32 *)(r1 + 0)\nr2 -= r3\n"
            "r0 = r2\nexit")
    prog = ProgramSpec("len", ProgType.XDP, assemble(text))
    with backend.load(ObjectSpec(programs={"len": prog})) as coll:
        assert coll.programs["len"].run_packet(bytes(77)).retval == 77


VINDEX = '''
from pyxdp.compiler.lang import *
out = ArrayMap[u32, u64](max_entries=16)
class Rec(Struct):
    v: u32[4]
recs = ArrayMap[u32, Rec](max_entries=1)

@xdp
def prog(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    ip6 = c.parse(IPv6)
    if not ip6:
        return XDP_PASS
    s = 0
    for i in range(16):
        s += ip6.saddr[i]
        out.update(i, ip6.daddr[i])
    out.update(0, s)
    r = recs.lookup(0)
    if r:
        for j in range(4):
            r.v[j] = j * 10 + ip6.saddr[15]
    return XDP_PASS
'''


def test_arrays_indexed_by_a_for_range_variable(backend: Backend) -> None:
    from pyxdp.packets import build

    frame = build.ethernet(build.ipv6(build.udp(b"x" * 8), src="2001:db8::1:2",
                                      dst="2001:db8::abcd"))
    obj = compile_module(VINDEX)
    with backend.load(obj.spec) as coll:
        maps = obj.typed_maps(coll)
        coll.programs["prog"].run_packet(frame)
        out = [maps["out"][i] for i in range(16)]
        rec = maps["recs"][0]
    src, dst = frame[22:38], frame[38:54]
    assert out[0] == sum(src) and out[1:] == list(dst[1:])
    assert list(rec.v) == [j * 10 + src[15] for j in range(4)]


@pytest.mark.parametrize(("body", "fragment"), [
    ("for i in range(17):\n        x = ip6.saddr[i]", "outside"),
    ("n = ctx.ingress_ifindex\n    x = ip6.saddr[n]", "neither a constant nor"),
    ("for i in range(4):\n        i = i + 1\n        x = ip6.saddr[i]", "neither a constant"),
])
def test_unproven_indexes_are_refused(body: str, fragment: str) -> None:
    src = (HEAD + "\n@xdp\ndef prog(ctx):\n    c = ctx.cursor()\n    eth = c.parse(Ethernet)\n"
           "    ip6 = c.parse(IPv6)\n    if not ip6:\n        return XDP_PASS\n"
           f"    {body}\n    return XDP_PASS\n")
    with pytest.raises(CompileError, match=fragment):
        compile_module(src)


def test_a_reference_in_arithmetic_hints_at_value() -> None:
    src = HEAD + ("cnt = ArrayMap[u32, u32](max_entries=1)\n\n@xdp\ndef prog(ctx):\n"
                  "    v = cnt.lookup(0)\n    if not v:\n        return XDP_PASS\n"
                  "    x = u32(1) + v\n    return XDP_PASS\n")
    with pytest.raises(CompileError, match=r"use \.value") as ei:
        compile_module(src)
    assert "bool" not in str(ei.value)

"""Unit tests of each compiler pass: front end, dialect check, typing, lowering, emission;
integer semantics checked by running compiled code in the emulator."""

from __future__ import annotations

import textwrap

import pytest

from pyxdp.compiler import PASSES, CompiledObject, compile_module
from pyxdp.compiler.check import bounded_while
from pyxdp.compiler.frontend import parse_module
from pyxdp.compiler.types import common, i32, i64, u8, u16, u32, u64
from pyxdp.emu import EmuBackend, EmuProgram
from pyxdp.errors import CompileError

HEAD = "from pyxdp.compiler.lang import *\nout = ArrayMap[u32, u64](max_entries=8)\n"


def program(body: str, extra: str = "") -> str:
    return HEAD + extra + "\n@xdp\ndef prog(ctx):\n" + textwrap.indent(
        textwrap.dedent(body), "    ") + "\n    return XDP_PASS\n"


def emulate(obj: CompiledObject) -> EmuProgram:
    """The object's only program in the emulator, its maps typed by the declarations."""
    coll = EmuBackend().load(obj.spec)
    obj.typed_maps(coll)
    (prog,) = coll.programs.values()
    return prog


def values(body: str, extra: str = "", packet: bytes = bytes(64)) -> list[int]:
    """Run ``body`` in the emulator; return out[0..7] (the body stores results there)."""
    obj = compile_module(program(body, extra))
    emu = emulate(obj)
    emu.run_xdp(packet)
    m = emu.maps["out"]
    return [m[i] for i in range(8)]


def compile_error(body: str, extra: str = "") -> CompileError:
    with pytest.raises(CompileError) as ei:
        compile_module(program(body, extra))
    return ei.value


# -- front end ---------------------------------------------------------------------------
def test_frontend_collects_declarations() -> None:
    info = parse_module(program("pass", "LIMIT = Const(u32, 5)\n"))
    assert set(info.maps) == {"out"} and set(info.configs) == {"LIMIT"}
    assert set(info.programs) == {"prog"} and info.maps["out"].name == "out"


def test_frontend_syntax_error_has_location() -> None:
    with pytest.raises(CompileError) as ei:
        compile_module("def f(:\n")
    assert ei.value.line == 1 and ei.value.filename == "<source>"


def test_no_programs_is_an_error() -> None:
    with pytest.raises(CompileError, match="no @xdp"):
        compile_module("X = 1\n")


# -- dialect check -----------------------------------------------------------------------
def test_bounded_while_detection() -> None:
    import ast
    good = ast.parse("while i < 4:\n    x = 1\n    i += 1\n").body[0]
    bad = ast.parse("while i < 4:\n    i = 0\n    i += 1\n").body[0]
    assert bounded_while(good) == "i"  # type: ignore[arg-type]
    assert bounded_while(bad) is None  # type: ignore[arg-type]


def test_bounded_while_runs() -> None:
    assert values("i = 0\ntotal: u64 = 0\nwhile i < 5:\n    total += i\n    i += 1\n"
                  "out.update(0, total)")[0] == 10


# -- typing ------------------------------------------------------------------------------
def test_common_type_rules() -> None:
    assert common(u8, u8) == i32           # C integer promotion
    assert common(u32, i32) == u32         # same width: unsigned wins
    assert common(u32, i64) == i64         # wider signed holds every u32
    assert common(u64, i32) == u64
    assert common(u16, u16) == i32


def test_typing_errors_point_at_the_line() -> None:
    e = compile_error("x = 1\ny = x.foo\n")
    assert e.line == 7 and "has no attribute" in str(e)
    e = compile_error("c = ctx.cursor()\neth = c.parse(Ethernet)\nx = eth.proto\n")
    assert e.line == 8 and "may be None" in str(e) and e.hint
    # an attribute straight on a lookup's result: nobody checked it for None
    e = compile_error("x = out.lookup(0).value\n")
    assert "result of this lookup may be None" in str(e) and "if not x" in (e.hint or "")
    e = compile_error("if out.lookup(1).value == 3:\n    return XDP_DROP\n")
    assert "may be None" in str(e)
    e = compile_error("x: u8 = 300\n")
    assert "does not fit" in str(e)
    e = compile_error("x = u32(1) << 40\n")
    assert "out of range" in str(e)
    e = compile_error("x = undefined_name\n")
    assert "not defined" in str(e)


def test_narrowing_after_early_return() -> None:
    src = """
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if eth is None:
        return XDP_DROP
    out.update(0, eth.proto)
    """
    assert values(src, packet=bytes(12) + b"\x86\xdd" + bytes(50))[0] == 0x86DD


def test_packet_refs_die_after_adjust_head() -> None:
    e = compile_error("c = ctx.cursor()\neth = c.parse(Ethernet)\nif not eth:\n"
                      "    return XDP_DROP\nctx.adjust_head(4)\nx = eth.proto\n")
    assert "parse the headers again" in (e.hint or "")


def test_dump_after_every_pass() -> None:
    obj = compile_module(program("out.update(0, 1)"), dump=set(PASSES))
    assert "FunctionDef" in obj.dumps["ast"]
    assert "ref[" in obj.dumps["typed"] or "u32" in obj.dumps["typed"]
    assert "define i32 @\"prog\"" in obj.dumps["llvm"] or "@prog" in obj.dumps["llvm"]
    assert "exit" in obj.dumps["asm"]


# -- integer semantics (run in the emulator) ---------------------------------------------
def test_wraparound_on_assignment() -> None:
    v = values("""
    x = u8(250)
    x += 10
    out.update(0, x)
    y = u32(0xFFFFFFFF)
    y += 1
    out.update(1, y)
    z: u16 = 0
    z -= 1
    out.update(2, z)
    """)
    assert v[:3] == [4, 0, 0xFFFF]


def test_c_promotion_and_signedness() -> None:
    v = values("""
    out.update(0, u8(200) + u8(100))
    out.update(1, i8(-1))
    out.update(2, i32(-8) >> 1)
    out.update(3, u32(0x80000000) >> 31)
    out.update(4, u8(1) if i32(-1) < 1 else u8(0))
    out.update(5, u8(1) if u32(1) < i32(-1) else u8(0))
    out.update(6, u32(17) // 5 * 10 + u32(17) % 5)
    out.update(7, bswap16(0x1234))
    """)
    assert v == [300, 2**64 - 1, 2**64 - 4, 1, 1, 1, 32, 0x3412]


def test_shift_counts_are_masked() -> None:
    v = values("n: u32 = 33\nout.update(0, u32(1) << n)\nm: u64 = 65\nout.update(1, u64(1) << m)")
    assert v[:2] == [2, 2]


def test_signed_division_rejected() -> None:
    e = compile_error("a = i32(ctx.ingress_ifindex)\nx = a // 3\n")
    assert "signed division" in str(e) and "u32(a)" in (e.hint or "")


def test_config_constant_read_from_rodata() -> None:
    src = program("out.update(0, LIMIT)", "LIMIT = Const(u32, 5)\n")
    obj = compile_module(src)
    emu = emulate(obj)
    emu.run_xdp(bytes(64))
    assert emu.maps["out"][0] == 5
    obj.set_config("LIMIT", 9)
    emu = emulate(obj)
    emu.run_xdp(bytes(64))
    assert emu.maps["out"][0] == 9


def test_helpers_inline_and_loops() -> None:
    extra = "def square(x):\n    return x * x\n"
    v = values("t: u64 = 0\nfor i in range(1, 5):\n    if i == 3:\n        continue\n"
               "    t += square(i)\nout.update(0, t)", extra)
    assert v[0] == 1 + 4 + 16


def test_struct_map_values_and_be_fields() -> None:
    extra = ("class Rec(Struct):\n    a: u32\n    b: be16\n    c: u64\n"
             "recs = HashMap[u32, Rec](max_entries=4)\n")
    obj = compile_module(program("recs.update(1, Rec(a=7, b=0x0102, c=9))\n"
                                 "r = recs.lookup(1)\nif r:\n    r.c += r.a\n", extra))
    emu = emulate(obj)
    emu.run_xdp(bytes(64))
    rec = emu.maps["recs"][1]
    assert (rec.a, rec.b, rec.c) == (7, 0x0102, 16)
    raw = emu.maps["recs"]._lookup((1).to_bytes(4, "little"))
    assert raw[4:6] == b"\x01\x02"             # network order in memory


def test_checksum_helpers() -> None:
    from pyxdp.packets.build import ethernet, ipv4, udp
    pkt = ethernet(ipv4(udp(b"x"), ttl=64))
    src = """
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        return XDP_DROP
    ip = c.parse(IPv4)
    if not ip:
        return XDP_DROP
    old = ip.check
    ip.ttl -= 1
    out.update(0, csum_replace2(old, 0x4000 | IPPROTO_UDP, 0x3F00 | IPPROTO_UDP))
    ip.check = 0
    out.update(1, ipv4_csum(ip))
    """
    v = values(src, packet=pkt)
    assert v[0] == v[1]


def test_types_have_c_sizes() -> None:
    assert (u8.size, u16.size, u32.size, u64.size, i64.size) == (1, 2, 4, 8, 8)
    assert u8(300) == 44 and i32(0xFFFFFFFF) == -1

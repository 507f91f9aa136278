"""The translator's fast paths (merged loads and atomics, fused moves, keyed map lookups,
lazy XDP results, instruction counting) agree with the reference semantics."""

from __future__ import annotations

import dataclasses

import pytest

from pyxdp import emu
from pyxdp.asm import assemble
from pyxdp.errors import EmulatorError
from pyxdp.maps import MapSpec
from pyxdp.packets.build import ethernet, ipv4, udp
from pyxdp.spec import MapType

MEM = bytes(range(1, 65))
PKT = ethernet(ipv4(udp(b"payload", dport=53), src="10.0.0.1", dst="10.0.0.2"))


def both(text: str, mem: bytes | None = MEM) -> int:
    """r0 from the translator, checked against the reference interpreter."""
    insns = assemble(text)
    got = emu.load(insns).run(mem)
    assert got == emu.interpret(insns, mem)
    return got


def test_adjacent_loads_are_merged_and_read_the_same_values() -> None:
    text = """
        r2 = *(u16 *)(r1 + 2)
        r3 = *(u8 *)(r1 + 0)
        r4 = *(u32 *)(r1 + 8)
        r5 = *(u64 *)(r1 + 16)
        r0 = r2
        r0 += r3
        r0 ^= r4
        r0 += r5
        exit
    """
    assert "UN" in emu.load(assemble(text)).source
    assert both(text) == ((0x0403 + 1) ^ int.from_bytes(MEM[8:12], "little")) + \
        int.from_bytes(MEM[16:24], "little")


def test_merged_load_that_overwrites_its_base_ends_the_group() -> None:
    both("r2 = *(u32 *)(r1 + 0)\nr1 = *(u32 *)(r1 + 4)\nr0 = r1\nr0 += r2\nexit")


def test_merged_load_faults_at_the_member_that_is_out_of_bounds() -> None:
    prog = emu.load(assemble("""
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u8 *)(r2 + 0)
        r4 = *(u32 *)(r2 + 60)
        r0 = 2
        exit
    """))
    assert "UN" in prog.source
    with pytest.raises(EmulatorError) as ei:
        prog.run_xdp(bytes(40))
    assert ei.value.pc == 2
    assert prog.run_xdp(bytes(64)).r0 == 2


@pytest.mark.parametrize("op", ["+=", "|=", "&=", "^="])
@pytest.mark.parametrize("width", ["u32", "u64"])
def test_side_by_side_atomics_match_the_interpreter(op: str, width: str) -> None:
    size = 4 if width == "u32" else 8
    reg = "w" if width == "u32" else "r"
    both(f"""
        r2 = -1
        *(u64 *)(r10 - 16) = r2
        r2 = 0x1234
        *(u64 *)(r10 - 8) = r2
        r3 = r10
        r3 += -16
        r4 = 0x0f0f0f0f
        r5 = 7
        lock *({width} *)(r3 + 0) {op} {reg}4
        lock *({width} *)(r3 + {size}) {op} {reg}5
        r0 = *(u64 *)(r10 - 16)
        r1 = *(u64 *)(r10 - 8)
        r0 ^= r1
        exit
    """)


def test_fetch_atomics_and_fused_moves_match_the_interpreter() -> None:
    both("""
        r2 = 40
        *(u64 *)(r10 - 8) = r2
        r3 = 2
        r4 = r10
        r4 += -8
        r3 = atomic64_fetch_add((u64 *)(r4 + 0), r3)
        r0 = *(u64 *)(r10 - 8)
        r5 = r0
        r5 >>= 1
        r6 = r5
        r6 -= 3
        r0 += r3
        r0 += r6
        exit
    """)


def _keyed_prog(kind: MapType) -> tuple[emu.EmuProgram, emu.EmuMap]:
    m = emu.create_map(MapSpec("m", kind, 4, 8, 4))
    prog = emu.load(assemble("""
        r1 = 3
        *(u32 *)(r10 - 4) = r1
        r2 = r10
        r2 += -4
        r1 = map[id:1]
        call 1
        if r0 == 0 goto miss
        r1 = 5
        lock *(u64 *)(r0 + 0) += r1
        r0 = *(u64 *)(r0 + 0)
        exit
    miss:
        r0 = 99
        exit
    """), maps={1: m})
    return prog, m


@pytest.mark.parametrize("kind", [MapType.HASH, MapType.ARRAY])
def test_keyed_lookup_from_a_constant_stack_slot(kind: MapType) -> None:
    prog, m = _keyed_prog(kind)
    assert "LK0K" in prog.source
    if kind == MapType.HASH:
        assert prog.run() == 99
        m[(3).to_bytes(4, "little")] = (10).to_bytes(8, "little")
    else:
        m[(3).to_bytes(4, "little")] = (10).to_bytes(8, "little")
    assert prog.run() == 15
    assert prog.run() == 20
    assert m[(3).to_bytes(4, "little")] in (20, (20).to_bytes(8, "little"))


def test_results_do_not_share_buffers_or_traces() -> None:
    prog = emu.load(assemble("""
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 1
        if r4 > r3 goto out
        r5 = *(u8 *)(r2 + 0)
        r5 += 1
        *(u8 *)(r2 + 0) = r5
    out:
        r0 = 3
        exit
    """))
    first = prog.run_xdp(b"\x01rest-of-packet")
    second = prog.run_xdp(b"\x10other")
    assert first.packet == b"\x02rest-of-packet"
    assert second.packet == b"\x11other"
    assert first.trace == [] and first.trace is not second.trace
    assert first.meta == b"" and first.redirect is None
    assert dataclasses.asdict(first)["packet"] == b"\x02rest-of-packet"
    assert first == prog.run_xdp(b"\x01rest-of-packet")


def test_instruction_count_of_an_instrumented_translation() -> None:
    text = "r0 = 0\nr1 = 3\nloop:\nr0 += r1\nr1 -= 1\nif r1 != 0 goto loop\nexit"
    prog = emu.load(assemble(text), count=True)
    assert prog.run() == 6
    assert prog.insn_count == 2 + 3 * 3 + 1
    prog.run()
    assert prog.insn_count == 12     # reset per run
    with pytest.raises(EmulatorError):
        _ = emu.load(assemble(text)).insn_count


def test_insn_count_on_xdp_paths() -> None:
    prog = emu.load(assemble("r0 = 2\nr2 = *(u32 *)(r1 + 0)\nexit"), count=True)
    prog.run_xdp(PKT)
    assert prog.insn_count == 3


# -- the XDP entry: folded context, proven packet ranges, hoisted loads, lazy pointers -----

BOUNDED = """
    r2 = *(u32 *)(r1 + 0)
    r3 = *(u32 *)(r1 + 4)
    r4 = r2
    r4 += 8
    if r4 > r3 goto out
"""


def test_hoisted_packet_loads_see_stores_made_before_them() -> None:
    prog = emu.load(assemble(BOUNDED + """
        r5 = *(u8 *)(r2 + 0)
        r6 = 0x77
        *(u8 *)(r2 + 1) = r6
        r7 = *(u8 *)(r2 + 1)
        r8 = *(u8 *)(r2 + 2)
        r0 = r5
        r0 <<= 8
        r0 |= r7
        r0 <<= 8
        r0 |= r8
        exit
    out:
        r0 = 2
        exit
    """))
    assert "x0(P, C, E)" in prog.source
    assert prog.run_xdp(bytes([1, 2, 3, 4, 5, 6, 7, 8])).r0 == 0x017703
    assert prog.run_xdp(bytes(7)).r0 == 2            # the bounds check still decides


def test_hoisted_loads_are_merged_and_unproven_ones_still_fault() -> None:
    prog = emu.load(assemble(BOUNDED + """
        r5 = *(u16 *)(r2 + 0)
        if r5 == 0 goto out
        r6 = *(u16 *)(r2 + 2)
        r6 = be16 r6
        r7 = *(u8 *)(r2 + 7)
        r8 = *(u8 *)(r2 + 8)
        r0 = r6
        r0 += r7
        r0 += r8
        exit
    out:
        r0 = 2
        exit
    """))
    x0 = prog.source[prog.source.index("def x0"):]
    assert "q_" in x0                                   # one unpack, copied later
    pkt = bytes([1, 0, 0x12, 0x34, 0, 0, 0, 5, 6])
    assert prog.run_xdp(pkt).r0 == 0x1234 + 5 + 6
    with pytest.raises(EmulatorError) as ei:           # byte 8 was never proven to exist
        prog.run_xdp(pkt[:8])
    assert ei.value.pc == 10


def test_a_helper_call_forgets_the_folded_context_and_hoisted_loads() -> None:
    prog = emu.load(assemble(BOUNDED + """
        r6 = *(u8 *)(r2 + 4)
        r1 = r1
        r2 = 2
        call 44                          ; bpf_xdp_adjust_head(ctx, 2)
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 1
        if r4 > r3 goto out
        r0 = *(u8 *)(r2 + 0)
        r0 <<= 8
        r0 |= r6
        exit
    out:
        r0 = 2
        exit
    """))
    res = prog.run_xdp(bytes(range(16)))
    assert res.r0 == (2 << 8) | 4
    assert res.packet == bytes(range(2, 16))
    assert prog.run_xdp(bytes(range(16))).packet == bytes(range(2, 16))   # data reset


def _lookup_prog(tail: str) -> tuple[emu.EmuProgram, emu.EmuMap]:
    m = emu.create_map(MapSpec("m", MapType.HASH, 4, 16, 4))
    m[(7).to_bytes(4, "little")] = bytes(range(16))
    prog = emu.load(assemble("""
        r1 = 7
        *(u32 *)(r10 - 4) = r1
        r2 = r10
        r2 += -4
        r1 = map[id:1]
        call 1
    """ + tail), maps={1: m})
    return prog, m


def test_a_lazily_addressed_map_value_is_a_real_pointer_when_read() -> None:
    prog, _ = _lookup_prog("""
        if r0 == 0 goto miss
        r6 = r0
        r6 += 8
        r1 = *(u8 *)(r6 + 1)
        if r0 > 0x1000 goto big
        r0 = 1
        exit
    big:
        r0 = r1
        exit
    miss:
        r0 = 99
        exit
    """)
    assert "LK0KA" in prog.source
    assert prog.run_xdp(PKT).r0 == 9
    assert prog.run() == 9


def test_a_fault_through_a_lazy_map_value_reports_its_address() -> None:
    prog, _ = _lookup_prog("""
        if r0 == 0 goto miss
        r0 = *(u64 *)(r0 + 12)
        exit
    miss:
        r0 = 99
        exit
    """)
    with pytest.raises(EmulatorError) as ei:
        prog.run_xdp(PKT)
    assert ei.value.pc == 7
    assert ei.value.address is not None and ei.value.address & 0x7FFFFFFF == 12

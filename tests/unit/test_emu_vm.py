"""Core machine semantics: faults with pc, budgets, calls, validation, and a differential
property test of the translator against a Python-int model of the ALU."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxdp import emu
from pyxdp.asm import assemble
from pyxdp.errors import EmulatorError
from pyxdp.isa import AluOp, Class, Instruction, JmpOp, Source


def run(text: str, mem: bytes | None = None, **kw: object) -> int:
    return emu.load(assemble(text), **kw).run(mem)  # type: ignore[arg-type]


# -- faults --------------------------------------------------------------------------------
def test_out_of_bounds_read_reports_pc_insn_and_address() -> None:
    prog = emu.load(assemble("r0 = 0\nr0 = *(u32 *)(r1 + 2)\nexit"))
    with pytest.raises(EmulatorError) as ei:
        prog.run(b"\x01\x02\x03\x04")
    e = ei.value
    assert e.pc == 1
    assert e.insn == prog.instructions[1]
    assert e.address is not None and e.address & 0x7FFFFFFF == 2


def test_null_dereference_faults() -> None:
    with pytest.raises(EmulatorError) as ei:
        run("r1 = 0\nr0 = *(u8 *)(r1 + 0)\nexit")
    assert ei.value.pc == 1


def test_negative_offset_below_region_faults() -> None:
    with pytest.raises(EmulatorError) as ei:
        run("r0 = *(u8 *)(r1 - 1)\nexit", b"abcd")
    assert ei.value.pc == 0


def test_store_out_of_bounds_faults_and_never_leaks_python_errors() -> None:
    with pytest.raises(EmulatorError) as ei:
        run("*(u64 *)(r1 + 0) = r2\nr0 = 0\nexit", b"1234")
    assert ei.value.pc == 0
    assert not isinstance(ei.value, (IndexError, KeyError))


def test_stack_access_outside_frame_is_rejected_up_front() -> None:
    with pytest.raises(EmulatorError, match="Invalid.*stack"):
        emu.load(assemble("r0 = *(u64 *)(r10 + 0)\nexit"))
    with pytest.raises(EmulatorError, match="Invalid.*stack"):
        emu.load(assemble("r0 = *(u64 *)(r10 - 520)\nexit"))


def test_stack_pointer_arithmetic_is_checked_at_run_time() -> None:
    with pytest.raises(EmulatorError) as ei:
        run("r1 = r10\nr1 += -600\nr0 = *(u8 *)(r1 + 0)\nexit")
    assert ei.value.pc == 2


def test_writing_the_frame_pointer_is_invalid() -> None:
    bad = [Instruction(Class.ALU64 | AluOp.MOV, dst=10, imm=1), Instruction(0x95)]
    with pytest.raises(EmulatorError, match="Invalid.*read-only"):
        emu.load(bad)


def test_jump_out_of_program_is_invalid() -> None:
    bad = [Instruction(Class.JMP | JmpOp.JA, off=5), Instruction(0x95)]
    with pytest.raises(EmulatorError, match="Invalid"):
        emu.load(bad)


def test_falling_off_the_end_is_invalid() -> None:
    with pytest.raises(EmulatorError, match="Invalid.*last instruction"):
        emu.load([Instruction(Class.ALU64 | AluOp.MOV, dst=0, imm=1)])


def test_runaway_loop_hits_the_budget() -> None:
    prog = emu.load(assemble("r0 = 0\nloop:\nr0 += 1\ngoto loop\nexit"), budget=10_000)
    with pytest.raises(EmulatorError, match="budget") as ei:
        prog.run()
    assert ei.value.pc is not None


def test_multi_block_loop_counts_and_finishes() -> None:
    text = """
        r0 = 0
        r1 = 0
    top:
        if r1 & 1 goto odd
        r0 += 3
        goto next
    odd:
        r0 += 5
    next:
        r1 += 1
        if r1 < 100 goto top
        exit
    """
    assert run(text) == 50 * 3 + 50 * 5
    with pytest.raises(EmulatorError, match="budget"):
        run(text, budget=200)


def test_unknown_helper_is_named() -> None:
    with pytest.raises(EmulatorError, match="bpf_skb_store_bytes"):
        emu.load(assemble("call 9\nexit"))


def test_callx_calls_helper_by_register_value() -> None:
    prog = emu.load(assemble("r1 = 8\ncallx r1\nexit"), machine=emu.Machine(cpu=3))
    assert prog.run() == 3


# -- bpf-to-bpf calls -------------------------------------------------------------------------
CALLS = """
    r6 = 7
    r1 = 5
    call pc+4
    r0 += r6
    exit
    r0 = 0
    exit
    *(u64 *)(r10 - 8) = r1
    r6 = 100
    r0 = *(u64 *)(r10 - 8)
    r0 *= 2
    exit
"""


def test_local_call_preserves_callee_saved_and_has_own_frame() -> None:
    assert run(CALLS) == 5 * 2 + 7


def test_recursion_deeper_than_eight_frames_fails() -> None:
    text = "r1 = 0\ncall pc+1\nexit\nr1 += 1\ncall pc-2\nexit"
    with pytest.raises(EmulatorError, match="frames"):
        run(text)


# -- ALU corner cases -------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("r0 = 7\nr1 = 0\nr0 /= r1\nexit", 0),
    ("r0 = 7\nr1 = 0\nr0 %= r1\nexit", 7),
    ("r0 = -1\nr1 = 0\nw0 %= w1\nexit", 0xFFFFFFFF),
    ("r0 = 0x7fffffff\nr0 <<= 33\nr0 s>>= 63\nexit", (1 << 64) - 1),
    ("r0 = -8\nr0 s/= 3\nexit", (-2) & ((1 << 64) - 1)),
    ("r0 = -8\nr0 s%= 3\nexit", (-2) & ((1 << 64) - 1)),
    ("r0 = 0x1234\nr0 = be16 r0\nexit", 0x3412),
    ("r0 = 0x80\nr0 = (s8)r0\nexit", (1 << 64) - 128),
])
def test_alu_corner_cases(text: str, expected: int) -> None:
    assert run(text) == expected


def test_translator_source_is_available() -> None:
    prog = emu.load(assemble("r0 = 1\nexit"))
    assert "def f0" in prog.source


# -- differential: translator vs Python-int model --------------------------------------------
M64 = (1 << 64) - 1
_OPS = [AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.DIV, AluOp.OR, AluOp.AND, AluOp.LSH,
        AluOp.RSH, AluOp.NEG, AluOp.MOD, AluOp.XOR, AluOp.MOV, AluOp.ARSH]


def _model(op: int, a: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    a, b = a & mask, b & mask
    sh = b & (bits - 1)

    def sx(v: int) -> int:
        return v - (1 << bits) if v >> (bits - 1) else v
    return {
        AluOp.ADD: a + b, AluOp.SUB: a - b, AluOp.MUL: a * b,
        AluOp.DIV: a // b if b else 0, AluOp.MOD: a % b if b else a, AluOp.OR: a | b,
        AluOp.AND: a & b, AluOp.XOR: a ^ b, AluOp.LSH: a << sh, AluOp.RSH: a >> sh,
        AluOp.ARSH: sx(a) >> sh, AluOp.NEG: -a, AluOp.MOV: b,
    }[op] & mask


_insn = st.tuples(st.sampled_from(_OPS), st.sampled_from([32, 64]), st.integers(0, 9),
                  st.integers(0, 9), st.booleans(),
                  st.integers(-(1 << 31), (1 << 31) - 1))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, M64), min_size=10, max_size=10),
       st.lists(_insn, min_size=1, max_size=40))
def test_translator_matches_int_model(init: list[int], prog: list[tuple]) -> None:
    insns: list[Instruction] = []
    for r, v in enumerate(init):
        insns.append(Instruction(0x18, dst=r, imm=v - (1 << 64) if v >> 63 else v))
    regs = list(init)
    for op, bits, dst, src, use_reg, imm in prog:
        cls = Class.ALU64 if bits == 64 else Class.ALU
        if op == AluOp.NEG:
            insns.append(Instruction(cls | op, dst=dst))
            regs[dst] = _model(op, regs[dst], 0, bits)
        elif use_reg:
            insns.append(Instruction(cls | op | Source.X, dst=dst, src=src))
            regs[dst] = _model(op, regs[dst], regs[src], bits)
        else:
            insns.append(Instruction(cls | op, dst=dst, imm=imm))
            regs[dst] = _model(op, regs[dst], imm & M64, bits)
    # fold every register into r0 through xor so any wrong register shows
    for r in range(1, 10):
        insns.append(Instruction(Class.ALU64 | AluOp.XOR | Source.X, dst=0, src=r))
    insns.append(Instruction(0x95))
    expected = 0
    for r in range(10):
        expected ^= regs[r]
    assert emu.load(insns).run() == expected
    assert emu.interpret(insns) == expected

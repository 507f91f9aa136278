"""The instruction value type: normalisation, encoding, validation of unused fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxdp.errors import DecodeError
from pyxdp.isa import (
    LD_IMM64,
    AluOp,
    Class,
    Instruction,
    JmpOp,
    Mode,
    PseudoSrc,
    Size,
    Source,
    decode,
    encode,
    slot_offsets,
)


def test_encoding_is_little_endian_with_nibble_registers() -> None:
    insn = Instruction(Class.ALU64 | AluOp.MOV | Source.X, dst=1, src=2)
    assert insn.encode() == bytes([0xBF, 0x21, 0, 0, 0, 0, 0, 0])
    insn = Instruction(Class.LDX | Mode.MEM | Size.W, dst=0, src=1, off=-4)
    assert insn.encode() == bytes([0x61, 0x10, 0xFC, 0xFF, 0, 0, 0, 0])


def test_imm_is_normalised_to_signed() -> None:
    a = Instruction(Class.ALU64 | AluOp.MOV, dst=0, imm=0xFFFFFFFF)
    assert a.imm == -1
    assert a == Instruction(Class.ALU64 | AluOp.MOV, dst=0, imm=-1)
    with pytest.raises(ValueError, match="does not fit"):
        Instruction(Class.ALU64 | AluOp.MOV, imm=1 << 32)


def test_ld_imm64_is_one_value_of_two_slots() -> None:
    insn = Instruction(LD_IMM64, dst=1, imm=0x1122334455667788)
    raw = insn.encode()
    assert len(raw) == 16 and insn.slots == 2
    assert raw[4:8] == bytes.fromhex("88776655") and raw[12:16] == bytes.fromhex("44332211")
    assert decode(raw) == [insn]
    assert slot_offsets([insn, Instruction(Class.JMP | JmpOp.EXIT)]) == [0, 2]


def test_map_value_pseudo_source_round_trips() -> None:
    insn = Instruction(LD_IMM64, dst=2, src=PseudoSrc.MAP_VALUE, imm=(16 << 32) | 7)
    assert decode(insn.encode()) == [insn]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("0500000001000000", "imm"),       # ja with imm
        ("9501000000000000", "dst"),       # exit with dst
        ("0710010001000000", "off"),       # add64 imm with offset
        ("b7100000000000000", None),       # not a multiple of 8
        ("ff00000000000000", "unknown"),   # no such opcode
        ("1800000000000000", "second slot"),
    ],
)
def test_decode_rejects_with_offset_and_reason(raw: str, reason: str | None) -> None:
    data = bytes.fromhex(raw) if len(raw) % 2 == 0 else bytes.fromhex(raw[:-1]) + b"\x00"
    with pytest.raises(DecodeError) as exc:
        decode(data)
    assert exc.value.offset is not None
    if reason:
        assert reason in str(exc.value)


def test_decode_rejects_unused_src_on_immediate_alu() -> None:
    bad = Instruction(Class.ALU64 | AluOp.ADD, dst=1, src=3, imm=1)
    assert bad.problem() is not None and "src" in bad.problem()
    with pytest.raises(DecodeError, match="src"):
        decode(bad.encode())
    assert decode(bad.encode(), strict=False) == [bad]


def test_v4_instructions_are_valid() -> None:
    ok = [
        Instruction(Class.ALU64 | AluOp.DIV | Source.X, 1, 2, off=1),   # sdiv
        Instruction(Class.ALU64 | AluOp.MOV | Source.X, 1, 2, off=32),  # movsx32
        Instruction(Class.ALU64 | AluOp.END, 1, imm=64),                # bswap64
        Instruction(Class.JMP32 | JmpOp.JA, imm=70000),                 # gotol
        Instruction(Class.LDX | Mode.MEMSX | Size.H, 1, 2, off=4),      # ldxsh
        Instruction(Class.STX | Mode.ATOMIC | Size.DW, 1, 2, imm=0xF1),  # cmpxchg
    ]
    for insn in ok:
        assert insn.problem() is None, insn
    assert decode(encode(ok)) == ok
    assert Instruction(Class.LDX | Mode.MEMSX | Size.DW, 1, 2).problem() is not None
    assert Instruction(Class.ALU | AluOp.MOV | Source.X, 1, 2, off=32).problem() is not None


@given(st.binary(max_size=256))
def test_decode_fuzz_only_raises_decode_error(data: bytes) -> None:
    try:
        insns = decode(data)
    except DecodeError:
        return
    assert encode(insns) == data

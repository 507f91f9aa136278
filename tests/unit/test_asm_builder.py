"""The Builder API: encodings, labels, map references and its errors."""

from __future__ import annotations

import pytest

from pyxdp.asm import FP, R0, R1, R2, R6, AsmError, Builder, Reg, assemble
from pyxdp.isa import AtomicOp, Instruction, PseudoSrc, Size, encode
from pyxdp.spec import MapRef


def test_builder_matches_assembler() -> None:
    b = Builder()
    (b.mov64(R6, R1)
      .ldx(Size.W, R2, R6, 4)
      .ldx("w", R1, R6, 0)
      .mov64(R0, 2)
      .add64(R1, 14)
      .jgt(R1, R2, "out")
      .ld_map_fd(R1, "counters")
      .stx(Size.DW, FP, R0, -8)
      .st("w", FP, -16, 5)
      .atomic(Size.DW, "fetch_add", FP, R0, -8)
      .call("map_lookup_elem")
      .jeq32(R0, 0, "out")
      .mov32(R0, 1)
      .label("out")
      .exit())
    text = """
        r6 = r1
        r2 = *(u32 *)(r6 + 4)
        r1 = *(u32 *)(r6 + 0)
        r0 = 2
        r1 += 14
        if r1 > r2 goto out
        r1 = map[id:0]
        *(u64 *)(r10 - 8) = r0
        *(u32 *)(r10 - 16) = 5
        r0 = atomic_fetch_add((u64 *)(r10 - 8), r0)
        call bpf_map_lookup_elem
        if w0 == 0 goto out
        w0 = 1
    out:
        exit
    """
    insns = b.build()
    assert insns == assemble(text, "llvm")
    assert insns[5].off == 8  # lddw counts two slots
    assert b.map_refs == {6: "counters"}
    assert b.spec_map_refs() == {6: MapRef("counters", PseudoSrc.MAP_FD, 0)}
    assert len(b) == 14


def test_every_family_encodes() -> None:
    b = Builder()
    b.sdiv64(R1, R2).smod32(R1, 3).neg64(R1).neg32(R1).movsx64(R1, R2, 8).movsx32(R1, R2, 16)
    b.be(R1, 16).le(R1, 32).bswap(R1, 64).ldxs("b", R1, R2, 4).lddw(R1, -2)
    b.ld_map_value(R1, "cfg", 8).ld_abs("b", 4).ld_ind(Size.H, R1, -2)
    b.atomic("w", AtomicOp.CMPXCHG, R1, R2).ja(0).ja32("end").jset(R1, R2, 0)
    b.call(5).call_local("end").call_kfunc(1234).callx(R2).label("end").exit()
    expected = assemble("""
        r1 s/= r2
        w1 s%= 3
        r1 = -r1
        w1 = -w1
        r1 = (s8)r2
        w1 = (s16)w2
        r1 = be16 r1
        r1 = le32 r1
        r1 = bswap64 r1
        r1 = *(s8 *)(r2 + 4)
        r1 = -2 ll
        r1 = map[id:0][0]+8
        r0 = *(u8 *)skb[4]
        r0 = *(u16 *)skb[r1 - 2]
        w0 = cmpxchg32_32(r1 + 0, w0, w2)
        goto +0
        gotol +5
        if r1 & r2 goto +0
        call 5
        call pc+2
        call kfunc 1234
        callx r2
        exit
    """, "llvm")
    assert encode(b.build()) == encode(expected)
    assert b.spec_map_refs()[11] == MapRef("cfg", PseudoSrc.MAP_VALUE, 8)


def test_reg_distinguishes_register_from_immediate() -> None:
    assert Builder().add64(R1, 2).build() == [Instruction(0x07, 1, 0, 0, 2)]
    assert Builder().add64(R1, R2).build() == [Instruction(0x0F, 1, 2, 0, 0)]
    assert repr(Reg(3)) == "R3" and Reg(3) == 3
    with pytest.raises(AsmError, match="invalid register r11"):
        Reg(11)


def test_builder_errors() -> None:
    with pytest.raises(AsmError, match="duplicate label 'a'"):
        Builder().label("a").exit().label("a")
    with pytest.raises(AsmError, match="undefined label 'nowhere'"):
        Builder().ja("nowhere").exit().build()
    far = Builder().ja("far")
    for _ in range(40000):
        far.mov64(R0, 0)
    far.label("far").exit()
    with pytest.raises(AsmError, match="out of range"):
        far.build()
    assert Builder().ja32("x").insn(Instruction(0xB7)).label("x").exit().build()[0].imm == 1
    with pytest.raises(AsmError, match="unknown helper 'nope'"):
        Builder().call("nope")
    with pytest.raises(AsmError, match="invalid dst register r12"):
        Builder().mov64(12, 1)
    with pytest.raises(AsmError, match="immediate"):
        Builder().mov64(R0, 1 << 40)
    with pytest.raises(AsmError, match="expected a size"):
        Builder().ldx("q", R0, R1)
    with pytest.raises(AsmError, match="expected a conditional jump"):
        Builder().jmp("call", R0, 0, 1)
    with pytest.raises(AsmError, match="instruction #0"):
        Builder().mov64(R0, 1 << 40)

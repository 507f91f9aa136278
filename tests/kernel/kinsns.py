"""Tiny hand-built programs for the kernel tests (instructions via pyxdp.isa only)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from pyxdp.abi import ProgType
from pyxdp.isa import (
    LD_IMM64,
    AluOp,
    AtomicOp,
    Class,
    Instruction,
    JmpOp,
    Mode,
    PseudoSrc,
    Size,
    Source,
)
from pyxdp.spec import LineInfo, MapRef, ProgramSpec


def mov_imm(dst: int, imm: int) -> Instruction:
    return Instruction(Class.ALU64 | AluOp.MOV | Source.K, dst=dst, imm=imm)


def mov_reg(dst: int, src: int) -> Instruction:
    return Instruction(Class.ALU64 | AluOp.MOV | Source.X, dst=dst, src=src)


def add_imm(dst: int, imm: int) -> Instruction:
    return Instruction(Class.ALU64 | AluOp.ADD | Source.K, dst=dst, imm=imm)


def ldx(size: Size, dst: int, src: int, off: int) -> Instruction:
    return Instruction(Class.LDX | Mode.MEM | size, dst=dst, src=src, off=off)


def st_imm(size: Size, dst: int, off: int, imm: int) -> Instruction:
    return Instruction(Class.ST | Mode.MEM | size, dst=dst, off=off, imm=imm)


def stx(size: Size, dst: int, src: int, off: int) -> Instruction:
    return Instruction(Class.STX | Mode.MEM | size, dst=dst, src=src, off=off)


def atomic_add64(dst: int, src: int, off: int = 0) -> Instruction:
    return Instruction(Class.STX | Mode.ATOMIC | Size.DW, dst=dst, src=src, off=off,
                       imm=AtomicOp.ADD)


def jmp_imm(op: JmpOp, dst: int, imm: int, off: int) -> Instruction:
    return Instruction(Class.JMP | op | Source.K, dst=dst, off=off, imm=imm)


def jmp_reg(op: JmpOp, dst: int, src: int, off: int) -> Instruction:
    return Instruction(Class.JMP | op | Source.X, dst=dst, src=src, off=off)


def call(helper: int) -> Instruction:
    return Instruction(Class.JMP | JmpOp.CALL, imm=helper)


def ld_map(dst: int, imm: int = 0, src: int = PseudoSrc.MAP_FD) -> Instruction:
    return Instruction(LD_IMM64, dst=dst, src=src, imm=imm)


EXIT = Instruction(Class.JMP | JmpOp.EXIT)


def ret(verdict: int) -> list[Instruction]:
    """``return verdict;``"""
    return [mov_imm(0, verdict), EXIT]


def counter_spec(map_name: str = "counters", verdict: int = 2) -> ProgramSpec:
    """XDP: ``counters[0] += 1`` (atomically), then return ``verdict``."""
    insns = [
        ld_map(1),                      # 0: r1 = &counters (patched)
        st_imm(Size.W, 10, -4, 0),      # 1: key = 0
        mov_reg(2, 10),                 # 2
        add_imm(2, -4),                 # 3: r2 = &key
        call(1),                        # 4: map_lookup_elem
        jmp_imm(JmpOp.JEQ, 0, 0, 2),    # 5: if !r0 goto 8
        mov_imm(1, 1),                  # 6
        atomic_add64(0, 1),             # 7: lock *(u64 *)r0 += 1
        mov_imm(0, verdict),            # 8
        EXIT,
    ]
    return ProgramSpec(name="count", type=ProgType.XDP, instructions=insns,
                       map_refs={0: MapRef(map_name)})


def lpm_verdict_spec(map_name: str = "routes", miss: int = 2) -> ProgramSpec:
    """XDP: look up the IPv4 destination of an Ethernet frame in an LPM trie
    ``{u32 prefixlen; be32 addr} -> u32``; return the value found, else ``miss``."""
    insns = [                           # index (slot)
        ldx(Size.W, 2, 1, 0),           # 0 (0): r2 = ctx->data
        ldx(Size.W, 3, 1, 4),           # 1 (1): r3 = ctx->data_end
        mov_reg(4, 2),                  # 2 (2)
        add_imm(4, 34),                 # 3 (3): r4 = data + 14 + 20
        jmp_reg(JmpOp.JGT, 4, 3, 11),   # 4 (4): if r4 > data_end goto miss (slot 16)
        ldx(Size.W, 5, 2, 30),          # 5 (5): r5 = ip->daddr
        st_imm(Size.W, 10, -8, 32),     # 6 (6): key.prefixlen = 32
        stx(Size.W, 10, 5, -4),         # 7 (7): key.addr = daddr
        ld_map(1),                      # 8 (8-9): r1 = &routes
        mov_reg(2, 10),                 # 9 (10)
        add_imm(2, -8),                 # 10 (11): r2 = &key
        call(1),                        # 11 (12): map_lookup_elem
        jmp_imm(JmpOp.JEQ, 0, 0, 2),    # 12 (13): if !r0 goto miss
        ldx(Size.W, 0, 0, 0),           # 13 (14): r0 = *value
        EXIT,                           # 14 (15)
        mov_imm(0, miss),               # 15 (16): miss
        EXIT,                           # 16 (17)
    ]
    return ProgramSpec(name="lpm_verdict", type=ProgType.XDP, instructions=insns,
                       map_refs={8: MapRef(map_name)})


def write_first_byte(value: int, verdict: int = 3) -> list[Instruction]:
    """XDP: ``data[0] = value`` when the packet has a byte; return ``verdict``."""
    return [
        ldx(Size.W, 2, 1, 0),           # r2 = data
        ldx(Size.W, 3, 1, 4),           # r3 = data_end
        mov_reg(4, 2),
        add_imm(4, 1),
        jmp_reg(JmpOp.JGT, 4, 3, 1),    # if data + 1 > data_end goto out
        st_imm(Size.B, 2, 0, value),    # data[0] = value
        mov_imm(0, verdict),            # out:
        EXIT,
    ]


def tail_call_spec(map_name: str = "jumps", index: int = 0, fallthrough: int = 2) -> ProgramSpec:
    """XDP: ``bpf_tail_call(ctx, &jumps, index)``; ``fallthrough`` when the slot is empty."""
    insns = [ld_map(2), mov_imm(3, index), call(12), mov_imm(0, fallthrough), EXIT]
    return ProgramSpec(name="tailcaller", type=ProgType.XDP, instructions=insns,
                       map_refs={0: MapRef(map_name)})


def rejected_spec() -> ProgramSpec:
    """A program the verifier rejects at instruction 2 (load through a scalar), with line
    info so the error can name the source line."""
    insns = [mov_imm(0, 0), mov_imm(1, 1), ldx(Size.W, 0, 1, 0), EXIT]
    lines = [LineInfo(0, "bad.c", 1, 1, "int r = 0;"),
             LineInfo(2, "bad.c", 3, 5, "r = *(int *)1;")]
    return ProgramSpec(name="bad", type=ProgType.XDP, instructions=insns, line_info=lines)


def bpftool(*args: str) -> Any:
    """Run ``bpftool -j ARGS`` (the independent witness) and parse its JSON."""
    out = subprocess.run(["bpftool", "-j", *args], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)

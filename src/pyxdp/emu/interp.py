"""A deliberately simple decode-and-dispatch interpreter: the reference semantics.

It is slow (a few million instructions per second) and written for obviousness, not
speed, so that differential tests can check the translator against it.  It covers the
whole ISA except helper calls and map pseudo-loads, which are the translator's business.
"""

from __future__ import annotations

import struct

from pyxdp.emu import alu
from pyxdp.emu.cfg import analyse
from pyxdp.emu.memory import MEM, Memory, base_of, frame_pointer
from pyxdp.errors import EmulatorError
from pyxdp.isa import AluOp, AtomicOp, Class, Instruction, JmpOp, Mode

M64 = alu.M64
_FMT = {1: "B", 2: "H", 4: "I", 8: "Q"}
_SIZES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}


def _alu(op: int, a: int, b: int, bits: int, off: int) -> int:
    mask = (1 << bits) - 1
    a &= mask
    b &= mask
    if op == AluOp.ADD:
        return (a + b) & mask
    if op == AluOp.SUB:
        return (a - b) & mask
    if op == AluOp.MUL:
        return (a * b) & mask
    if op == AluOp.DIV:
        return alu.sdiv(a, b, bits) if off == 1 else alu.udiv(a, b, bits)
    if op == AluOp.MOD:
        return alu.smod(a, b, bits) if off == 1 else alu.umod(a, b, bits)
    if op == AluOp.OR:
        return a | b
    if op == AluOp.AND:
        return a & b
    if op == AluOp.XOR:
        return a ^ b
    if op == AluOp.LSH:
        return (a << (b & (bits - 1))) & mask
    if op == AluOp.RSH:
        return a >> (b & (bits - 1))
    if op == AluOp.ARSH:
        return alu.arsh(a, b & (bits - 1), bits)
    if op == AluOp.NEG:
        return -a & mask
    if op == AluOp.MOV:
        return alu.sx(b, off) & mask if off else b
    raise EmulatorError(f"bad ALU op {op:#x}")


def _jump(op: int, a: int, b: int, bits: int) -> bool:
    mask = (1 << bits) - 1
    a &= mask
    b &= mask
    sa, sb = alu.sx(a, bits), alu.sx(b, bits)
    return {JmpOp.JEQ: a == b, JmpOp.JNE: a != b, JmpOp.JGT: a > b, JmpOp.JGE: a >= b,
            JmpOp.JLT: a < b, JmpOp.JLE: a <= b, JmpOp.JSET: bool(a & b),
            JmpOp.JSGT: sa > sb, JmpOp.JSGE: sa >= sb, JmpOp.JSLT: sa < sb,
            JmpOp.JSLE: sa <= sb}[JmpOp(op)]


def interpret(insns: list[Instruction], mem: bytes | None = None, budget: int = 1_000_000
              ) -> int:
    """Run ``insns`` with r1 = ``mem`` pointer and r2 = its length; return r0."""
    layout = analyse(insns)
    memory = Memory()
    if mem is not None:
        memory.regions[MEM] = bytearray(mem)
    regs = [0] * 11
    regs[1], regs[2] = (base_of(MEM), len(mem)) if mem is not None else (0, 0)
    regs[10] = frame_pointer(0)
    frames: list[tuple[int, list[int]]] = []
    pc = 0
    steps = 0
    while True:
        steps += 1
        if steps > budget:
            raise EmulatorError("instruction budget exhausted", pc)
        insn = insns[pc]
        cls, op = insn.opcode & 7, insn.opcode & 0xF0
        x = bool(insn.opcode & 8)
        nxt = pc + 1
        if cls in (Class.ALU, Class.ALU64):
            bits = 64 if cls == Class.ALU64 else 32
            if op == AluOp.END:
                width = insn.imm
                v = regs[insn.dst]
                swap = x or cls == Class.ALU64
                regs[insn.dst] = alu.bswap(v, width) if swap else v & ((1 << width) - 1)
            else:
                b = regs[insn.src] if x else insn.imm & M64
                regs[insn.dst] = _alu(op, regs[insn.dst], b, bits, insn.off)
        elif insn.opcode == 0x18:
            regs[insn.dst] = insn.imm & M64
        elif cls in (Class.LDX, Class.ST, Class.STX):
            _memory(memory, insn, regs)
        elif insn.is_exit:
            if not frames:
                return regs[0]
            nxt, saved = frames.pop()
            regs[6:11] = saved
        elif insn.is_call:
            if insn.is_pseudo_call:
                if len(frames) + 1 >= 8:
                    raise EmulatorError("call stack too deep", pc)
                frames.append((nxt, regs[6:11]))
                regs[10] = frame_pointer(len(frames))
                nxt = layout.targets[pc]
            else:
                regs[0] = 0   # helpers are not modelled here
        elif cls in (Class.JMP, Class.JMP32):
            if op == JmpOp.JA:
                nxt = layout.targets[pc]
            else:
                bits = 64 if cls == Class.JMP else 32
                b = regs[insn.src] if x else insn.imm & M64
                if _jump(op, regs[insn.dst], b, bits):
                    nxt = layout.targets[pc]
        pc = nxt


def _memory(memory: Memory, insn: Instruction, regs: list[int]) -> None:
    cls = insn.opcode & 7
    size = _SIZES[insn.opcode & 0x18]
    base = insn.src if cls == Class.LDX else insn.dst
    addr = (regs[base] + insn.off) & M64
    buf, off = memory.locate(addr, size)
    fmt = "<" + _FMT[size]
    if cls == Class.LDX:
        v = struct.unpack_from(fmt, buf, off)[0]
        if insn.mode == Mode.MEMSX:
            v = alu.sx(v, 8 * size) & M64
        regs[insn.dst] = v
        return
    if cls == Class.ST:
        struct.pack_into(fmt, buf, off, insn.imm & ((1 << (8 * size)) - 1))
        return
    mask = (1 << (8 * size)) - 1
    src = regs[insn.src] & mask
    if insn.mode == Mode.MEM:
        struct.pack_into(fmt, buf, off, src)
        return
    old = struct.unpack_from(fmt, buf, off)[0]
    imm = insn.imm
    if imm == AtomicOp.CMPXCHG:
        if old == regs[0] & mask:
            struct.pack_into(fmt, buf, off, src)
        regs[0] = old
        return
    new = {0x00: old + src, 0x40: old | src, 0x50: old & src, 0xA0: old ^ src,
           0xE0: src}[imm & 0xF0] & mask
    struct.pack_into(fmt, buf, off, new)
    if imm & 1:
        regs[insn.src] = old

"""Static checks and control-flow structure of a program, computed once before translation.

The emulator rejects up front what the kernel's verifier would reject for *structural*
reasons (bad opcodes, writes to the read-only frame pointer, arithmetic other than add/sub on
it, jumps outside the program or into the second slot of ``LD_IMM64``, falling off the end),
so the translator can assume a well-formed program and emit fewer run-time checks.
Messages start with "Invalid", like the uBPF/bpf_conformance convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyxdp.errors import EmulatorError
from pyxdp.isa import LD_IMM64, AluOp, CallSrc, Class, Instruction, JmpOp, Mode, PseudoSrc

_ALU = (Class.ALU, Class.ALU64)
_FP_ARITH = (AluOp.ADD, AluOp.SUB, AluOp.MOV)


@dataclass
class Block:
    """A basic block ``[start, end)`` of instruction indexes within one subprogram."""

    start: int
    end: int
    succs: list[int] = field(default_factory=list)   # block start indexes
    preds: int = 0


@dataclass
class Subprog:
    start: int
    end: int
    blocks: dict[int, Block] = field(default_factory=dict)
    has_loop: bool = False
    loop_heads: set[int] = field(default_factory=set)


@dataclass
class Layout:
    insns: list[Instruction]
    slot_of: list[int]
    targets: dict[int, int]          # insn index -> branch / call / func target index
    subprogs: dict[int, Subprog]     # by start index


def invalid(message: str, pc: int, insn: Instruction | None = None) -> EmulatorError:
    return EmulatorError(f"Invalid program: {message}", pc, insn)


def _writes(insn: Instruction) -> list[int]:
    """Registers an instruction writes (for the read-only r10 rule)."""
    cls = insn.opcode & 7
    if cls in _ALU or cls == Class.LDX or insn.opcode == LD_IMM64:
        return [insn.dst]
    if cls == Class.STX and insn.mode == Mode.ATOMIC:
        if insn.imm == 0xF1:
            return [0]
        if insn.imm & 1:
            return [insn.src]
    return []


def _check_insn(pc: int, insn: Instruction) -> None:
    why = insn.problem()
    if why:
        raise invalid(why, pc, insn)
    cls = insn.opcode & 7
    if cls == Class.LD and insn.opcode != LD_IMM64:
        raise invalid("legacy packet access (ABS/IND) is not supported", pc, insn)
    if 10 in _writes(insn):
        raise invalid("r10 (frame pointer) is read-only", pc, insn)
    if cls in _ALU and insn.opcode & 8 and insn.src == 10 and (
            cls != Class.ALU64 or insn.op not in _FP_ARITH or insn.off):
        raise invalid("only 64-bit mov/add/sub may use the frame pointer r10", pc, insn)


def analyse(insns: list[Instruction]) -> Layout:
    """Validate ``insns`` and split them into subprograms and basic blocks."""
    if not insns:
        raise invalid("empty program", 0)
    slot_of: list[int] = []
    slot = 0
    for insn in insns:
        slot_of.append(slot)
        slot += insn.slots
    index_of = {s: i for i, s in enumerate(slot_of)}
    n = len(insns)

    def target(pc: int, rel: int, what: str) -> int:
        t = index_of.get(slot_of[pc] + 1 + rel)
        if t is None:
            raise invalid(f"{what} target {rel:+d} is outside the program or inside lddw",
                          pc, insns[pc])
        return t

    targets: dict[int, int] = {}
    entries = {0}
    for pc, insn in enumerate(insns):
        _check_insn(pc, insn)
        if insn.is_branch:
            targets[pc] = target(pc, insn.branch_offset, "jump")
        elif insn.is_pseudo_call:
            targets[pc] = target(pc, insn.imm, "call")
            entries.add(targets[pc])
        elif insn.is_call and insn.src == CallSrc.KFUNC:
            raise invalid("kfunc calls are not supported", pc, insn)
        elif insn.opcode == LD_IMM64 and insn.src == PseudoSrc.FUNC:
            targets[pc] = target(pc, insn.imm, "function")
            entries.add(targets[pc])
    starts = sorted(entries)
    subprogs: dict[int, Subprog] = {}
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else n
        sub = Subprog(start, end)
        _blocks(insns, targets, sub)
        subprogs[start] = sub
    return Layout(insns, slot_of, targets, subprogs)


def _ends_block(insn: Instruction) -> bool:
    return insn.is_branch or insn.is_exit


def _blocks(insns: list[Instruction], targets: dict[int, int], sub: Subprog) -> None:
    leaders = {sub.start}
    for pc in range(sub.start, sub.end):
        insn = insns[pc]
        if insn.is_branch:
            t = targets[pc]
            if not sub.start <= t < sub.end:
                raise invalid("jump leaves its function", pc, insn)
            leaders.add(t)
        if _ends_block(insn) and pc + 1 < sub.end:
            leaders.add(pc + 1)
    last = insns[sub.end - 1]
    if not (last.is_exit or (last.is_branch and last.op == JmpOp.JA)):
        raise invalid("the last instruction of a function must be exit or ja", sub.end - 1,
                      last)
    order = sorted(leaders)
    for k, start in enumerate(order):
        end = order[k + 1] if k + 1 < len(order) else sub.end
        blk = Block(start, end)
        term = insns[end - 1]
        if term.is_branch:
            blk.succs.append(targets[end - 1])
            if term.op != JmpOp.JA:
                blk.succs.append(end)
        elif not term.is_exit:
            blk.succs.append(end)
        sub.blocks[start] = blk
    for blk in sub.blocks.values():
        for s in blk.succs:
            sub.blocks[s].preds += 1
            if s <= blk.start:
                sub.has_loop = True
                sub.loop_heads.add(s)

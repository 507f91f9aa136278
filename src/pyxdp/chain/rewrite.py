"""Rewrite a loaded-to-be program so that it becomes a stage of a chain: pure, on specs.

A chain is a root program that tail-calls slot 0 of a prog array; stage ``i`` sits in slot
``i`` and, when its verdict is one the chain continues on (libxdp's ``chain_call_actions``:
typically ``XDP_PASS``), tail-calls slot ``i + 1``; an empty slot (the end of the chain)
makes the tail call fall through, and the stage's own verdict is returned.

Any program can be a stage without being rebuilt: :func:`chain_stage` rewrites its
instructions.

* A prologue saves the context pointer (``r1``) in a stack slot below everything the
  program's main function uses (:func:`stack_floor`), since at ``exit`` nothing else still
  holds it.
* Every ``exit`` of the main function (not of its subprograms, whose ``exit`` returns to
  the caller) becomes a jump to one epilogue at the end of the main function: if ``r0`` is
  a continuing verdict, reload ``r1``, ``bpf_tail_call(ctx, chain, next)``, and when that
  returns (empty slot), return the verdict; otherwise return it at once.
* Jumps, bpf-to-bpf calls, callback references (``LD_IMM64`` of a function), map and
  extern references, func/line info and CO-RE relocations are moved with the code.

What cannot be chained is refused with :class:`ChainError`: a program whose stack use
cannot be bounded (stack pointer arithmetic by a register), a stack with no 8 free bytes,
a program that already tail-calls (the chain's depth would not be the stage's to decide),
non-XDP programs.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from pyxdp.abi import ProgType, XdpAction
from pyxdp.errors import PyxdpError
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
    slot_offsets,
)
from pyxdp.spec import FuncInfo, MapRef, ProgramSpec

TAIL_CALL = 12          # bpf_tail_call helper id
STACK_SIZE = 512        # the verifier's per-frame limit (MAX_BPF_STACK)
FP = 10                 # frame pointer register


class ChainError(PyxdpError):
    """A program that cannot be made a chain stage, with the reason."""


# -- small instruction makers ----------------------------------------------------------------
def _ja() -> Instruction:
    return Instruction(Class.JMP | JmpOp.JA)


def _exit() -> Instruction:
    return Instruction(Class.JMP | JmpOp.EXIT)


def _jeq32_imm(reg: int, imm: int) -> Instruction:
    return Instruction(Class.JMP32 | JmpOp.JEQ | Source.K, dst=reg, imm=imm)


def _mov64_reg(dst: int, src: int) -> Instruction:
    return Instruction(Class.ALU64 | AluOp.MOV | Source.X, dst=dst, src=src)


def _mov64_imm(dst: int, imm: int) -> Instruction:
    return Instruction(Class.ALU64 | AluOp.MOV | Source.K, dst=dst, imm=imm)


def _stxdw(base: int, off: int, src: int) -> Instruction:
    return Instruction(Class.STX | Mode.MEM | Size.DW, dst=base, src=src, off=off)


def _ldxdw(dst: int, base: int, off: int) -> Instruction:
    return Instruction(Class.LDX | Mode.MEM | Size.DW, dst=dst, src=base, off=off)


def _ld_map(dst: int) -> Instruction:
    return Instruction(LD_IMM64, dst=dst, src=PseudoSrc.MAP_FD, imm=0)


def _call(helper: int) -> Instruction:
    return Instruction(Class.JMP | JmpOp.CALL, imm=helper)


def _jmp_imm(op: int, reg: int, imm: int, jmp32: bool = False) -> Instruction:
    return Instruction((Class.JMP32 if jmp32 else Class.JMP) | op | Source.K, dst=reg, imm=imm)


def _and64_imm(dst: int, imm: int) -> Instruction:
    return Instruction(Class.ALU64 | AluOp.AND | Source.K, dst=dst, imm=imm)


def _add64_imm(dst: int, imm: int) -> Instruction:
    return Instruction(Class.ALU64 | AluOp.ADD | Source.K, dst=dst, imm=imm)


def _stxw(base: int, off: int, src: int) -> Instruction:
    return Instruction(Class.STX | Mode.MEM | Size.W, dst=base, src=src, off=off)


def _ldxw(dst: int, base: int, off: int) -> Instruction:
    return Instruction(Class.LDX | Mode.MEM | Size.W, dst=dst, src=base, off=off)


# -- capture: the packet and its verdict into a ring buffer ----------------------------------
#: the record a capture writes: u32 verdict, u32 ingress ifindex, u32 frame length,
#: u32 captured length, u64 bpf_ktime_get_ns, then the first captured-length bytes
CAPTURE_HEADER = 24
#: the verdict field of a record written as the packet enters the chain (before any stage)
CAPTURE_BEFORE = 0xFFFFFFFF
HELPER_KTIME = 5
HELPER_PRANDOM = 7
HELPER_RINGBUF_RESERVE = 131
HELPER_RINGBUF_SUBMIT = 132
HELPER_XDP_GET_BUFF_LEN = 188
HELPER_XDP_LOAD_BYTES = 189
XDP_MD_INGRESS_IFINDEX = 12          # offsetof(struct xdp_md, ingress_ifindex)


@dataclass(frozen=True)
class Capture:
    """Where and how much a chain captures: the ring buffer map's name, bytes per packet,
    1-in-``sample`` sampling (a power of two; 1 = every packet), and when: ``after`` (the
    final verdict of each packet) and/or ``before`` (each packet as it enters, before any
    program ran: its record's verdict field is :data:`CAPTURE_BEFORE`)."""

    ring: str
    snaplen: int = 256
    sample: int = 1
    after: bool = True
    before: bool = False

    def __post_init__(self) -> None:
        if not (self.after or self.before):
            raise ChainError("a capture is before the programs, after them, or both")
        if not 1 <= self.snaplen <= 4096:
            raise ChainError(f"snaplen {self.snaplen}: 1 to 4096 bytes")
        if self.sample < 1 or self.sample & (self.sample - 1):
            raise ChainError(f"sample 1 in {self.sample}: a power of two is needed")


def _capture_items(cap: Capture, ctx_off: int, tag: str, resume: bool = False
                   ) -> list[_Item]:
    """Verdict in r6, ctx in the stack slot: write the capture record, then return r6 (or,
    ``resume``, reload r1 = ctx and fall through into the program)."""
    out, done = f"{tag}_out", f"{tag}_submit"
    items = [_Item(_ldxdw(7, FP, ctx_off))]
    if cap.sample > 1:
        items += [_Item(_call(HELPER_PRANDOM)), _Item(_and64_imm(0, cap.sample - 1)),
                  _Item(_jmp_imm(JmpOp.JNE, 0, 0), to_label=out)]
    items += [
        _Item(_ld_map(1), map_ref=MapRef(cap.ring)),
        _Item(_mov64_imm(2, CAPTURE_HEADER + cap.snaplen)),
        _Item(_mov64_imm(3, 0)),
        _Item(_call(HELPER_RINGBUF_RESERVE)),
        _Item(_jmp_imm(JmpOp.JEQ, 0, 0), to_label=out),
        _Item(_mov64_reg(8, 0)),
        _Item(_stxw(8, 0, 6)),                                  # verdict
        _Item(_ldxw(1, 7, XDP_MD_INGRESS_IFINDEX)),
        _Item(_stxw(8, 4, 1)),                                  # ingress ifindex
        _Item(_call(HELPER_KTIME)),
        _Item(_stxdw(8, 16, 0)),                                # time
        _Item(_mov64_reg(1, 7)),
        _Item(_call(HELPER_XDP_GET_BUFF_LEN)),
        _Item(_stxw(8, 8, 0)),                                  # frame length
        _Item(_jmp_imm(JmpOp.JLE, 0, cap.snaplen), to_label=f"{tag}_len"),
        _Item(_mov64_imm(0, cap.snaplen)),
        _Item(_mov64_reg(4, 0), label=f"{tag}_len"),
        _Item(_stxw(8, 12, 4)),                                 # captured length
        _Item(_jmp_imm(JmpOp.JEQ, 4, 0), to_label=done),
        _Item(_mov64_reg(1, 7)),
        _Item(_mov64_imm(2, 0)),
        _Item(_mov64_reg(3, 8)),
        _Item(_add64_imm(3, CAPTURE_HEADER)),
        _Item(_call(HELPER_XDP_LOAD_BYTES)),
        _Item(_mov64_reg(1, 8), label=done),
        _Item(_mov64_imm(2, 0)),
        _Item(_call(HELPER_RINGBUF_SUBMIT)),
    ]
    if resume:
        items.append(_Item(_ldxdw(1, FP, ctx_off), label=out))
    else:
        items += [_Item(_mov64_reg(0, 6), label=out), _Item(_exit())]
    return items


# -- functions and stack ---------------------------------------------------------------------
def _targets(insns: list[Instruction]) -> tuple[list[int], dict[int, int]]:
    """Slot positions, and for every branch/call/function reference the index it targets."""
    slots = slot_offsets(insns)
    index_of = {s: i for i, s in enumerate(slots)}
    out: dict[int, int] = {}
    for i, insn in enumerate(insns):
        if insn.is_branch or insn.is_pseudo_call:
            rel = insn.imm if insn.is_pseudo_call else insn.branch_offset
        elif insn.opcode == LD_IMM64 and insn.src == PseudoSrc.FUNC:
            rel = insn.imm
        else:
            continue
        slot = slots[i] + insn.slots + rel if insn.opcode == LD_IMM64 else slots[i] + 1 + rel
        if slot not in index_of:
            raise ChainError(f"instruction {i} jumps to slot {slot}, which is not the start"
                             " of an instruction")
        out[i] = index_of[slot]
    return slots, out


def function_starts(spec: ProgramSpec) -> list[int]:
    """Instruction indexes where the program's functions start (0 is the main function)."""
    _, targets = _targets(spec.instructions)
    starts = {0}
    for i, t in targets.items():
        insn = spec.instructions[i]
        if insn.is_pseudo_call or insn.opcode == LD_IMM64:
            starts.add(t)
    slots = slot_offsets(spec.instructions)
    index_of = {s: i for i, s in enumerate(slots)}
    starts.update(index_of[f.insn_off] for f in spec.func_info if f.insn_off in index_of)
    return sorted(starts)


def stack_floor(insns: list[Instruction], start: int = 0, end: int | None = None) -> int:
    """The lowest frame-pointer offset (<= 0) the function ``insns[start:end]`` touches or
    derives a pointer to, over every path: a forward data flow over registers and spill
    slots holding ``r10 + constant``.  Raises :class:`ChainError` when a stack pointer is
    changed in a way that cannot be bounded (added a register, say)."""
    end = len(insns) if end is None else end
    _, targets = _targets(insns)
    # state: register -> lowest offset from r10 it may hold; spilled stack slots likewise
    State = tuple[frozenset[tuple[int, int]], frozenset[tuple[int, int]]]
    entry: State = (frozenset({(FP, 0)}), frozenset())
    states: dict[int, State] = {start: entry}
    work = [start]
    floor = 0

    def merge(at: int, st: State) -> None:
        old = states.get(at)
        if old is None:
            states[at] = st
            work.append(at)
            return
        regs = dict(old[0])
        for r, v in st[0]:
            regs[r] = min(v, regs.get(r, v))
        spills = dict(old[1])
        for s, v in st[1]:
            spills[s] = min(v, spills.get(s, v))
        new: State = (frozenset(regs.items()), frozenset(spills.items()))
        if new != old:
            states[at] = new
            work.append(at)

    while work:
        i = work.pop()
        if not start <= i < end:
            continue
        regs = dict(states[i][0])
        spills = dict(states[i][1])
        insn = insns[i]
        cls = insn.opcode & 0x07
        for v in regs.values():
            floor = min(floor, v)
        if cls in (Class.LDX, Class.STX, Class.ST):
            base = insn.src if cls == Class.LDX else insn.dst
            if base in regs:
                floor = min(floor, regs[base] + insn.off)
            if cls == Class.LDX:
                val = spills.get(regs[base] + insn.off) if base in regs else None
                regs.pop(insn.dst, None)
                if val is not None and insn.opcode & 0x18 == Size.DW:
                    regs[insn.dst] = val
            elif cls == Class.STX and base in regs and insn.opcode & 0xE0 == Mode.MEM:
                slot = regs[base] + insn.off
                spills.pop(slot, None)
                if insn.src in regs and insn.opcode & 0x18 == Size.DW:
                    spills[slot] = regs[insn.src]
            elif cls == Class.STX and insn.opcode & 0xE0 == Mode.ATOMIC and insn.imm & 1:
                regs.pop(insn.src if insn.imm != 0xF1 else 0, None)   # fetch / cmpxchg
        elif cls in (Class.ALU64, Class.ALU):
            op = insn.opcode & 0xF0
            src_x = insn.opcode & Source.X
            if cls == Class.ALU64 and op == AluOp.MOV and src_x and insn.src in regs:
                regs[insn.dst] = regs[insn.src]
            elif insn.dst in regs and cls == Class.ALU64 and op in (AluOp.ADD, AluOp.SUB) \
                    and not src_x:
                regs[insn.dst] += insn.imm if op == AluOp.ADD else -insn.imm
            elif insn.dst in regs and op != AluOp.MOV:
                raise ChainError(f"instruction {i}: stack pointer r{insn.dst} changed by"
                                 f" {insn!r}: the program's stack use cannot be bounded")
            else:
                regs.pop(insn.dst, None)
        elif cls == Class.LD and insn.opcode == LD_IMM64:
            regs.pop(insn.dst, None)
        elif insn.is_call:
            for r in (0, 1, 2, 3, 4, 5):
                regs.pop(r, None)
        st: State = (frozenset(regs.items()), frozenset(spills.items()))
        if insn.is_exit:
            continue
        if i in targets and insn.is_branch:
            merge(targets[i], st)
            if insn.opcode in (Class.JMP | JmpOp.JA, Class.JMP32 | JmpOp.JA):
                continue
        merge(i + 1, st)
    return floor


# -- re-layout -------------------------------------------------------------------------------
@dataclass
class _Item:
    insn: Instruction
    orig: int | None = None        # the original instruction this is (or replaces)
    to_orig: int | None = None     # branch target: an original instruction
    to_label: str | None = None    # branch target: a label of inserted code
    label: str | None = None
    map_ref: MapRef | None = None


def _relayout(spec: ProgramSpec, items: list[_Item]) -> ProgramSpec:
    """A copy of ``spec`` whose instructions are ``items``, with every offset moved."""
    old_slots = slot_offsets(spec.instructions)
    old_index = {s: i for i, s in enumerate(old_slots)}
    insns = [it.insn for it in items]
    new_slots = slot_offsets(insns)
    where = {it.orig: n for n, it in enumerate(items) if it.orig is not None}
    labels = {it.label: n for n, it in enumerate(items) if it.label is not None}
    out: list[Instruction] = []
    for n, it in enumerate(items):
        insn = it.insn
        target = where[it.to_orig] if it.to_orig is not None else (
            labels[it.to_label] if it.to_label is not None else None)
        if target is not None:
            rel = new_slots[target] - (new_slots[n] + insn.slots)
            if insn.opcode == LD_IMM64:
                insn = dataclasses.replace(insn, imm=rel)
            elif insn.is_pseudo_call:
                insn = Instruction(insn.opcode, insn.dst, insn.src, insn.off, rel)
            else:
                if insn.opcode != Class.JMP32 | JmpOp.JA and not -(1 << 15) <= rel < 1 << 15:
                    raise ChainError("the rewritten program has a jump beyond 32767"
                                     " instructions")
                insn = insn.with_branch_offset(rel)
        out.append(insn)

    def slot(old: int) -> int:
        """New slot of the instruction at old slot ``old`` (slot 0 stays 0: the prologue
        belongs to the instruction it precedes, for func and line info)."""
        return 0 if old == 0 else new_slots[where[old_index[old]]]

    new = copy.copy(spec)
    new.instructions = out
    new.map_refs = {where[i]: r for i, r in spec.map_refs.items()}
    new.map_refs.update({n: it.map_ref for n, it in enumerate(items) if it.map_ref})
    new.extern_refs = {where[i]: r for i, r in spec.extern_refs.items()}
    new.func_info = [FuncInfo(slot(f.insn_off), f.type_id, f.name) for f in spec.func_info]
    new.line_info = [dataclasses.replace(li, insn_off=slot(li.insn_off))
                     for li in spec.line_info]
    new.core_relos = [dataclasses.replace(c, insn_off=slot(c.insn_off))
                      for c in spec.core_relos]
    return new


def _original_items(spec: ProgramSpec) -> list[_Item]:
    _, targets = _targets(spec.instructions)
    return [_Item(insn, orig=i, to_orig=targets.get(i))
            for i, insn in enumerate(spec.instructions)]


# -- the stage rewrite -----------------------------------------------------------------------
def uses_tail_calls(spec: ProgramSpec) -> bool:
    return any(i.is_helper_call and i.imm == TAIL_CALL for i in spec.instructions)


def chain_stage(spec: ProgramSpec, chain_map: str, next_slot: int,
                continue_on: Iterable[int] = (XdpAction.PASS,),
                capture: Capture | None = None) -> ProgramSpec:
    """``spec`` rewritten as a chain stage: a continuing verdict tail-calls slot
    ``next_slot`` of the prog array ``chain_map`` (a map name the object must provide).

    With ``capture``, a verdict that ends the chain here (a non-continuing one, or a
    continuing one with no next stage) is also written with the packet into the ring
    buffer ``capture.ring`` (see :data:`CAPTURE_HEADER`); a capture of ``before`` only
    leaves stages alone (the root writes those records)."""
    if capture is not None and not capture.after:
        capture = None
    if spec.type != ProgType.XDP:
        raise ChainError(f"program {spec.name!r} is {spec.type.name}, a chain takes XDP"
                         " programs only")
    if uses_tail_calls(spec):
        raise ChainError(f"program {spec.name!r} already uses bpf_tail_call: chaining it"
                         " would add the chain's tail calls to its own (the kernel allows 33"
                         " in all), and its prog arrays are not the chain's; chain the"
                         " programs it calls instead")
    verdicts = sorted({int(v) for v in continue_on})
    bad = [v for v in verdicts if v not in {int(a) for a in XdpAction}]
    if bad:
        raise ChainError(f"continue_on: {bad} are not XDP verdicts")
    if not 0 <= next_slot < 1 << 31:
        raise ChainError(f"next slot {next_slot} is out of range")
    starts = function_starts(spec)
    main_end = starts[1] if len(starts) > 1 else len(spec.instructions)
    floor = stack_floor(spec.instructions, 0, main_end)
    ctx_off = (floor // 8) * 8 - 8            # 8-aligned, below the lowest byte in use
    if ctx_off < -STACK_SIZE:
        raise ChainError(f"program {spec.name!r} uses {-floor} bytes of stack: no 8 bytes"
                         " left to keep the context in for the chain's tail call")
    items = _original_items(spec)
    for it in items[:main_end]:
        if it.insn.is_exit:
            it.insn, it.to_label = _ja(), "pyxdp_epilogue"
    prologue = [_Item(_stxdw(FP, ctx_off, 1))]
    epilogue = [_Item(_jeq32_imm(0, v), to_label="pyxdp_tail") for v in verdicts]
    if capture is None:
        epilogue.append(_Item(_exit()))
    else:
        epilogue.append(_Item(_mov64_reg(6, 0)))
        epilogue += _capture_items(capture, ctx_off, "pyxdp_cap_end")
    epilogue[0].label = "pyxdp_epilogue"
    tail = [
        _Item(_mov64_reg(6, 0), label="pyxdp_tail"),
        _Item(_ldxdw(1, FP, ctx_off)),
        _Item(_ld_map(2), map_ref=MapRef(chain_map)),
        _Item(_mov64_imm(3, next_slot)),
        _Item(_call(TAIL_CALL)),
        _Item(_mov64_reg(0, 6)),
    ] if verdicts else []
    if tail:
        tail += ([_Item(_exit())] if capture is None
                 else _capture_items(capture, ctx_off, "pyxdp_cap_last"))
    laid = prologue + items[:main_end] + epilogue + tail + items[main_end:]
    return _relayout(spec, laid)


def capture_program(spec: ProgramSpec, capture: Capture, ctx_off: int = -8) -> ProgramSpec:
    """``spec`` (a program that keeps nothing on the stack below ``ctx_off``) with every
    main-function exit replaced by the capture of its verdict (``capture.after``) and/or
    the packet captured on entry (``capture.before``): used for the root, whose
    fall-through (an empty chain) is a verdict too."""
    starts = function_starts(spec)
    main_end = starts[1] if len(starts) > 1 else len(spec.instructions)
    floor = stack_floor(spec.instructions, 0, main_end)
    if floor < ctx_off + 8:
        raise ChainError(f"program {spec.name!r} uses the stack below {ctx_off}")
    items = _original_items(spec)
    entry: list[_Item] = [_Item(_stxdw(FP, ctx_off, 1))]
    if capture.before:
        entry += [_Item(_mov64_imm(6, -1)),           # the u32 store keeps 0xFFFFFFFF
                  *_capture_items(capture, ctx_off, "pyxdp_cap_in", resume=True)]
    if not capture.after:
        return _relayout(spec, [*entry, *items])
    for it in items[:main_end]:
        if it.insn.is_exit:
            it.insn, it.to_label = _ja(), "pyxdp_capture"
    laid = [*entry, *items[:main_end],
            _Item(_mov64_reg(6, 0), label="pyxdp_capture"),
            *_capture_items(capture, ctx_off, "pyxdp_cap_root"), *items[main_end:]]
    return _relayout(spec, laid)


def replace_function(spec: ProgramSpec, name: str, body: list[Instruction]) -> ProgramSpec:
    """``spec`` with the body of its subprogram ``name`` (found by its BTF func info)
    replaced by ``body``: self-contained instructions (their jumps stay inside, they end
    in ``exit``) that take what the old function took and return a scalar.  Calls into
    the function land on the new body; the function keeps its BTF type and its first line
    info; what the old body referenced (maps, line info, relocations) goes with it."""
    slots = slot_offsets(spec.instructions)
    index_of = {s: i for i, s in enumerate(slots)}
    named = [f for f in spec.func_info if f.name == name]
    if not named or named[0].insn_off not in index_of or named[0].insn_off == 0:
        raise ChainError(f"program {spec.name!r} has no subprogram {name!r}")
    if not body or not body[-1].is_exit:
        raise ChainError(f"the new body of {name!r} must end in exit")
    start = index_of[named[0].insn_off]
    starts = function_starts(spec)
    nxt = [s for s in starts if s > start]
    end = nxt[0] if nxt else len(spec.instructions)

    def outside(i: int) -> bool:
        return not start < i < end

    kept = copy.copy(spec)
    kept.map_refs = {i: r for i, r in spec.map_refs.items() if outside(i) and i != start}
    kept.extern_refs = {i: r for i, r in spec.extern_refs.items()
                        if outside(i) and i != start}
    kept.line_info = [li for li in spec.line_info
                      if li.insn_off not in index_of or outside(index_of[li.insn_off])]
    kept.core_relos = [c for c in spec.core_relos
                       if c.insn_off not in index_of or outside(index_of[c.insn_off])]
    items = _original_items(kept)
    new = [_Item(insn) for insn in body]
    new[0].orig = start                  # calls and func info of the old start land here
    laid = items[:start] + new + items[end:]
    for it in laid:
        if it.to_orig is not None and not outside(it.to_orig):
            raise ChainError(f"code outside {name!r} jumps into its body")
    return _relayout(kept, laid)


__all__ = ["CAPTURE_BEFORE", "CAPTURE_HEADER", "Capture", "ChainError", "capture_program",
           "chain_stage",
           "function_starts", "replace_function", "stack_floor", "uses_tail_calls"]

"""Packet bounds the translator can prove, and packet loads it may therefore hoist.

XDP parsers check ``data + n > data_end`` before reading the first ``n`` bytes; the
verifier insists on it.  Inside the XDP entry function (``x0``) ``data_end`` is exactly the
end of the packet buffer ``P`` until the first helper call, so on the path where such a
check passed the translator *knows* that those bytes exist.  A load inside a proven range
cannot fault, so it may be executed earlier than written: the first such load also reads
every later load through the same base, in one ``struct`` unpack, into temporaries that the
later loads merely copy.  Anything that could change the packet (a store outside the
stack, a call) or the base register forgets the temporaries, and so does every point
where per-path knowledge is forgotten.  Faults are unaffected: only loads that cannot
fault are hoisted, and every other access keeps its buffer's bounds check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyxdp.isa import Class, Instruction, JmpOp, Mode, Size

if TYPE_CHECKING:
    from pyxdp.emu.codegen import InsnGen

_NBYTES = {Size.B: 1, Size.H: 2, Size.W: 4, Size.DW: 8}
_FMT = {1: "B", 2: "H", 4: "I", 8: "Q"}
PREFETCH_SPAN = 64    # widest hoisted read
# (op, taken) -> which operand is the smaller one when the relation holds
_LE = {(JmpOp.JGT, False): 0, (JmpOp.JGE, False): 0, (JmpOp.JLE, True): 0,
       (JmpOp.JLT, True): 0, (JmpOp.JLT, False): 1, (JmpOp.JLE, False): 1,
       (JmpOp.JGE, True): 1, (JmpOp.JGT, True): 1}


def assume(gen: InsnGen, term: Instruction, taken: bool) -> None:
    """Record what ``term`` (a conditional jump) being ``taken`` or not proves about
    packet bounds: ``ptr <= data_end`` where ``ptr`` is a constant packet address or a
    register ``rB + k`` (so ``k`` bytes are readable from ``rB``)."""
    if term.opcode & 7 != Class.JMP or not term.opcode & 8:
        return
    side = _LE.get((JmpOp(term.op), taken))
    if side is None:
        return
    small, big = (term.dst, term.src) if side == 0 else (term.src, term.dst)
    if big not in gen.ends:
        return
    c, known = gen.const.get(small), gen.known.get(small)
    if c is not None and known is not None and known[0] == "P":
        gen.plen = max(gen.plen, c & 0x7FFFFFFF)
    elif small in gen.derived:
        base, k = gen.derived[small]
        if base in gen.known and gen.known[base][0] == "P":
            gen.safe[base] = max(gen.safe.get(base, 0), k)


def readable(gen: InsnGen, base: int, off: int, size: int) -> bool:
    """Whether ``[base + off, +size)`` is proven to be inside ``P``."""
    known = gen.known.get(base)
    if known is None or known[0] != "P" or off < 0:
        return False
    c = gen.const.get(base)
    if c is not None:
        return (c & 0x7FFFFFFF) + off + size <= gen.plen
    return off + size <= gen.safe.get(base, 0)


def _loads_ahead(gen: InsnGen, base: int, pc: int, insns: Sequence[Instruction], end: int
                 ) -> list[Instruction]:
    """Loads through ``base`` from ``pc`` on along the fall-through path, up to the first
    instruction that could change the packet or the base register."""
    out: list[Instruction] = []
    for i in range(pc, end):
        insn = insns[i]
        cls = insn.opcode & 7
        if cls in (Class.ST, Class.STX) and insn.dst != 10:
            break
        if insn.opcode in (0x85, 0x8D) or insn.is_exit or (
                insn.is_branch and insn.op == JmpOp.JA):
            break
        if cls == Class.LDX and insn.src == base and insn.mode == Mode.MEM and (
                readable(gen, base, insn.off, _NBYTES[insn.size])
                and (insn.size == Size.H or not gen._swapped(
                    insn, insns[i + 1] if i + 1 < end else None))):
            out.append(insn)
        if _writes(insn, base):
            break
    return out


def _writes(insn: Instruction, r: int) -> bool:
    cls = insn.opcode & 7
    if cls in (Class.ALU, Class.ALU64, Class.LDX) or insn.opcode == 0x18:
        return insn.dst == r
    if cls == Class.STX and insn.mode == Mode.ATOMIC:
        return r == (0 if insn.imm == 0xF1 else insn.src if insn.imm & 1 else -1)
    return False


def prefetch(gen: InsnGen, pc: int, insns: Sequence[Instruction], end: int) -> int:
    """Emit the load at ``pc`` from ``gen.pre`` or, when it is proven readable, together
    with the later loads from the same base; returns the instructions consumed (a load
    followed by its byte swap is two), 0 when neither applies."""
    insn = insns[pc]
    size = _NBYTES[insn.size]
    if insn.mode != Mode.MEM or not readable(gen, insn.src, insn.off, size):
        return 0
    swap = gen._swapped(insn, insns[pc + 1] if pc + 1 < end else None)
    buf, off = gen._loc(insn.src)
    key = _key(buf, off, insn.off, size)
    d = insn.dst
    if key in gen.pre:
        t = gen.pre[key]
        # a hoisted u16 in network order: swap the little-endian value read ahead
        gen._set(d, f"(({t} & 0xff) << 8) | ({t} >> 8)" if swap else t,
                 bound=(1 << (8 * size)) - 1)
        return 2 if swap else 1
    if swap:
        return 0
    group: dict[tuple[int, int], int] = {}     # (offset, size) -> destination or -1
    taken: list[tuple[int, int]] = []
    for ld in [insn, *_loads_ahead(gen, insn.src, pc + 1, insns, end)]:
        span = (ld.off, _NBYTES[ld.size])
        if span in group or any(a < span[0] + span[1] and span[0] < a + n for a, n in taken):
            continue
        lo = min([span[0], *(a for a, _ in taken)])
        hi = max([span[0] + span[1], *(a + n for a, n in taken)])
        if hi - lo > PREFETCH_SPAN:
            continue
        group[span] = d if ld is insn else -1
        taken.append(span)
    if len(group) < 2:
        return 0
    spans = sorted(group)
    fmt, at = "<", spans[0][0]
    names = []
    for o, n in spans:
        fmt += "x" * (o - at) + _FMT[n]
        at = o + n
        names.append(f"r{d}" if group[(o, n)] == d else _temp(buf, off, o))
    un = gen.structs.setdefault(fmt, f"UN{len(gen.structs)}")
    start = off if not spans[0][0] else (
        str(int(off) + spans[0][0]) if off.isdigit() else f"{off} + {spans[0][0]}")
    gen.emit(f"{', '.join(names)} = {un}({buf}, {start})")
    gen._mark(d, bound=(1 << (8 * size)) - 1)
    for o, n in spans:
        if group[(o, n)] != d:
            gen.pre[_key(buf, off, o, n)] = _temp(buf, off, o)
    return 1


def _key(buf: str, off: str, ioff: int, size: int) -> tuple[str, str, int, int]:
    if off.isdigit():
        return (buf, "", int(off) + ioff, size)
    return (buf, off, ioff, size)


def _temp(buf: str, off: str, ioff: int) -> str:
    at = int(off) + ioff if off.isdigit() else ioff
    return f"q{'' if off.isdigit() else off}_{at}"

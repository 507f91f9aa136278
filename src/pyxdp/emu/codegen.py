"""Python source for single eBPF instructions, with a little per-block knowledge.

Registers are Python locals ``r0``..``r10`` holding unsigned 64-bit ints.  To spend as few
bytecodes as possible per instruction, a register may be left *dirty* (correct modulo 2**64
but not normalised, possibly negative or wide) after add/sub/shift-left/neg/or/xor, because
those operations commute with reduction modulo 2**64.  Anything that needs the real value
(comparisons, right shifts, division, memory addresses, stores, calls, exit) first cleans it
with one ``& M64``.  Upper bounds of clean registers (after narrow loads, 32-bit ops,
constants) let an ``add`` skip its mask entirely when it cannot overflow.  All of this state
is per basic block: every block starts with everything clean and unknown.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from pyxdp.emu.cfg import invalid
from pyxdp.emu.memory import STACK_SIZE
from pyxdp.isa import LD_IMM64, AluOp, AtomicOp, Class, Instruction, JmpOp, Mode, Size

M64 = (1 << 64) - 1
M32 = 0xFFFFFFFF
H64 = 1 << 63
MASK = f"{(1 << 31) - 1:#x}"
_NBYTES = {Size.B: 1, Size.H: 2, Size.W: 4, Size.DW: 8}
_CMP = {JmpOp.JEQ: "==", JmpOp.JNE: "!=", JmpOp.JGT: ">", JmpOp.JGE: ">=", JmpOp.JLT: "<",
        JmpOp.JLE: "<=", JmpOp.JSGT: ">", JmpOp.JSGE: ">=", JmpOp.JSLT: "<", JmpOp.JSLE: "<="}
_SIGNED = {JmpOp.JSGT, JmpOp.JSGE, JmpOp.JSLT, JmpOp.JSLE}
_CALLBACK_HELPERS = {164, 181}   # for_each_map_elem, loop: need the caller's depth
_FMT = {1: "B", 2: "H", 4: "I", 8: "Q"}
MERGE_SPAN = 64     # widest byte span one merged load may cover
# ALU64 ops with an immediate that may absorb a preceding ``mov dst, src`` (fused)
_FUSABLE = {AluOp.ADD, AluOp.SUB, AluOp.AND, AluOp.OR, AluOp.XOR, AluOp.LSH, AluOp.RSH}
_INLINE_ATOMICS = {AtomicOp.ADD: "+", AtomicOp.OR: "|", AtomicOp.AND: "&", AtomicOp.XOR: "^"}
_INLINE_ATOMIC_IMMS = {op | fetch for op in _INLINE_ATOMICS for fetch in (0, 1)}

# a merged load: (pc, byte offset relative to the base register, size) of each member
MergedLoad = tuple[int, tuple[tuple[int, int, int], ...]]


def _s64(imm: int) -> int:
    return imm & M64


class InsnGen:
    """Emits the statements of one instruction; ``emit(line)`` appends one source line."""

    def __init__(self, emit: Callable[[str], None], resolve_ld: Callable[[int], int],
                 fast_lookup: Callable[[int], str | None],
                 fast_key: Callable[[int], tuple[str, int] | None] = lambda _: None,
                 on_merge: Callable[[int, MergedLoad], None] = lambda *_: None) -> None:
        self.emit = emit
        self.resolve_ld = resolve_ld
        self.fast_lookup = fast_lookup
        self.fast_key = fast_key
        self.on_merge = on_merge
        self.structs: dict[str, str] = {}    # struct format -> env name (merged loads)
        self.packers: dict[str, str] = {}    # struct format -> env name (merged atomics)
        self._lhs: str | None = None         # left operand replacing r<dst> (fused mov)
        self.reset()

    # -- register state ------------------------------------------------------------------
    def reset(self) -> None:
        self.dirty: set[int] = set()
        self.bound: dict[int, int] = {10: 1 << 40}   # r10: a stack address
        self.const: dict[int, int] = dict(self.fixed)
        self.cached: set[int] = set()   # registers whose region is in g<r>/o<r>

    fixed: dict[int, int] = {}   # constants true for the whole function (r10 in main)

    def snapshot(self) -> tuple[dict[int, int], dict[int, int], set[int]]:
        return dict(self.bound), dict(self.const), set(self.cached)

    def restore(self, snap: tuple[dict[int, int], dict[int, int], set[int]]) -> None:
        self.dirty = set()
        self.bound, self.const, self.cached = dict(snap[0]), dict(snap[1]), set(snap[2])
        self.bound[10] = 1 << 40

    def use(self, r: int) -> str:
        if r in self.dirty:
            self.emit(f"r{r} &= {M64:#x}")
            self.dirty.discard(r)
        return f"r{r}"

    def flush(self) -> None:
        for r in sorted(self.dirty):
            self.emit(f"r{r} &= {M64:#x}")
        self.dirty.clear()

    def _set(self, r: int, expr: str, *, dirty: bool = False, bound: int = M64,
              const: int | None = None) -> None:
        self.emit(f"r{r} = {expr}")
        self._mark(r, dirty=dirty, bound=bound, const=const)

    def _mark(self, r: int, *, dirty: bool = False, bound: int = M64,
              const: int | None = None) -> None:
        self.cached.discard(r)
        if dirty:
            self.dirty.add(r)
            self.bound.pop(r, None)
        else:
            self.dirty.discard(r)
            self.bound[r] = bound
        if const is None:
            self.const.pop(r, None)
        else:
            self.const[r] = const

    def _b(self, r: int) -> int | None:
        """Upper bound of a clean register, None when dirty."""
        return None if r in self.dirty else self.bound.get(r, M64)

    # -- dispatch ------------------------------------------------------------------------
    def gen(self, pc: int, insn: Instruction, insns: Sequence[Instruction], last: int) -> int:
        """Emit ``insn`` (at ``insns[pc]``; the block's straight-line part ends before
        ``last``); returns how many instructions were consumed (more than one when fused)."""
        cls = insn.opcode & 7
        nxt = insns[pc + 1] if pc + 1 < last else None
        if cls == Class.ALU64:
            if nxt is not None and self._fusable_mov(insn, nxt):
                # ``rd = rs; rd op= imm`` -> ``rd = rs op imm``: one statement instead of two
                self._mark(insn.dst, bound=self.bound.get(insn.src, M64))
                self._lhs = f"r{insn.src}"
                try:
                    self.alu64(pc + 1, nxt)
                finally:
                    self._lhs = None
                return 2
            self.alu64(pc, insn)
        elif cls == Class.ALU:
            self.alu32(pc, insn)
        elif cls == Class.LDX:
            merged = self.load_group(pc, insns, last)
            return merged or self.load(pc, insn, nxt)
        elif cls in (Class.ST, Class.STX):
            merged = self.atomic_group(pc, insns, last)
            if merged:
                return merged
            self.store(pc, insn)
        elif insn.opcode == LD_IMM64:
            value = self.resolve_ld(pc) & M64
            self._set(insn.dst, f"{value:#x}", bound=value, const=value)
        elif insn.opcode in (0x85, 0x8D):   # call, callx
            self.call(pc, insn)
        else:  # pragma: no cover - cfg.analyse rejects everything else
            raise invalid(f"cannot translate opcode {insn.opcode:#04x}", pc, insn)
        return 1

    def _fusable_mov(self, insn: Instruction, nxt: Instruction) -> bool:
        s, d = insn.src, insn.dst
        return (insn.opcode == Class.ALU64 | AluOp.MOV | 8 and not insn.off and s != d
                and nxt.opcode & 0x0F == Class.ALU64 and nxt.op in _FUSABLE
                and nxt.dst == d and s not in self.dirty and s not in self.const
                and d not in self.const)

    # -- ALU -----------------------------------------------------------------------------
    def alu64(self, pc: int, insn: Instruction) -> None:
        op, d, x = insn.op, insn.dst, bool(insn.opcode & 8)
        rd = self._lhs or f"r{d}"
        c = _s64(insn.imm)
        src = f"r{insn.src}" if x else f"{c:#x}"
        if x and insn.src in self.const and op not in (AluOp.DIV, AluOp.MOD, AluOp.MOV):
            src = f"{self.const[insn.src]:#x}"   # a known constant: no local load
        bs = self._b(insn.src) if x else c
        bd = self._b(d)
        if op == AluOp.MOV:
            if not x:
                self._set(d, f"{c:#x}", bound=c, const=c)
            elif insn.off:
                w = insn.off
                self._set(d, f"((({src} & {(1 << w) - 1:#x}) ^ {1 << (w - 1):#x})"
                             f" - {1 << (w - 1):#x}) & {M64:#x}")
            elif insn.src != d:
                self.emit(f"{rd} = {src}")
                if insn.src in self.dirty:
                    self._mark(d, dirty=True)
                else:
                    self._mark(d, bound=self.bound.get(insn.src, M64),
                               const=self.const.get(insn.src))
        elif op in (AluOp.ADD, AluOp.SUB) and not x and d in self.const:
            v = (self.const[d] + (insn.imm if op == AluOp.ADD else -insn.imm)) & M64
            self._set(d, f"{v:#x}", bound=v, const=v)
        elif op == AluOp.ADD:
            if not x and insn.imm < 0:
                self._set(d, f"{rd} - {-insn.imm}", dirty=True)
            elif bd is not None and bs is not None and bd + bs <= M64:
                self._set(d, f"{rd} + {src}", bound=bd + bs)
            else:
                self._set(d, f"{rd} + {src}", dirty=True)
        elif op == AluOp.SUB:
            expr = f"{rd} + {-insn.imm}" if not x and insn.imm < 0 else (
                f"{rd} - {src if x else insn.imm}")
            self._set(d, expr, dirty=True)
        elif op == AluOp.MUL:
            if bd is not None and bs is not None and bd * bs <= M64:
                self._set(d, f"{rd} * {src}", bound=bd * bs)
            else:
                self._set(d, f"({rd} * {src}) & {M64:#x}")
        elif op in (AluOp.DIV, AluOp.MOD):
            self._divmod64(insn, d, x, c)
        elif op in (AluOp.OR, AluOp.XOR):
            sym = "|" if op == AluOp.OR else "^"
            if bd is not None and bs is not None:
                self._set(d, f"{rd} {sym} {src}", bound=(1 << max(bd, bs).bit_length()) - 1)
            else:
                self._set(d, f"{rd} {sym} {src}", dirty=True)
        elif op == AluOp.AND:
            if bs is not None:
                self._set(d, f"{rd} & {src}", bound=bs if bd is None else min(bd, bs))
            elif bd is not None:
                self._set(d, f"{rd} & {src}", bound=bd)
            else:
                self._set(d, f"({rd} & {src}) & {M64:#x}")
        elif op == AluOp.LSH:
            n = f"({src} & 63)" if x else str(c & 63)
            if not x and bd is not None and bd << (c & 63) <= M64:
                self._set(d, f"{rd} << {n}", bound=bd << (c & 63))
            else:
                self._set(d, f"{rd} << {n}", dirty=True)
        elif op == AluOp.RSH:
            a = self._lhs or self.use(d)
            if x:
                self._set(d, f"{a} >> ({src} & 63)", bound=bd if bd is not None else M64)
            else:
                self._set(d, f"{a} >> {c & 63}", bound=(bd if bd is not None else M64)
                          >> (c & 63))
        elif op == AluOp.ARSH:
            a = self.use(d)
            n = f"({src} & 63)" if x else str(c & 63)
            self._set(d, f"((({a} ^ {H64:#x}) - {H64:#x}) >> {n}) & {M64:#x}")
        elif op == AluOp.NEG:
            self._set(d, f"-{rd}", dirty=True)
        elif op == AluOp.END:
            self._swap(d, insn.imm)
        else:  # pragma: no cover
            raise invalid(f"unknown ALU64 op {op:#x}", pc, insn)

    def _divmod64(self, insn: Instruction, d: int, x: bool, c: int) -> None:
        a = self.use(d)
        signed = insn.off == 1
        is_div = insn.op == AluOp.DIV
        if x:
            s = self.use(insn.src)
        if signed:
            fn = "SDIV" if is_div else "SMOD"
            self._set(d, f"{fn}({a}, {s if x else hex(c)}, 64)")
        elif not x:
            if c == 0:
                if is_div:
                    self._set(d, "0", bound=0, const=0)
            else:
                self._set(d, f"{a} {'//' if is_div else '%'} {c:#x}")
        elif is_div:
            self._set(d, f"{a} // {s} if {s} else 0")
        else:
            self._set(d, f"{a} % {s} if {s} else {a}")

    def _swap(self, d: int, width: int) -> None:
        rd = f"r{d}"
        if width == 16:
            self._set(d, f"(({rd} & 0xff) << 8) | (({rd} >> 8) & 0xff)", bound=0xFFFF)
        elif width == 32:
            self._set(d, f"(({rd} & 0xff) << 24) | (({rd} & 0xff00) << 8) | (({rd} >> 8)"
                         f" & 0xff00) | (({rd} >> 24) & 0xff)", bound=M32)
        else:
            self._set(d, f"SW64({self.use(d)})")

    def _le(self, d: int, width: int) -> None:
        if width == 64:
            self.use(d)
        else:
            mask = (1 << width) - 1
            self._set(d, f"r{d} & {mask:#x}", bound=mask)

    def alu32(self, pc: int, insn: Instruction) -> None:
        op, d, x = insn.op, insn.dst, bool(insn.opcode & 8)
        rd = f"r{d}"
        c = insn.imm & M32
        src = f"r{insn.src}" if x else f"{c:#x}"
        m = f"{M32:#x}"
        if op == AluOp.MOV:
            if not x:
                self._set(d, f"{c:#x}", bound=c, const=c)
            elif insn.off:
                w = insn.off
                self._set(d, f"((({src} & {(1 << w) - 1:#x}) ^ {1 << (w - 1):#x})"
                             f" - {1 << (w - 1):#x}) & {m}", bound=M32)
            else:
                bs = self._b(insn.src)
                expr = src if bs is not None and bs <= M32 else f"{src} & {m}"
                self._set(d, expr, bound=min(bs if bs is not None else M32, M32))
        elif op in (AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.OR, AluOp.XOR):
            sym = {AluOp.ADD: "+", AluOp.SUB: "-", AluOp.MUL: "*", AluOp.OR: "|",
                   AluOp.XOR: "^"}[AluOp(op)]
            self._set(d, f"({rd} {sym} {src}) & {m}", bound=M32)
        elif op == AluOp.AND:
            expr = f"{rd} & {src}" if not x else f"{rd} & {src} & {m}"
            self._set(d, expr, bound=min(c, M32) if not x else M32)
        elif op in (AluOp.DIV, AluOp.MOD):
            is_div = op == AluOp.DIV
            if insn.off == 1:
                self._set(d, f"{'SDIV' if is_div else 'SMOD'}({rd}, {src}, 32)", bound=M32)
            elif not x:
                if c == 0:
                    self._set(d, "0" if is_div else f"{rd} & {m}", bound=M32)
                else:
                    self._set(d, f"({rd} & {m}) {'//' if is_div else '%'} {c:#x}", bound=M32)
            else:
                self.emit(f"t = {src} & {m}")
                alt = "0" if is_div else f"{rd} & {m}"
                self._set(d, f"({rd} & {m}) {'//' if is_div else '%'} t if t else {alt}",
                          bound=M32)
        elif op == AluOp.LSH:
            n = f"({src} & 31)" if x else str(c & 31)
            self._set(d, f"({rd} << {n}) & {m}", bound=M32)
        elif op == AluOp.RSH:
            n = f"({src} & 31)" if x else str(c & 31)
            self._set(d, f"({rd} & {m}) >> {n}", bound=M32)
        elif op == AluOp.ARSH:
            n = f"({src} & 31)" if x else str(c & 31)
            self._set(d, f"(((({rd} & {m}) ^ 0x80000000) - 0x80000000) >> {n}) & {m}",
                      bound=M32)
        elif op == AluOp.NEG:
            self._set(d, f"(-{rd}) & {m}", bound=M32)
        elif op == AluOp.END:
            if insn.opcode & 8:
                self._swap(d, insn.imm)
            else:
                self._le(d, insn.imm)
        else:  # pragma: no cover
            raise invalid(f"unknown ALU op {op:#x}", pc, insn)

    # -- memory --------------------------------------------------------------------------
    def _addr(self, pc: int, insn: Instruction, base: int, size: int,
              at: int | None = None) -> tuple[str, str]:
        """Buffer and offset expressions for ``[base + off]`` (``off`` = ``at`` if given)."""
        ioff = insn.off if at is None else at
        if base == 10:
            off = STACK_SIZE + ioff
            if not 0 <= off <= STACK_SIZE - size:
                raise invalid(f"stack access [r10{insn.off:+d}] of {size} bytes is outside"
                              f" the {STACK_SIZE}-byte frame", pc, insn)
            return "S", str(off)
        r = self.use(base)
        if ioff >= 0:
            if base not in self.cached:
                self.emit(f"g{base} = M[{r} >> 31]; o{base} = {r} & {MASK}")
                self.cached.add(base)
            return f"g{base}", f"o{base} + {ioff}" if ioff else f"o{base}"
        self.emit(f"a = {r} + {ioff}")
        return "M[a >> 31]", f"a & {MASK}"

    def _swapped(self, insn: Instruction, nxt: Instruction | None) -> bool:
        size = _NBYTES[insn.size]
        return (nxt is not None and nxt.dst == insn.dst and size > 1 and nxt.imm == 8 * size
                and (nxt.opcode == (Class.ALU | AluOp.END | 8)
                     or nxt.opcode == (Class.ALU64 | AluOp.END)))

    def load_group(self, pc: int, insns: Sequence[Instruction], last: int) -> int:
        """Merge consecutive loads through one base register into one struct unpack.

        The merged access covers exactly the hull of the members, so it faults exactly when
        one of them would; which one is recovered from the merge record (``on_merge``)."""
        first = insns[pc]
        base = first.src
        if first.mode != Mode.MEM or first.off < 0 or base == 10:
            return 0
        members: list[Instruction] = []
        dsts: set[int] = set()
        i = pc
        while i < last:
            insn = insns[i]
            if (insn.opcode & 7 != Class.LDX or insn.mode != Mode.MEM or insn.src != base
                    or insn.off < 0 or insn.dst in dsts):
                break
            nxt = insns[i + 1] if i + 1 < last else None
            if self._swapped(insn, nxt):
                break
            members.append(insn)
            dsts.add(insn.dst)
            i += 1
            if insn.dst == base:
                break
        spans = sorted((m.off, _NBYTES[m.size], m.dst) for m in members)
        # non-overlapping and compact enough to be one struct
        while len(spans) > 1:
            ok = all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(spans))
            if ok and spans[-1][0] + spans[-1][1] - spans[0][0] <= MERGE_SPAN:
                break
            members.pop()
            spans = sorted((m.off, _NBYTES[m.size], m.dst) for m in members)
        if len(members) < 2:
            return 0
        fmt, end = "<", spans[0][0]
        for off, size, _ in spans:
            fmt += "x" * (off - end) + _FMT[size]
            end = off + size
        name = self.structs.setdefault(fmt, f"UN{len(self.structs)}")
        buf, off_expr = self._addr(pc, first, base, 1, spans[0][0])
        targets = ", ".join(f"r{d}" for _, _, d in spans)
        self.emit(f"{targets} = {name}({buf}, {off_expr})")
        self.on_merge(base, (pc, tuple((pc + k, m.off, _NBYTES[m.size])
                                       for k, m in enumerate(members))))
        for _, size, d in spans:
            self._mark(d, bound=(1 << (8 * size)) - 1)
        return len(members)

    def load(self, pc: int, insn: Instruction, nxt: Instruction | None) -> int:
        size = _NBYTES[insn.size]
        buf, off = self._addr(pc, insn, insn.src, size)
        d = insn.dst
        if insn.mode == Mode.MEMSX:
            bits = 8 * size
            self._set(d, f"S{bits}({buf}, {off})[0] & {M64:#x}")
            return 1
        swap = self._swapped(insn, nxt)
        bound = (1 << (8 * size)) - 1
        if size == 1:
            self._set(d, f"{buf}[{off}]", bound=bound)
        else:
            fn = f"{'B' if swap else 'U'}{8 * size}"
            self._set(d, f"{fn}({buf}, {off})[0]", bound=bound)
        return 2 if swap else 1

    def store(self, pc: int, insn: Instruction) -> None:
        size = _NBYTES[insn.size]
        mask = (1 << (8 * size)) - 1
        if insn.opcode & 7 == Class.STX and insn.mode == Mode.ATOMIC:
            self._atomic(pc, insn, size)
            return
        if insn.opcode & 7 == Class.ST:
            val = f"{insn.imm & mask:#x}"
        else:
            s = insn.src
            bs = self._b(s)
            val = f"r{s}" if bs is not None and bs <= mask else f"r{s} & {mask:#x}"
        buf, off = self._addr(pc, insn, insn.dst, size)
        if size == 1:
            self.emit(f"{buf}[{off}] = {val}")
        else:
            self.emit(f"P{8 * size}({buf}, {off}, {val})")

    @staticmethod
    def _plain_atomic(insn: Instruction) -> bool:
        return (insn.opcode & 7 == Class.STX and insn.mode == Mode.ATOMIC and insn.off >= 0
                and insn.imm in _INLINE_ATOMICS and insn.dst != 10)

    def atomic_group(self, pc: int, insns: Sequence[Instruction], last: int) -> int:
        """Counter updates side by side (``packets += 1; bytes += len``) as one unpack and
        one pack over exactly the bytes they cover (no padding, which pack would zero)."""
        first = insns[pc]
        if not self._plain_atomic(first):
            return 0
        base, size = first.dst, _NBYTES[first.size]
        members: list[Instruction] = []
        i = pc
        while (i < last and self._plain_atomic(insns[i]) and insns[i].dst == base
               and _NBYTES[insns[i].size] == size):
            members.append(insns[i])
            i += 1
        while len(members) > 1:
            offs = sorted(m.off for m in members)
            if offs == list(range(offs[0], offs[0] + size * len(offs), size)):
                break
            members.pop()
        if len(members) < 2:
            return 0
        mask = (1 << (8 * size)) - 1
        order = sorted(members, key=lambda m: m.off)
        vals = []
        for m in order:
            if m.src in self.const:
                s = f"{self.const[m.src]:#x}"
            else:
                s = self.use(m.src)
            bs = self._b(m.src)
            sym = _INLINE_ATOMICS[m.imm]
            val = s if sym in "+&" or (bs is not None and bs <= mask) else f"({s} & {mask:#x})"
            vals.append((sym, val))
        fmt = "<" + _FMT[size] * len(order)
        unpack = self.structs.setdefault(fmt, f"UN{len(self.structs)}")
        pack = self.packers.setdefault(fmt, f"PK{len(self.packers)}")
        buf, off = self._addr(pc, first, base, size, order[0].off)
        new = ", ".join(f"(t[{k}] + {v}) & {mask:#x}" if sym == "+" else f"t[{k}] {sym} {v}"
                        for k, (sym, v) in enumerate(vals))
        self.emit(f"t = {unpack}({buf}, {off}); {pack}({buf}, {off}, {new})")
        self.on_merge(base, (pc, tuple((pc + k, m.off, size) for k, m in enumerate(members))))
        return len(members)

    def _atomic(self, pc: int, insn: Instruction, size: int) -> None:
        sym = _INLINE_ATOMICS.get(insn.imm & ~1) if insn.imm in _INLINE_ATOMIC_IMMS else None
        if sym is not None:
            # read-modify-write in place: struct's bounds checks fault exactly like ATOM's
            mask = (1 << (8 * size)) - 1
            bits = 8 * size
            s = self.use(insn.src)
            bs = self._b(insn.src)
            val = s if sym in "+&" or (bs is not None and bs <= mask) else f"({s} & {mask:#x})"
            buf, off = self._addr(pc, insn, insn.dst, size)
            if insn.imm & 1:    # fetch: src receives the old value
                self.emit(f"t = U{bits}({buf}, {off})[0]")
                new = f"t {sym} {val}"
                self.emit(f"P{bits}({buf}, {off}, ({new}) & {mask:#x})" if sym == "+"
                          else f"P{bits}({buf}, {off}, {new})")
                self._set(insn.src, "t", bound=mask)
            else:
                new = f"U{bits}({buf}, {off})[0] {sym} {val}"
                self.emit(f"P{bits}({buf}, {off}, ({new}) & {mask:#x})" if sym == "+"
                          else f"P{bits}({buf}, {off}, {new})")
            return
        s = self.use(insn.src)
        r = self.use(insn.dst)
        self.emit(f"a = {r} + {insn.off}" if insn.off else f"a = {r}")
        if insn.imm == AtomicOp.CMPXCHG:
            self._set(0, f"CMPX(a, {size}, {self.use(0)}, {s})")
        elif insn.imm & 1:
            self._set(insn.src, f"ATOM(a, {size}, {insn.imm}, {s})")
        else:
            self.emit(f"ATOM(a, {size}, {insn.imm}, {s})")

    # -- calls ---------------------------------------------------------------------------
    def call(self, pc: int, insn: Instruction) -> None:
        args = ", ".join(self.use(r) for r in range(1, 6))
        by_key: tuple[str, int] | None = None
        key_off: int | None = None
        if insn.opcode & 8:
            self._set(0, f"CALLX({self.use(insn.dst)}, {args}, depth)")
        elif insn.is_pseudo_call:
            raise AssertionError("pseudo calls are emitted by the translator")
        else:
            fast = self.fast_lookup(self.const.get(1, -1)) if insn.imm == 1 else None
            by_key = self.fast_key(self.const.get(1, -1)) if fast else None
            key_off = self._stack_const(2, by_key[1]) if by_key else None
            if by_key and key_off is not None:
                # the key is at a known place in this frame: read it as bytes in one struct
                # call, and take the value's buffer and offset along with its address
                fmt = f"{by_key[1]}s"
                name = self.structs.setdefault(fmt, f"UN{len(self.structs)}")
                self.emit(f"r0, g0, o0 = {by_key[0]}({name}(S, {key_off})[0])")
                self._mark(0)
                self.cached.add(0)
            elif fast:
                self._set(0, f"{fast}(r2)")
            elif insn.imm in _CALLBACK_HELPERS:
                self._set(0, f"h{insn.imm}({args}, depth)")
            else:
                self._set(0, f"h{insn.imm}({args})")
        for r in range(1, 6):
            self.const.pop(r, None)
        self.cached &= {0} if by_key and key_off is not None else set()
        # (helpers may replace the ctx region, so other cached regions are forgotten)

    def _stack_const(self, r: int, size: int) -> int | None:
        """Offset into ``S`` when ``r`` holds a constant address of ``size`` bytes inside
        this function's own frame (only known in the main function, where r10 is fixed)."""
        fp, v = self.fixed.get(10), self.const.get(r)
        if fp is None or v is None:
            return None
        off = STACK_SIZE - (fp - v)
        return off if 0 <= off <= STACK_SIZE - size else None

    def pseudo_call(self, target: int) -> None:
        args = ", ".join(self.use(r) for r in range(1, 6))
        self._set(0, f"f{target}({args}, depth + 1)")
        for r in range(1, 6):
            self.const.pop(r, None)
        self.cached.clear()

    def condition(self, insn: Instruction) -> str:
        """Python expression that is true when the conditional jump is taken."""
        op, x = JmpOp(insn.op), bool(insn.opcode & 8)
        if insn.opcode & 7 == Class.JMP32:
            a = f"(r{insn.dst} & {M32:#x})"
            c = insn.imm & M32
            b = f"(r{insn.src} & {M32:#x})" if x else None
            h = 0x80000000
        else:
            a = self.use(insn.dst)
            c = _s64(insn.imm)
            b = self.use(insn.src) if x else None
            h = H64
        if op == JmpOp.JSET:
            return f"{a} & {b if x else hex(c)}"
        sym = _CMP[op]
        if op in _SIGNED:
            rhs = f"({b} ^ {h:#x})" if x else f"{c ^ h:#x}"
            return f"({a} ^ {h:#x}) {sym} {rhs}"
        return f"{a} {sym} {b if x else hex(c)}"

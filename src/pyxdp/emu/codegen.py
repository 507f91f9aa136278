"""Python source for single eBPF instructions, with a little per-block knowledge.

Registers are Python locals ``r0``..``r10`` holding unsigned 64-bit ints.  To spend as few
bytecodes as possible per instruction, a register may be left *dirty* (correct modulo 2**64
but not normalised, possibly negative or wide) after add/sub/shift-left/neg/or/xor, because
those operations commute with reduction modulo 2**64.  Anything that needs the real value
(comparisons, right shifts, division, memory addresses, stores, calls, exit) first cleans it
with one ``& M64``.  Upper bounds of clean registers (after narrow loads, 32-bit ops,
constants) let an ``add`` skip its mask entirely when it cannot overflow.  All of this state
is per basic block: every block starts with everything clean and unknown.

Two more kinds of per-path knowledge save work on the hot paths of packet parsers:

* *provenance* (``known``): a register statically known to point into one region whose
  buffer is a local of the generated function (``P`` the packet, ``C`` the XDP context in
  the XDP entry function) is turned into a buffer and offset with one mask instead of a
  region-table lookup.  Only pointers read from the context and moved forward by
  non-negative, bounded amounts qualify, so they provably stay inside their region; the
  buffer's own bounds check still faults exactly as before.
* *laziness* (``lazy``): constants, and the address of a map value found by an inlined hash
  lookup, are not assigned to their register until some emitted line reads it.  A value
  pointer's NULL test reads the buffer local instead (``g0 is None``), so a lookup whose
  pointer is only dereferenced never computes an address at all.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

from pyxdp.emu import packet
from pyxdp.emu.cfg import invalid
from pyxdp.emu.memory import OFFSET_MASK, STACK_SIZE
from pyxdp.emu.xdp import HEADROOM, MAX_BUFFER, PACKET_BASE
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
_INLINE_ATOMICS: dict[int, str] = {AtomicOp.ADD: "+", AtomicOp.OR: "|", AtomicOp.AND: "&",
                                   AtomicOp.XOR: "^"}
_INLINE_ATOMIC_IMMS = {op | fetch for op in _INLINE_ATOMICS for fetch in (0, 1)}

# a merged load: (pc, byte offset relative to the base register, size) of each member
MergedLoad = tuple[int, tuple[tuple[int, int, int], ...]]
# where a merged access's base register points: (buffer local, offset local or literal)
Loc = tuple[str, str]
# XDP context fields that hold packet pointers (data, data_end, data_meta)
CTX_PACKET_FIELDS = (0, 4, 8)
# frame buffers are at most this long (xdp.MAX_BUFFER, enforced by XdpState.ctx_bytes), so
# a packet pointer plus a bounded non-negative amount below 2**31 - P_LIMIT cannot leave the
# packet's region
P_LIMIT = MAX_BUFFER
REGION_SPAN = 1 << 31
XDP_DATA = PACKET_BASE + HEADROOM     # data and data_meta of a fresh frame
_READS = re.compile(r"\br(\d+)\b")
_TARGETS = re.compile(r"^[a-z0-9_, ]+ = ")
State = dict[str, Any]


def _s64(imm: int) -> int:
    return imm & M64


def _plus(off: str, k: int) -> str:
    """``off + k`` for an offset expression that may be a literal."""
    if off.isdigit():
        return str(int(off) + k)
    return f"{off} + {k}" if k else off


class InsnGen:
    """Emits the statements of one instruction; ``emit(line)`` appends one source line."""

    def __init__(self, emit: Callable[[str], None], resolve_ld: Callable[[int], int],
                 fast_lookup: Callable[[int], str | None],
                 fast_key: Callable[[int], tuple[str, int, str] | None] = lambda _: None,
                 on_merge: Callable[[Loc, MergedLoad], None] = lambda *_: None,
                 on_access: Callable[[str], None] = lambda _: None) -> None:
        self._emit = emit
        self.on_access = on_access
        self._access: str | None = None   # base address of the next access, if not in r<b>
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
        self.cached: dict[int, Loc] = {}      # register -> (buffer, offset) expressions
        self.known: dict[int, tuple[str, int]] = {}   # register -> (buffer local, max offset)
        # register -> (expression not yet assigned to it, its NULL test or None)
        self.lazy: dict[int, tuple[str, str | None]] = {}
        # packet bounds proven by the path's checks (see pyxdp.emu.packet)
        self.plen = 0                          # P has at least this many bytes
        self.safe: dict[int, int] = {}         # register -> bytes readable from it
        self.derived: dict[int, tuple[int, int]] = {}   # rA -> (rB, k): rA == rB + k
        self.ends: set[int] = set()            # registers holding data_end of P
        self.pre: dict[tuple[str, str, int, int], str] = {}   # prefetched packet bytes
        self._access = None

    _PATH = ("bound", "const", "cached", "known", "lazy", "safe", "derived", "ends", "pre")

    def snapshot(self) -> State:
        snap: dict[str, Any] = {k: getattr(self, k).copy() for k in self._PATH}
        snap["plen"] = self.plen
        return snap

    def restore(self, snap: State) -> None:
        self.dirty = set()
        for k, v in snap.items():
            setattr(self, k, v.copy() if k != "plen" else v)
        self.bound[10] = 1 << 40

    fixed: dict[int, int] = {}   # constants true for the whole function (r10 in main)
    xdp_rules = False            # refuse what the verifier refuses of XDP programs
    func_end = 0                 # end of the function being emitted (for look-ahead)

    def entry_ctx(self, addr: int) -> None:
        """Facts at the top of the XDP entry: r1 is the context ``C`` at ``addr``."""
        self._set(1, f"{addr:#x}", bound=addr, const=addr)
        self.known[1] = ("C", 0)

    def emit(self, text: str) -> None:
        """Emit one line, first assigning any lazy register the line reads."""
        if self.lazy:
            m = _TARGETS.match(text)
            self.need(text[m.end():] if m else text)
        self._emit(text)
        if self._access is not None:   # this line is a memory access through a lazy base
            self.on_access(self._access)
            self._access = None

    def need(self, text: str) -> None:
        """Materialise the lazy registers ``text`` reads."""
        for r in {int(n) for n in _READS.findall(text)} & self.lazy.keys():
            self.materialise(r)

    def materialise(self, r: int) -> None:
        expr = self.lazy.pop(r, None)
        if expr is not None:
            self._emit(f"r{r} = {expr[0]}")

    def settle(self) -> None:
        """Assign every lazy register (before a point that forgets per-path knowledge)."""
        for r in sorted(self.lazy):
            self.materialise(r)

    def use(self, r: int) -> str:
        self.materialise(r)
        if r in self.dirty:
            self.emit(f"r{r} &= {M64:#x}")
            self.dirty.discard(r)
        return f"r{r}"

    def flush(self, keep_lazy: bool = False) -> None:
        """Clean dirty registers; also assign lazy ones unless ``keep_lazy`` (a two-way
        branch whose sides are both emitted with this path's knowledge)."""
        if not keep_lazy:
            self.settle()
        for r in sorted(self.dirty):
            self.emit(f"r{r} &= {M64:#x}")
        self.dirty.clear()

    def _set(self, r: int, expr: str, *, dirty: bool = False, bound: int = M64,
              const: int | None = None) -> None:
        if const is not None and expr == f"{const:#x}":
            self._mark(r, bound=bound, const=const)
            self.lazy[r] = (expr, None)     # assigned only if some line reads it
            return
        self.emit(f"r{r} = {expr}")
        self._mark(r, dirty=dirty, bound=bound, const=const)

    def _mark(self, r: int, *, dirty: bool = False, bound: int = M64,
              const: int | None = None) -> None:
        loc = self.cached.pop(r, None)
        if loc is not None and self.pre:
            self.pre = {k: v for k, v in self.pre.items() if k[1] != loc[1]}
        self.known.pop(r, None)
        self.lazy.pop(r, None)
        self.safe.pop(r, None)
        self.ends.discard(r)
        if self.derived:
            self.derived = {a: (b, k) for a, (b, k) in self.derived.items() if r not in (a, b)}
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
                if insn.src in self.known:
                    self.known[insn.dst] = self.known[insn.src]
                if insn.src in self.ends:
                    self.ends.add(insn.dst)     # so that arithmetic on the copy is refused
                self._lhs = f"r{insn.src}"
                try:
                    self.alu64(pc + 1, nxt)
                finally:
                    self._lhs = None
                if nxt.op == AluOp.ADD and not nxt.opcode & 8 and nxt.imm >= 0:
                    self.derived[insn.dst] = (insn.src, nxt.imm)   # for packet.assume
                return 2
            self.alu64(pc, insn)
        elif cls == Class.ALU:
            self.alu32(pc, insn)
        elif cls == Class.LDX:
            hoisted = packet.prefetch(self, pc, insns, self.func_end)
            if hoisted:
                return hoisted
            merged = self.load_group(pc, insns, last)
            return merged or self.load(pc, insn, nxt)
        elif cls in (Class.ST, Class.STX):
            if insn.dst != 10 and self._stack_const(insn.dst, 1, insn.off) is None:
                self.pre.clear()    # the packet may change: forget hoisted loads
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
                and d not in self.const and s not in self.lazy)

    # -- ALU -----------------------------------------------------------------------------
    def _pkt_end_arith(self, pc: int, insn: Instruction, wide: bool) -> None:
        """Refuse what the verifier refuses: arithmetic on a register known to hold the
        packet's data_end ("pointer arithmetic on pkt_end prohibited").  Only the forms
        the verifier allows pass: a copy, and ``end - p`` / ``p - end`` between packet
        pointers (a scalar, for a privileged loader).  Where the other operand's kind is
        not known here, the instruction is let through (never refuse a valid program)."""
        op, d, x = insn.op, insn.dst, bool(insn.opcode & 8)
        d_end, s_end = d in self.ends, x and insn.src in self.ends
        if not self.xdp_rules or op == AluOp.MOV or not (d_end or s_end):
            return
        what = "pointer arithmetic on pkt_end is prohibited by the verifier"
        if not wide:
            raise invalid(f"32-bit {what}", pc, insn)
        if op == AluOp.SUB and x:
            other = insn.src if d_end else d
            if d_end and s_end:
                return                          # end - end
            if other in self.known or other in self.safe or other in self.derived or (
                    other not in self.const and other not in self.bound):
                return                          # a packet pointer, or not known here
        raise invalid(what, pc, insn)

    def alu64(self, pc: int, insn: Instruction) -> None:
        op, d, x = insn.op, insn.dst, bool(insn.opcode & 8)
        self._pkt_end_arith(pc, insn, True)
        copies_end = op == AluOp.MOV and x and not insn.off and insn.src in self.ends
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
            elif insn.src in self.const:
                v = self.const[insn.src]
                known = self.known.get(insn.src)
                self._set(d, f"{v:#x}", bound=v, const=v)
                if known is not None:
                    self.known[d] = known
            elif insn.src != d:
                self.emit(f"{rd} = {src}")
                if insn.src in self.dirty:
                    self._mark(d, dirty=True)
                else:
                    self._mark(d, bound=self.bound.get(insn.src, M64))
                    if insn.src in self.known:
                        self.known[d] = self.known[insn.src]
        elif op in (AluOp.ADD, AluOp.SUB) and not x and d in self.const:
            v = (self.const[d] + (insn.imm if op == AluOp.ADD else -insn.imm)) & M64
            known = self.known.get(d) if v >> 31 == self.const[d] >> 31 else None
            self._set(d, f"{v:#x}", bound=v, const=v)
            if known is not None:    # a constant pointer that stayed in its region
                self.known[d] = (known[0], v & OFFSET_MASK)
        elif op == AluOp.ADD:
            if not x and insn.imm < 0:
                self._set(d, f"{rd} - {-insn.imm}", dirty=True)
            elif bd is not None and bs is not None and bd + bs <= M64:
                ptr = self._moved(d, insn.src if x else None, bd, bs)
                self._set(d, f"{rd} + {src}", bound=bd + bs)
                if ptr is not None:
                    self.known[d] = ptr
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
        if copies_end:
            self.ends.add(d)

    def _moved(self, d: int, s: int | None, bd: int, bs: int) -> tuple[str, int] | None:
        """Provenance of ``d + s`` (``s`` None: an immediate of at most ``bs``): a known
        pointer moved forward by a clean scalar stays in its region while its largest
        possible offset stays below the region's span."""
        kd, ks = self.known.get(d), self.known.get(s) if s is not None else None
        if (kd is None) == (ks is None):
            return None
        buf, most = kd if kd is not None else ks    # type: ignore[misc]
        most += bs if kd is not None else bd
        return (buf, most) if most < REGION_SPAN else None

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
        self._pkt_end_arith(pc, insn, False)
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
            soff = STACK_SIZE + ioff
            if not 0 <= soff <= STACK_SIZE - size:
                raise invalid(f"stack access [r10{insn.off:+d}] of {size} bytes is outside"
                              f" the {STACK_SIZE}-byte frame", pc, insn)
            return "S", str(soff)
        slot = self._stack_const(base, size, ioff)
        if slot is not None:
            return "S", str(slot)
        if ioff >= 0:
            buf, off = self._loc(base)
            if base in self.lazy:    # for fault reports: how to compute the base address
                self._access = self.lazy[base][0]
            return buf, _plus(off, ioff)
        r = self.use(base)
        self.emit(f"a = {r} + {ioff}")
        return "M[a >> 31]", f"a & {MASK}"

    def _loc(self, base: int) -> Loc:
        """Buffer and offset of the address in ``base``, derived once per value: a literal
        for a constant pointer of known provenance, one mask for a known region, else the
        region-table lookup."""
        loc = self.cached.get(base)
        if loc is not None:
            return loc
        v, known = self.const.get(base), self.known.get(base)
        if known is not None and v is not None:
            loc = (known[0], str(v & OFFSET_MASK))
        else:
            r = self.use(base)
            if known is not None:
                self.emit(f"o{base} = {r} & {MASK}")
                loc = (known[0], f"o{base}")
            else:
                self.emit(f"g{base} = M[{r} >> 31]; o{base} = {r} & {MASK}")
                loc = (f"g{base}", f"o{base}")
        self.cached[base] = loc
        return loc

    def _is_ctx(self, base: int) -> bool:
        known = self.known.get(base)
        return known is not None and known[0] == "C"

    def _ctx_field(self, insn: Instruction) -> bool:
        """In the XDP entry, the context's packet pointers without reading ``C``: the frame
        is fresh (data == data_meta == the constant ``DATA``) and ``E`` is data_end."""
        base = insn.src
        if not self._is_ctx(base) or insn.mode != Mode.MEM or _NBYTES[insn.size] != 4:
            return False
        loc = self._loc(base)
        at = int(loc[1]) + insn.off if loc[1].isdigit() else -1
        if at not in CTX_PACKET_FIELDS:
            return False
        d = insn.dst
        if at == CTX_PACKET_FIELDS[1]:
            self._set(d, "E", bound=M32)
            self.ends.add(d)
        else:
            self._set(d, f"{XDP_DATA:#x}", bound=XDP_DATA, const=XDP_DATA)
        self.known[d] = ("P", P_LIMIT)
        return True

    def _from_ctx(self, base: int, off: int, size: int) -> tuple[str, int] | None:
        """Provenance of a load: the XDP context's data/data_end/data_meta are packet
        pointers (only while ``C`` is the current context: calls forget ``known``)."""
        known = self.known.get(base)
        if known is None or known[0] != "C" or size != 4:
            return None
        loc = self._loc(base)
        if not loc[1].isdigit() or int(loc[1]) + off not in CTX_PACKET_FIELDS:
            return None
        return ("P", P_LIMIT)

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
        if first.mode != Mode.MEM or first.off < 0 or base == 10 or self._is_ctx(base):
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
        buf, off_expr = self._addr(pc, first, base, end - spans[0][0], spans[0][0])
        loc = self.cached.get(base, (buf, _plus(off_expr, -spans[0][0])))
        ptrs = {d: self._from_ctx(base, off, size) for off, size, d in spans}
        targets = ", ".join(f"r{d}" for _, _, d in spans)
        self.emit(f"{targets} = {name}({buf}, {off_expr})")
        self.on_merge(loc, (pc, tuple((pc + k, m.off, _NBYTES[m.size])
                                      for k, m in enumerate(members))))
        for _, size, d in spans:
            self._mark(d, bound=(1 << (8 * size)) - 1)
            if ptrs[d] is not None:
                self.known[d] = ptrs[d]    # type: ignore[assignment]
        return len(members)

    def load(self, pc: int, insn: Instruction, nxt: Instruction | None) -> int:
        if self._ctx_field(insn):
            return 1
        size = _NBYTES[insn.size]
        buf, off = self._addr(pc, insn, insn.src, size)
        d = insn.dst
        if insn.mode == Mode.MEMSX:
            bits = 8 * size
            self._set(d, f"S{bits}({buf}, {off})[0] & {M64:#x}")
            return 1
        swap = self._swapped(insn, nxt)
        bound = (1 << (8 * size)) - 1
        ptr = None if swap or insn.off < 0 else self._from_ctx(insn.src, insn.off, size)
        if size == 1:
            self._set(d, f"{buf}[{off}]", bound=bound)
        else:
            fn = f"{'B' if swap else 'U'}{8 * size}"
            self._set(d, f"{fn}({buf}, {off})[0]", bound=bound)
        if ptr is not None:
            self.known[d] = ptr
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
        buf, off = self._addr(pc, first, base, size * len(order), order[0].off)
        loc = self.cached.get(base, (buf, _plus(off, -order[0].off)))
        new = ", ".join(f"(t[{k}] + {v}) & {mask:#x}" if sym == "+" else f"t[{k}] {sym} {v}"
                        for k, (sym, v) in enumerate(vals))
        self.emit(f"t = {unpack}({buf}, {off}); {pack}({buf}, {off}, {new})")
        self.on_merge(loc, (pc, tuple((pc + k, m.off, size) for k, m in enumerate(members))))
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
        keyed = False
        if insn.opcode & 8:
            args = ", ".join(self.use(r) for r in range(1, 6))
            self._set(0, f"CALLX({self.use(insn.dst)}, {args}, depth)")
        elif insn.is_pseudo_call:
            raise AssertionError("pseudo calls are emitted by the translator")
        else:
            fast = self.fast_lookup(self.const.get(1, -1)) if insn.imm == 1 else None
            by_key = self.fast_key(self.const.get(1, -1)) if fast else None
            key_off = self._stack_const(2, by_key[1]) if by_key else None
            if by_key and key_off is not None:
                keyed = True
                self._keyed_lookup(by_key, key_off)
            else:
                args = ", ".join(self.use(r) for r in range(1, 6))
                if fast:
                    self._set(0, f"{fast}(r2)")
                elif insn.imm in _CALLBACK_HELPERS:
                    self._set(0, f"h{insn.imm}({args}, depth)")
                else:
                    self._set(0, f"h{insn.imm}({args})")
        for r in range(1, 6):
            if r not in self.lazy:    # a lazy constant keeps its value across the call
                self.const.pop(r, None)
        # helpers may replace the ctx and packet regions: forget derived regions
        self.cached = {0: self.cached[0]} if keyed else {}
        self._forget_packet()

    def _forget_packet(self) -> None:
        """After a call: the context and the packet's extent may have changed."""
        self.known.clear()
        self.pre.clear()
        self.safe.clear()
        self.ends.clear()
        self.plen = 0

    def _keyed_lookup(self, by_key: tuple[str, int, str], key_off: int) -> None:
        """``map_lookup_elem`` with the key at a known stack slot, read as bytes in one
        struct call.  A hash map's lookup is its dict's ``get``, inline: the value buffer
        lands in ``g0`` (offset 0) and the address in r0 is computed only if r0 is read."""
        name, size, kind = by_key
        fmt = f"{size}s"
        key = f"{self.structs.setdefault(fmt, f'UN{len(self.structs)}')}(S, {key_off})[0]"
        if kind == "hash":
            self.emit(f"g0 = {name}({key}, NOVALUE)[0]")
            self._mark(0)
            self.lazy[0] = (f"{name}A(g0)", "g0 is None")
            self.cached[0] = ("g0", "0")
        else:
            self.emit(f"r0, g0, o0 = {name}({key})")
            self._mark(0)
            self.cached[0] = ("g0", "o0")

    def _stack_const(self, r: int, size: int, delta: int = 0) -> int | None:
        """Offset into ``S`` when ``r`` (plus ``delta``) holds a constant address of ``size``
        bytes inside this function's own frame (only known in the main function, where
        r10 is fixed)."""
        fp, v = self.fixed.get(10), self.const.get(r)
        if fp is None or v is None:
            return None
        off = STACK_SIZE - (fp - v) + delta
        return off if 0 <= off <= STACK_SIZE - size else None

    def pseudo_call(self, target: int) -> None:
        args = ", ".join(self.use(r) for r in range(1, 6))
        self._set(0, f"f{target}({args}, depth + 1)")
        for r in range(1, 6):
            if r not in self.lazy:
                self.const.pop(r, None)
        self.cached.clear()
        self._forget_packet()

    def _operand(self, r: int) -> str:
        """A register as a comparison operand: a known constant is its literal."""
        c = self.const.get(r)
        return f"{c:#x}" if c is not None and r != 10 else self.use(r)

    def condition(self, insn: Instruction) -> str:
        """Python expression that is true when the conditional jump is taken."""
        op, x = JmpOp(insn.op), bool(insn.opcode & 8)
        lazy = self.lazy.get(insn.dst)
        if (lazy is not None and lazy[1] is not None and not x and insn.imm == 0
                and insn.opcode & 7 == Class.JMP and op in (JmpOp.JEQ, JmpOp.JNE)):
            # a lazily addressed map value: NULL is the buffer being None
            return lazy[1] if op == JmpOp.JEQ else lazy[1].replace(" is None", " is not None")
        if insn.opcode & 7 == Class.JMP32:
            self.need(f"r{insn.dst} r{insn.src}" if x else f"r{insn.dst}")
            a = f"(r{insn.dst} & {M32:#x})"
            c = insn.imm & M32
            b = f"(r{insn.src} & {M32:#x})" if x else None
            h = 0x80000000
        else:
            a = self._operand(insn.dst)
            c = _s64(insn.imm)
            b = self._operand(insn.src) if x else None
            h = H64
        if op == JmpOp.JSET:
            return f"{a} & {b if x else hex(c)}"
        sym = _CMP[op]
        if op in _SIGNED:
            rhs = f"({b} ^ {h:#x})" if x else f"{c ^ h:#x}"
            return f"({a} ^ {h:#x}) {sym} {rhs}"
        return f"{a} {sym} {b if x else hex(c)}"

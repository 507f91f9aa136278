"""Translate a whole program into Python source once, and compile it.

Each eBPF function (the main program and every bpf-to-bpf callee or callback) becomes one
Python function whose registers are locals.  Control flow: forward branches are emitted as
nested ``if`` statements with the target block *inlined* when it has one predecessor or is
small (tail duplication), so straight-line parsers run without any dispatch at all.  Blocks
that are loop heads, or too big to duplicate, are reached through a ``while True`` loop
that selects the block with a binary tree of comparisons on the block index.  A block that
jumps back to itself becomes a plain inner ``while`` loop.  Loops count executed
instructions and stop at the budget.

The main function is emitted twice: ``f0(r1, ..., r5, depth)`` for :meth:`run` and tail
calls, and ``x0(P, C, E)`` for ``run_xdp``, which receives the packet buffer, the context
bytes and data_end directly.  In ``x0`` r1 is a known constant pointing into ``C``, so
context loads need no region lookup and the packet pointers they yield are known to point
into ``P``.

Every emitted line remembers the instruction it came from (``Compiled.line_pc``), so a fault
inside generated code is reported with its pc without any per-instruction bookkeeping.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyxdp.emu import packet
from pyxdp.emu.cfg import Block, Layout, Subprog
from pyxdp.emu.codegen import InsnGen, Loc, MergedLoad
from pyxdp.emu.memory import CTX, MAX_FRAMES, base_of, frame_pointer
from pyxdp.isa import JmpOp

INLINE_LIMIT = 24      # instructions a multi-predecessor block may have to be duplicated
MAX_INDENT = 40        # deeper than this, targets go through the dispatch loop

ENV_NAMES = ("M", "STK", "FP", "U16", "U32", "U64", "B16", "B32", "B64", "S8", "S16", "S32",
             "P16", "P32", "P64", "SDIV", "SMOD", "SW64", "ATOM", "CMPX", "CALLX", "RUNAWAY",
             "DEEP", "CNT", "NOVALUE")
CTX_ADDR = base_of(CTX)
# what in translated code needs the machine's run state (regions, XDP state, trace)
_MACHINE_USE = re.compile(r"\b(M\[|h\d+\(|f\d+\(|CALLX\(|ATOM\(|CMPX\(|LK\d+\()")


class _Restart(Exception):
    """A block had to become a dispatch block after emission started."""


@dataclass
class Compiled:
    funcs: dict[int, Callable[..., int]]
    source: str
    filename: str
    line_pc: list[int]     # 1-based source line -> pc (index 0 unused)
    # 1-based source line of a merged load -> (base location, (pc, offset, size) members)
    merged: dict[int, tuple[Loc, MergedLoad]] = field(default_factory=dict)
    xdp: Callable[[bytearray, bytes, int], int] | None = None   # x0(P, C, E), if any
    # 1-based source line of an access whose base register was never assigned (a lazy
    # constant or map value) -> expression of the base address, over the frame's locals
    access: dict[int, str] = field(default_factory=dict)
    # x0 uses nothing but its arguments and the maps (no helper calls, no region table)
    xdp_lean: bool = False
    env: dict[str, Any] = field(default_factory=dict)   # the generated code's free names


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.pcs: list[int] = []
        self.indent = 0
        self.pc = 0
        self.merged: dict[int, tuple[Loc, MergedLoad]] = {}   # 0-based line index

        self.access: dict[int, str] = {}

    def merge(self, loc: Loc, record: MergedLoad) -> None:
        self.merged[len(self.lines) - 1] = (loc, record)

    def lazy_access(self, expr: str) -> None:
        self.access[len(self.lines) - 1] = expr

    def emit(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)
        self.pcs.append(self.pc)


class _FuncGen:
    def __init__(self, layout: Layout, sub: Subprog, out: _Source, gen: InsnGen,
                 budget: int, count: bool = False, xdp: bool = False) -> None:
        self.layout, self.sub, self.out, self.gen = layout, sub, out, gen
        self.budget = budget
        self.count = count
        self.xdp = xdp     # the XDP entry x0(P, C, E) of the main function
        self.dispatch: set[int] = {sub.start} | sub.loop_heads
        self._plan()

    def _plan(self) -> None:
        """Pick dispatch blocks: loop heads and multi-predecessor blocks too big to copy."""
        self.isize: dict[int, int] = {}
        for start in sorted(self.sub.blocks, reverse=True):
            blk = self.sub.blocks[start]
            size = blk.end - blk.start
            for s in blk.succs:
                if s > start and s not in self.dispatch:
                    size += self.isize[s]
            if blk.preds > 1 and size > INLINE_LIMIT:
                self.dispatch.add(start)
            self.isize[start] = size

    def emit(self) -> None:
        out = self.out
        base_len, base_pcs, base_indent = len(out.lines), len(out.pcs), out.indent
        while True:
            try:
                self._emit_function()
                return
            except _Restart:
                del out.lines[base_len:]
                del out.pcs[base_pcs:]
                for line in [k for k in out.merged if k >= base_len]:
                    del out.merged[line]
                for line in [k for k in out.access if k >= base_len]:
                    del out.access[line]
                out.indent = base_indent

    def _emit_function(self) -> None:
        out, sub = self.out, self.sub
        out.pc = sub.start
        main = sub.start == 0 and 0 not in self.layout.targets.values()
        if self.xdp:
            out.emit("def x0(P, C, E):")
        else:
            out.emit(f"def f{sub.start}(r1, r2, r3, r4, r5, depth):")
        out.indent += 1
        self.gen.fixed = {10: frame_pointer(0)} if main else {}
        self.gen.func_end = sub.end
        if not main:
            out.emit(f"if depth >= {MAX_FRAMES}: DEEP({sub.start})")
        out.emit("; ".join(self._prologue()))
        prologue = len(out.lines) - 1
        if self.count and main:
            out.emit("CNT[0] = 0")
        if len(self.dispatch) == 1 and not sub.has_loop:
            self._block(sub.start)
        else:
            out.emit(f"b = {sub.start}")
            out.emit("while True:")
            out.indent += 1
            self._tree(sorted(self.dispatch))
            out.indent -= 1
        out.indent -= 1
        self._prune(prologue)

    def _prune(self, line: int) -> None:
        """Drop prologue statements for names the body never mentions (the XDP entry's
        stack and depth are often unused: keyed lookups read the stack by literal offset)."""
        out = self.out
        body = "\n".join(out.lines[line + 1:])
        head = out.lines[line]
        indent = head[:len(head) - len(head.lstrip())]
        keep = []
        for st in head.strip().split("; "):
            names = st.split(" = ")[:-1]
            if st == "pass" or len(names) == len(st.split(" = ")) - 1 == 0:
                keep.append(st)
                continue
            names = [n for n in names if re.search(rf"\b{n}\b", body)]
            if names:
                keep.append(" = ".join([*names, st.split(" = ")[-1]]))
        out.lines[line] = indent + ("; ".join(keep) or "pass")

    def _prologue(self) -> list[str]:
        """Locals the body needs: stack, frame pointer, registers it may read unset."""
        used: set[int] = set()
        stack = False
        for insn in self.layout.insns[self.sub.start:self.sub.end]:
            used |= {insn.dst, insn.src}
            stack = stack or 10 in (insn.dst, insn.src)
        if self.xdp:    # depth 0; r1 is the context (lazy), r2-r5 start as 0
            calls = any(i.is_call for i in self.layout.insns[self.sub.start:self.sub.end])
            stmts = ([f"S = STK[0]; r10 = {frame_pointer(0):#x}"] if stack else []) + (
                ["depth = 0"] if calls else [])
            regs = [f"r{r}" for r in (0, 2, 3, 4, 5, 6, 7, 8, 9)]   # _prune drops unused
        else:
            stmts = ["S = STK[depth]", "r10 = FP[depth]"] if stack else []
            regs = [f"r{r}" for r in (0, 6, 7, 8, 9) if r in used or r == 0]
        if regs:
            stmts.append(" = ".join(regs) + " = 0")
        if self.sub.has_loop:
            stmts.append("n = 0")
        return stmts or ["pass"]

    def _tree(self, starts: list[int]) -> None:
        out = self.out
        if len(starts) == 1:
            self._block(starts[0])
            return
        mid = len(starts) // 2
        out.pc = starts[mid]
        out.emit(f"if b < {starts[mid]}:")
        out.indent += 1
        self._tree(starts[:mid])
        out.indent -= 1
        out.emit("else:")
        out.indent += 1
        self._tree(starts[mid:])
        out.indent -= 1

    def _count(self, blk: Block, check: bool) -> None:
        if self.count:    # instrumented translation: every block adds its length
            self.out.emit(f"CNT[0] += {blk.end - blk.start}")
        if not self.sub.has_loop:
            return
        self.out.emit(f"n += {blk.end - blk.start}")
        if check:
            self.out.emit(f"if n > {self.budget}: RUNAWAY({blk.start})")

    def _block(self, start: int) -> None:
        """Emit block ``start`` and (recursively) its inlined successors."""
        out, gen, insns = self.out, self.gen, self.layout.insns
        blk = self.sub.blocks[start]
        term = insns[blk.end - 1]
        self_loop = term.is_branch and self.layout.targets[blk.end - 1] == start
        out.pc = start
        if self_loop:
            gen.settle()
            out.emit("while True:")
            out.indent += 1
        self._count(blk, check=start in self.sub.loop_heads)
        if start in self.dispatch or self_loop:
            gen.reset()
            if self.xdp and start == self.sub.start and self.sub.blocks[start].preds == 0:
                gen.entry_ctx(CTX_ADDR)
        last = blk.end - 1 if (term.is_branch or term.is_exit) else blk.end
        pc = start
        while pc < last:
            out.pc = pc
            insn = insns[pc]
            if insn.is_pseudo_call:
                gen.pseudo_call(self.layout.targets[pc])
                pc += 1
                continue
            pc += gen.gen(pc, insn, insns, last)
        out.pc = blk.end - 1
        if term.is_exit:
            const = gen.const.get(0)
            if const is not None:
                out.emit(f"return {const:#x}")
            else:
                out.emit(f"return {gen.use(0)}")
        elif not term.is_branch:
            gen.flush()
            self._goto(blk.end, start)
        elif self_loop:
            self._self_loop_end(blk, term)
        elif term.op == JmpOp.JA:
            gen.flush()
            self._goto(self.layout.targets[blk.end - 1], start)
        else:
            self._cond(blk, term)

    def _self_loop_end(self, blk: Block, term: Any) -> None:
        out, gen = self.out, self.gen
        if term.op != JmpOp.JA:
            cond = gen.condition(term)
            gen.flush()
            out.emit(f"if not ({cond}): break")
        else:
            gen.flush()
        out.indent -= 1
        gen.reset()
        if term.op != JmpOp.JA:
            self._goto(blk.end, blk.start)

    def _cond(self, blk: Block, term: Any) -> None:
        out, gen = self.out, self.gen
        cond = gen.condition(term)
        gen.flush(keep_lazy=True)
        taken, fall = self.layout.targets[blk.end - 1], blk.end
        snap = gen.snapshot()
        # nest the cheaper side; a dispatch goto is the cheapest of all
        t_cost = 0 if taken in self.dispatch else self.isize[taken]
        f_cost = 0 if fall in self.dispatch else self.isize[fall]
        if f_cost < t_cost:
            out.emit(f"if not ({cond}):")
            first, second = fall, taken
        else:
            out.emit(f"if {cond}:")
            first, second = taken, fall
        out.indent += 1
        packet.assume(gen, term, first == taken)
        self._goto(first, blk.start)
        out.indent -= 1
        gen.restore(snap)
        packet.assume(gen, term, second == taken)
        self._goto(second, blk.start)

    def _goto(self, target: int, origin: int) -> None:
        out = self.out
        if target in self.dispatch or target <= origin:
            if target not in self.dispatch:
                self.dispatch.add(target)
                raise _Restart
            self.gen.settle()
            out.emit(f"b = {target}; continue")
            return
        if out.indent > MAX_INDENT:
            self.dispatch.add(target)
            raise _Restart
        self._block(target)


def translate(layout: Layout, env: dict[str, Any], helper_ids: set[int],
              resolve_ld: Callable[[int], int], fast_lookups: dict[int, str],
              fast_keys: dict[int, tuple[str, int, str]], budget: int, filename: str, *,
              count: bool = False, xdp_rules: bool = False) -> Compiled:
    """Generate, compile and instantiate the functions of a whole program.

    ``fast_lookups`` maps a map handle to the env name of its address-keyed lookup,
    ``fast_keys`` to the name, key size and kind of its bytes-keyed one (a ``"hash"`` one
    also has ``name + "A"``, the address of a value buffer).  ``count`` adds an
    executed-instruction counter (``env["CNT"][0]``) to every block.  ``xdp_rules`` refuses
    what the verifier refuses of an XDP program that the emulator could still run
    (arithmetic on data_end)."""
    out = _Source()
    gen = InsnGen(out.emit, resolve_ld, fast_lookups.get, fast_keys.get, out.merge,
                  out.lazy_access)
    gen.xdp_rules = xdp_rules
    out.emit("def __make():")   # parameters are filled in once the body is known
    out.indent = 1
    for sub in layout.subprogs.values():
        _FuncGen(layout, sub, out, gen, budget, count).emit()
    xdp = 0 in layout.subprogs and 0 not in layout.targets.values()
    if xdp:
        _FuncGen(layout, layout.subprogs[0], out, gen, budget, count, xdp=True).emit()
    out.emit("return {" + ", ".join(f"{s}: f{s}" for s in layout.subprogs)
             + (", 'xdp': x0}" if xdp else "}"))
    env = dict(env)
    for fmt, name in gen.structs.items():
        env[name] = struct.Struct(fmt).unpack_from
    for fmt, name in gen.packers.items():
        env[name] = struct.Struct(fmt).pack_into
    names = ENV_NAMES + tuple(sorted({f"h{h}" for h in helper_ids}
                                     | set(fast_lookups.values())
                                     | {n for n, _, _ in fast_keys.values()}
                                     | {n + "A" for n, _, k in fast_keys.values()
                                        if k == "hash"}
                                     | set(gen.structs.values())
                                     | set(gen.packers.values())))
    out.lines[0] = f"def __make({', '.join(names)}):"
    source = "\n".join(out.lines) + "\n"
    code = compile(source, filename, "exec")
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    env.setdefault("NOVALUE", (None,))
    free = {k: env[k] for k in names}
    funcs = namespace["__make"](**free)
    xdp_entry = funcs.pop("xdp", None)
    merged = {line + 1: rec for line, rec in out.merged.items()}
    access = {line + 1: expr for line, expr in out.access.items()}
    x0 = source[source.find("    def x0("):] if xdp_entry is not None else ""
    lean = bool(x0) and _MACHINE_USE.search(x0.split("\n", 1)[1]) is None
    return Compiled(funcs, source, filename, [0, *out.pcs], merged, xdp_entry, access, lean,
                    free)

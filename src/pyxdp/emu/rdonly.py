"""Load-time refusal of program writes into read-only maps, as the verifier does.

A map is read-only for programs when it has ``BPF_F_RDONLY_PROG`` or is frozen global data
(``.rodata``: the kernel loader creates it with ``BPF_F_RDONLY_PROG``).  The verifier
refuses, with "write into map forbidden", a store (``ST``/``STX``/atomic) through a pointer
into such a map's value, a helper writing into one (``bpf_xdp_load_bytes`` into it ...),
and ``bpf_map_update_elem``/``delete``/``push``/``pop`` on such a map.  This module finds
the same by a small forward data-flow analysis over every path: registers (and 8-byte stack
spills) are tagged when they hold a read-only map handle or a pointer into a read-only
value, through moves, constant adds, lookups, bpf-to-bpf calls and map-iteration
callbacks.  Paths are merged where they meet (a pointer that *may* be read-only stays
tagged), so a program the verifier accepts only thanks to branch pruning on correlated
registers could be refused here; the message names the instruction either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyxdp.emu.cfg import Layout
from pyxdp.errors import EmulatorError
from pyxdp.isa import LD_IMM64, AluOp, Class, Instruction, Mode, PseudoSrc, Size

# helper id -> argument registers it writes memory through
_WRITES_ARG: dict[int, tuple[int, ...]] = {
    4: (1,), 45: (1,), 112: (1,), 113: (1,), 114: (1,), 115: (1,),   # probe_read*
    16: (1,),        # get_current_comm
    26: (3,),        # skb_load_bytes
    67: (2,),        # get_stack
    69: (2,),        # fib_lookup (params are read and written)
    88: (2,), 89: (2,),     # map_pop_elem, map_peek_elem (into the value buffer)
    105: (4,), 106: (4,),   # strtol, strtoul
    165: (1,),       # snprintf
    189: (3,),       # xdp_load_bytes
}
_MAP_WRITERS = {2: "bpf_map_update_elem", 3: "bpf_map_delete_elem",
                87: "bpf_map_push_elem", 88: "bpf_map_pop_elem"}
_LOOKUPS = {1, 195}          # map_lookup_elem, map_lookup_percpu_elem
_FOR_EACH, _LOOP = 164, 181


@dataclass(frozen=True)
class _Map:          # a read-only map handle
    name: str
    value_size: int


@dataclass(frozen=True)
class _Ptr:          # a pointer into a read-only map value (off None: not constant)
    name: str
    value_size: int
    off: int | None


@dataclass(frozen=True)
class _Fp:           # the frame pointer plus a constant
    off: int


@dataclass(frozen=True)
class _Func:         # a callback (LD_IMM64 src=FUNC) starting at an instruction index
    start: int


Tag = _Map | _Ptr | _Fp | _Func | None
# registers r0..r10, then sorted (stack offset, tag) spills
State = tuple[tuple[Tag, ...], tuple[tuple[int, Tag], ...]]


def _join_tag(a: Tag, b: Tag) -> Tag:
    if a == b:
        return a
    if isinstance(a, _Ptr) and isinstance(b, _Ptr):
        return _Ptr(a.name, a.value_size, None)
    if a is None or isinstance(a, _Fp | _Func):   # read-only knowledge wins: may-analysis
        return b if isinstance(b, _Map | _Ptr) else None
    return a


def _join(a: State, b: State) -> State:
    regs = tuple(_join_tag(x, y) for x, y in zip(a[0], b[0]))
    sa, sb = dict(a[1]), dict(b[1])
    stack = {k: _join_tag(sa.get(k), sb.get(k)) for k in sa.keys() | sb.keys()}
    return regs, tuple(sorted((k, v) for k, v in stack.items() if v is not None))


def _forbidden(pc: int, insn: Instruction, detail: str) -> EmulatorError:
    return EmulatorError(f"write into map forbidden: {detail} (the verifier refuses this"
                         " program)", pc, insn)


def check_readonly_writes(layout: Layout, ld_tag: Callable[[int], Tag]) -> None:
    """Raise :class:`EmulatorError` at the first write into a read-only map.

    ``ld_tag(pc)`` says what the ``LD_IMM64`` at ``pc`` loads: a read-only map handle
    (:class:`_Map`), a pointer into a read-only value (:class:`_Ptr`) or None; use
    :func:`readonly_map` and :func:`readonly_value` to build them."""
    insns = layout.insns
    n = len(insns)
    entry: State = ((None,) * 10 + (_Fp(0),), ())
    states: dict[int, State] = {0: entry}
    returns: dict[int, Tag] = {}            # function start -> r0 at its exits
    callers: dict[int, set[int]] = {}       # function start -> pcs of calls into it
    func_of = _function_starts(layout)
    work = [0]

    def push(pc: int, st: State) -> None:
        if pc >= n:
            return
        old = states.get(pc)
        new = st if old is None else _join(old, st)
        if new != old:
            states[pc] = new
            work.append(pc)

    def enter(start: int, args: tuple[Tag, ...], call_pc: int | None) -> None:
        regs = (None, *(None if isinstance(t, _Fp) else t for t in args))
        push(start, (regs + (None,) * (10 - len(regs)) + (_Fp(0),), ()))
        if call_pc is not None:
            callers.setdefault(start, set()).add(call_pc)

    while work:
        pc = work.pop()
        regs_t, stack_t = states[pc]
        regs = list(regs_t)
        stack = dict(stack_t)
        insn = insns[pc]
        cls = insn.opcode & 7
        nxt = [pc + 1]
        if insn.opcode == LD_IMM64:
            tag = ld_tag(pc)
            if tag is None and insn.src == PseudoSrc.FUNC:
                tag = _Func(layout.targets[pc])
            regs[insn.dst] = tag
        elif cls in (Class.ALU, Class.ALU64):
            regs[insn.dst] = _alu(insn, regs, cls == Class.ALU64)
        elif cls == Class.LDX:
            base = regs[insn.src]
            regs[insn.dst] = None
            if isinstance(base, _Fp) and insn.size == Size.DW:
                regs[insn.dst] = stack.get(base.off + insn.off)
        elif cls in (Class.ST, Class.STX):
            base = regs[insn.dst]
            size = insn.size.nbytes
            if isinstance(base, _Ptr):
                off = "?" if base.off is None else base.off + insn.off
                raise _forbidden(pc, insn, f"a {size}-byte store into read-only map"
                                           f" {base.name!r} (value_size={base.value_size}"
                                           f" off={off})")
            if isinstance(base, _Fp):
                at = base.off + insn.off
                for k in [k for k in stack if k < at + size and at < k + 8]:
                    del stack[k]
                if cls == Class.STX and insn.mode == Mode.MEM and insn.size == Size.DW:
                    val = regs[insn.src]
                    if val is not None:
                        stack[at] = val
            if cls == Class.STX and insn.mode == Mode.ATOMIC:
                if insn.imm == 0xF1:
                    regs[0] = None
                elif insn.imm & 1:
                    regs[insn.src] = None
        elif insn.is_helper_call:
            _helper(pc, insn, regs, enter)
            for r in range(1, 6):
                regs[r] = None
        elif insn.is_pseudo_call:
            start = layout.targets[pc]
            enter(start, tuple(regs[1:6]), pc)
            for r in range(1, 6):
                regs[r] = None
            regs[0] = returns.get(start)
        elif insn.is_exit:
            nxt = []
            start = func_of[pc]
            old = returns.get(start)
            new = regs[0] if start not in returns else _join_tag(old, regs[0])
            if start not in returns or new != old:
                returns[start] = new
                for cpc in callers.get(start, ()):   # re-run the callers' continuations
                    if cpc in states:
                        work.append(cpc)
        elif insn.is_branch:
            nxt = [layout.targets[pc]]
            if insn.op != 0x00:     # not JA: falls through too
                nxt.append(pc + 1)
        st: State = (tuple(regs), tuple(sorted(stack.items())))
        for t in nxt:
            push(t, st)


def _alu(insn: Instruction, regs: list[Tag], wide: bool) -> Tag:
    dst = regs[insn.dst]
    by_reg = bool(insn.opcode & 8)
    op = insn.op
    if not wide:
        return None
    if op == AluOp.MOV:
        return regs[insn.src] if by_reg else None
    if op in (AluOp.ADD, AluOp.SUB) and isinstance(dst, _Ptr | _Fp):
        if by_reg:
            return _Ptr(dst.name, dst.value_size, None) if isinstance(dst, _Ptr) else None
        delta = insn.imm if op == AluOp.ADD else -insn.imm
        if isinstance(dst, _Fp):
            return _Fp(dst.off + delta)
        return _Ptr(dst.name, dst.value_size, None if dst.off is None else dst.off + delta)
    return None


def _helper(pc: int, insn: Instruction, regs: list[Tag],
            enter: Callable[[int, tuple[Tag, ...], int | None], None]) -> None:
    hid = insn.imm
    r1 = regs[1]
    result: Tag = None
    if isinstance(r1, _Map):
        if hid in _MAP_WRITERS:
            raise _forbidden(pc, insn, f"{_MAP_WRITERS[hid]} on read-only map {r1.name!r}")
        if hid in _LOOKUPS:
            result = _Ptr(r1.name, r1.value_size, 0)
    for r in _WRITES_ARG.get(hid, ()):
        t = regs[r]
        if isinstance(t, _Ptr):
            raise _forbidden(pc, insn, f"helper {hid} writes through r{r} into read-only"
                                       f" map {t.name!r}")
    cb = regs[2]
    if isinstance(cb, _Func):
        if hid == _FOR_EACH:     # callback(map, key, value, ctx)
            value = _Ptr(r1.name, r1.value_size, 0) if isinstance(r1, _Map) else None
            enter(cb.start, (r1, None, value, regs[3], None), None)
        elif hid == _LOOP:       # callback(index, ctx)
            enter(cb.start, (None, regs[3], None, None, None), None)
    regs[0] = result


def _function_starts(layout: Layout) -> list[int]:
    out = [0] * len(layout.insns)
    for start, sub in layout.subprogs.items():
        for pc in range(sub.start, sub.end):
            out[pc] = start
    return out


def readonly_map(name: str, value_size: int) -> _Map:
    return _Map(name, value_size)


def readonly_value(name: str, value_size: int, offset: int) -> _Ptr:
    return _Ptr(name, value_size, offset)


__all__ = ["check_readonly_writes", "readonly_map", "readonly_value"]

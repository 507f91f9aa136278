"""Loading a program into the emulator and running it.

:func:`load` takes a :class:`~pyxdp.spec.ProgramSpec`, raw bytes or a list of
instructions, validates and translates it once, and returns an :class:`EmuProgram`.  Faults
inside translated code surface as :class:`EmulatorError` carrying the pc (recovered from the
generated source line, so the hot path pays nothing for it), the instruction and, for memory
faults, the address.
"""

from __future__ import annotations

import itertools
import struct
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from pyxdp.abi import ProgType
from pyxdp.backend import RunResult
from pyxdp.emu.cfg import Layout, analyse, invalid
from pyxdp.emu.helpers import IMPLEMENTED, TailCall
from pyxdp.emu.machine import Machine
from pyxdp.emu.maps import EmuMap, create_map, is_readonly, readonly_data_name
from pyxdp.emu.memory import CTX, M64, MEM, PACKET, base_of
from pyxdp.emu.rdonly import check_readonly_writes, readonly_map, readonly_value
from pyxdp.emu.translate import Compiled, translate
from pyxdp.emu.xdp import (
    _HEAD_BUF,
    HEADROOM,
    LINEAR_END,
    LINEAR_MAX,
    PACKET_BASE,
    XdpResult,
    XdpRunResult,
    split_frags,
)
from pyxdp.errors import EmulatorError
from pyxdp.isa import HELPER_NAMES, LD_IMM64, Instruction, PseudoSrc, decode
from pyxdp.maps import MapSpec
from pyxdp.spec import MapRef, ObjectSpec, ProgramSpec

_FDS = itertools.count(1 << 20)
_CTX_ADDR = base_of(CTX)
_PROGRAMS: weakref.WeakValueDictionary[int, EmuProgram] = weakref.WeakValueDictionary()
_VM_FAULTS = (IndexError, KeyError, TypeError, struct.error, ValueError, OverflowError,
              AttributeError)


def program_by_fd(fd: int) -> EmuProgram | None:
    return _PROGRAMS.get(fd)


def register_program(prog: EmuProgram) -> None:
    _PROGRAMS[prog.fd] = prog


class EmuProgram:
    """A translated program bound to a machine and its maps."""

    def __init__(self, insns: list[Instruction], *, name: str = "prog",
                 prog_type: ProgType = ProgType.XDP, maps: Mapping[Any, EmuMap] | None = None,
                 map_refs: Mapping[int, MapRef] | None = None,
                 machine: Machine | None = None, count: bool = False,
                 xdp_rules: bool = False) -> None:
        self.name = name
        self.counting = count
        # an XDP program from a spec is held to the verifier's XDP rules at load; raw
        # instructions (conformance runs: r1 is plain memory there) are not
        self.xdp_rules = xdp_rules and prog_type == ProgType.XDP
        self.type = prog_type
        self.instructions = insns
        self.machine = machine or Machine()
        self.maps: dict[Any, EmuMap] = dict(maps or {})
        self.map_refs = dict(map_refs or {})
        self.fd = next(_FDS)
        register_program(self)
        self.layout: Layout = analyse(insns)
        self._check_readonly()
        self.compiled: Compiled = self._translate()
        self._main = self.compiled.funcs[0]
        self._regions = self.machine.memory.regions
        self._memory = self.machine.memory
        self.run_xdp = self._xdp_runner()   # type: ignore[method-assign]

    # -- translation ---------------------------------------------------------------------
    def _map_for(self, pc: int, insn: Instruction) -> tuple[EmuMap, int]:
        ref = self.map_refs.get(pc)
        if ref is not None:
            key: Any = ref.map_name
            offset = ref.offset
        else:
            key = insn.imm & 0xFFFFFFFF
            offset = (insn.imm >> 32) & 0xFFFFFFFF
        m = self.maps.get(key)
        if m is None:
            raise invalid(f"LD_IMM64 refers to map {key!r}, which was not given", pc, insn)
        return m, offset

    def _check_readonly(self) -> None:
        """Refuse stores into read-only maps (``.rodata``, ``BPF_F_RDONLY_PROG``) at load,
        as the verifier does (see :mod:`pyxdp.emu.rdonly`)."""
        if not any(is_readonly(m) for m in self.maps.values()):
            return

        def ld_tag(pc: int) -> Any:
            insn = self.instructions[pc]
            ref = self.map_refs.get(pc)
            src = ref.kind if ref is not None else insn.src
            if src not in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX, PseudoSrc.MAP_VALUE,
                           PseudoSrc.MAP_IDX_VALUE):
                return None
            m, offset = self._map_for(pc, insn)
            if not is_readonly(m):
                return None
            if src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX):
                return readonly_map(m.name, m.value_size)
            return readonly_value(m.name, m.value_size, offset)
        check_readonly_writes(self.layout, ld_tag)

    def _resolve_ld(self, pc: int) -> int:
        insn = self.instructions[pc]
        src = insn.src
        ref = self.map_refs.get(pc)
        if ref is not None:
            src = ref.kind
        if src == PseudoSrc.IMM64:
            return insn.imm & M64
        if src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX):
            return self.machine.map_handle(self._map_for(pc, insn)[0])
        if src in (PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE):
            m, offset = self._map_for(pc, insn)
            return self.machine.map_value_address(m, offset)
        if src == PseudoSrc.FUNC:
            return self.machine.func_handle(self, self.layout.targets[pc])
        raise invalid(f"LD_IMM64 pseudo source {src} is not supported", pc, insn)

    def _translate(self) -> Compiled:
        helper_ids: set[int] = set()
        fast: dict[int, str] = {}
        fast_keys: dict[int, tuple[str, int, str]] = {}
        env = self.machine.env()
        for pc, insn in enumerate(self.instructions):
            if insn.is_helper_call:
                if insn.imm not in IMPLEMENTED:
                    name = HELPER_NAMES.get(insn.imm, "unknown")
                    raise EmulatorError(f"helper bpf_{name} (id {insn.imm}) is not"
                                        " implemented by the emulator", pc, insn)
                helper_ids.add(insn.imm)
            elif insn.opcode == LD_IMM64 and (insn.src == PseudoSrc.MAP_FD or (
                    self.map_refs.get(pc, MapRef("", PseudoSrc.IMM64)).kind
                    == PseudoSrc.MAP_FD)):
                m = self._map_for(pc, insn)[0]
                handle = self.machine.map_handle(m)
                if handle not in fast:
                    fast[handle] = f"LK{len(fast)}"
                name = fast[handle]
                env[name] = self.machine.fast_lookup(m)
                by_key = self.machine.fast_lookup_key(m)
                if by_key is not None:
                    kind, lookup, address = by_key
                    env[name + "K"] = lookup
                    if address is not None:
                        env[name + "KA"] = address
                    fast_keys[handle] = (name + "K", m.key_size, kind)
        return translate(self.layout, env, helper_ids, self._resolve_ld, fast, fast_keys,
                         self.machine.budget, f"<pyxdp.emu:{self.name}:{self.fd}>",
                         count=self.counting, xdp_rules=self.xdp_rules)

    @property
    def source(self) -> str:
        """The generated Python source (for the curious and for debugging)."""
        return self.compiled.source

    # -- running -------------------------------------------------------------------------
    def _execute(self, r1: int, r2: int, pending: Exception | None = None) -> int:
        """Run to completion following tail calls; ``pending`` is an exception the first
        attempt already raised (the caller's fast path), handled as if raised here."""
        prog: EmuProgram = self
        while True:
            try:
                if pending is not None:
                    exc, pending = pending, None
                    raise exc
                return prog._main(r1, r2, 0, 0, 0, 0)
            except TailCall as tc:
                nxt: EmuProgram = tc.program
                if nxt.machine is not prog.machine:
                    nxt.machine.adopt(prog.machine)
                prog = nxt
            except EmulatorError as e:
                if e.pc is None:
                    raise prog._locate(e, e.__traceback__) from None
                raise
            except _VM_FAULTS as e:
                raise prog._locate(e, e.__traceback__) from e
            except RecursionError as e:  # pragma: no cover - depth is capped at 8 frames
                raise EmulatorError("Python recursion limit hit") from e

    def _locate(self, exc: BaseException, tb: TracebackType | None) -> EmulatorError:
        """Turn an exception raised inside generated code into an EmulatorError with pc."""
        pc = address = None
        frame_locals: dict[str, Any] = {}
        line = 0
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.compiled.filename:
                line = tb.tb_lineno
                pc = self.compiled.line_pc[line]
                frame_locals = tb.tb_frame.f_locals
            tb = tb.tb_next
        if line in self.compiled.merged:
            pc = self._merged_fault_pc(line, frame_locals, pc)
        if isinstance(exc, EmulatorError):
            return EmulatorError(exc.reason, pc, self._insn(pc), exc.address)
        insn = self._insn(pc)
        if insn is not None and insn.is_load_store:
            base = frame_locals.get(f"r{insn.src if insn.opcode & 7 == 1 else insn.dst}")
            if line in self.compiled.access:   # the base register was never assigned
                try:
                    base = eval(self.compiled.access[line],  # our own expression
                                dict(self.compiled.env), dict(frame_locals))
                except Exception:   # a report without the address beats none at all
                    base = None
            address = (base + insn.off) & M64 if isinstance(base, int) else None
        what = "invalid memory access" if address is not None else "fault"
        detail = f"{what} ({type(exc).__name__}: {exc})"
        if isinstance(exc, TypeError) and ("read-write" in str(exc) or "read-only" in str(exc)):
            detail = ("write into read-only memory (a map programs may only read: .rodata or"
                      " BPF_F_RDONLY_PROG)")
        return EmulatorError(detail, pc, insn, address)

    def _merged_fault_pc(self, line: int, frame_locals: dict[str, Any], pc: int | None
                         ) -> int | None:
        """Which member of a merged load faulted: the first one out of its buffer."""
        (buf_name, off_expr), (_, members) = self.compiled.merged[line]
        buf = frame_locals.get(buf_name)
        off = int(off_expr) if off_expr.isdigit() else frame_locals.get(off_expr)
        if buf is None or not isinstance(off, int):
            return pc
        for member_pc, moff, size in members:
            if off + moff + size > len(buf):
                return member_pc
        return pc

    def _insn(self, pc: int | None) -> Instruction | None:
        return self.instructions[pc] if pc is not None else None

    def run(self, mem: bytes | bytearray | None = None) -> int:
        """Run with the conformance contract: r1 = pointer to ``mem`` (or 0), r2 = its length.

        Returns the full 64-bit r0.  ``mem`` is copied; the program's writes are discarded.
        """
        m = self.machine
        m.begin(None)
        try:
            if mem is None:
                m.memory.regions.pop(MEM, None)
                return self._execute(0, 0)
            m.memory.regions[MEM] = bytearray(mem)
            return self._execute(base_of(MEM), len(mem))
        finally:
            m.finish()

    def run_xdp(self, packet: bytes, ingress_ifindex: int = 1, rx_queue_index: int = 0
                ) -> XdpResult:
        """Run as XDP on ``packet``: r1 points at a ``struct xdp_md`` over a 256-byte
        headroom buffer; returns the verdict, the (possibly rewritten) packet and more.

        (Each instance replaces this method with the closure :meth:`_xdp_runner` builds.)
        """
        return self._xdp_runner()(packet, ingress_ifindex, rx_queue_index)

    def _xdp_runner(self) -> Callable[..., XdpResult]:
        """``run_xdp`` as a closure over everything it touches.

        This is the hot path of every packet test, so it is written out by hand: a fresh
        frame buffer (which the result references instead of copying the packet out), the
        context bytes from a per-length cache, the translated XDP entry called with the
        buffer, the context and data_end themselves, and no run-state reset up front
        because every run leaves the machine clean (:meth:`Machine.finish`; helpers that
        move ``data`` or ``data_meta`` mark the run dirty, which is when they are put
        back).  When the entry needs nothing but its arguments (no helper calls, no access
        through the region table), even publishing the frame to the machine is left to
        the slow path, which is the only one that can need it.
        """
        m = self.machine
        state = m.xdp_state
        regions = self._regions
        memory = self._memory
        fresh_ctx = state.fresh_ctx            # cleared in place, never replaced
        ctx_bytes, set_rx, slow = state.ctx_bytes, state.set_rx, self._run_xdp_slow
        main = self._main
        big = self._run_xdp_frags
        entry = self.compiled.xdp or (lambda _p, _c, _e: main(_CTX_ADDR, 0, 0, 0, 0, 0))
        lazy, head, pb = XdpRunResult, _HEAD_BUF, PACKET_BASE

        def publish(buf: bytearray, ctx: bytes) -> None:
            state.buf = regions[PACKET] = buf
            regions[CTX] = ctx
            m.xdp = state

        def finish(res: XdpRunResult) -> None:
            if state.data != HEADROOM or state.meta != HEADROOM:
                res._data, res._meta = state.data, state.meta
                state.data = state.meta = HEADROOM
            res._redirect, res._trace = m.redirect, m.trace or None
            m.trace = []
            m.finish()

        def run_xdp(packet: bytes, ingress_ifindex: int = 1, rx_queue_index: int = 0
                    ) -> XdpResult:
            buf = head + packet
            if ingress_ifindex != state.ingress_ifindex or (
                    rx_queue_index != state.rx_queue_index):
                set_rx(ingress_ifindex, rx_queue_index)
            n = len(buf)
            if n > LINEAR_END:
                return big(packet, ingress_ifindex, rx_queue_index)
            state.buf = regions[PACKET] = buf
            ctx = fresh_ctx.get(n)
            if ctx is None:
                ctx = ctx_bytes()
            regions[CTX] = ctx
            m.xdp = state
            try:   # fast path: no tail call, no fault
                r0 = entry(buf, ctx, pb + n)
            except Exception as e:
                return slow(state, e)
            res = lazy()
            res.r0 = r0
            res._buf = buf
            if m.dirty or memory.full:
                finish(res)
            return res

        def run_xdp_lean(packet: bytes, ingress_ifindex: int = 1, rx_queue_index: int = 0
                         ) -> XdpResult:
            buf = head + packet
            if ingress_ifindex != state.ingress_ifindex or (
                    rx_queue_index != state.rx_queue_index):
                set_rx(ingress_ifindex, rx_queue_index)
            n = len(buf)
            if n > LINEAR_END:
                return big(packet, ingress_ifindex, rx_queue_index)
            ctx = fresh_ctx.get(n)
            if ctx is None:
                state.buf = buf
                ctx = ctx_bytes()
            try:
                r0 = entry(buf, ctx, pb + n)
            except Exception as e:
                publish(buf, ctx)
                return slow(state, e)
            res = lazy()
            res.r0 = r0
            res._buf = buf
            if m.dirty or memory.full:
                finish(res)
            return res
        return run_xdp_lean if self.compiled.xdp_lean else run_xdp

    def _run_xdp_frags(self, packet: bytes, ingress_ifindex: int, rx_queue_index: int
                       ) -> XdpResult:
        """A frame longer than the linear part: the first ``LINEAR_MAX`` bytes are the
        packet the program can address (``data_end``), the rest are frags reached through
        ``bpf_xdp_get_buff_len``/``load_bytes``/``store_bytes``/``adjust_tail``, exactly
        as the kernel's test run builds the frame."""
        m = self.machine
        state = m.xdp_state
        frags = split_frags(packet)
        if ingress_ifindex != state.ingress_ifindex or (
                rx_queue_index != state.rx_queue_index):
            state.set_rx(ingress_ifindex, rx_queue_index)
        buf = _HEAD_BUF + packet[:LINEAR_MAX]
        state.buf = self._regions[PACKET] = buf
        state.frags = frags
        self._regions[CTX] = state.ctx_bytes()
        m.xdp = state
        try:
            r0 = self._execute(_CTX_ADDR, 0)
            final = m.xdp or state
            res = XdpRunResult()
            res.r0, res._data, res._meta = r0, final.data, final.meta
            res._buf = final.buf + b"".join(final.frags) if final.frags else final.buf
            res._redirect, res._trace = m.redirect, m.trace or None
            return res
        finally:
            state.frags = []
            state.data = state.meta = HEADROOM
            m.trace = []
            m.finish()

    def _run_xdp_slow(self, state: Any, pending: Exception) -> XdpResult:
        """Tail calls and faults: finish the run through :meth:`_execute`."""
        m = self.machine
        try:
            r0 = self._execute(_CTX_ADDR, 0, pending=pending)
            final = m.xdp or state
            res = XdpRunResult()
            res.r0, res._buf, res._data, res._meta = r0, final.buf, final.data, final.meta
            res._redirect, res._trace = m.redirect, m.trace or None
            return res
        finally:
            state.data = state.meta = HEADROOM
            m.trace = []
            m.finish()

    def run_packet(self, packet: bytes, *, ingress_ifindex: int | None = None,
                   rx_queue_index: int = 0) -> RunResult:
        """The backend protocol's run (:class:`pyxdp.backend.LoadedProgram`): one XDP run
        on a fresh frame; without ``ingress_ifindex`` the device is ifindex 1, as the
        kernel's test run reports its loopback device."""
        if self.type != ProgType.XDP:
            raise EmulatorError(f"the emulator runs packets through XDP programs only, not"
                                f" {self.type.name} ({self.name!r})")
        if ingress_ifindex is None and rx_queue_index:
            raise ValueError("rx_queue_index needs an ingress_ifindex")
        res = self.run_xdp(packet, 1 if ingress_ifindex is None else ingress_ifindex,
                           rx_queue_index)
        return RunResult(res.r0 & 0xFFFFFFFF, res.packet, None)

    @property
    def insn_count(self) -> int:
        """Instructions executed by the last run (programs loaded with ``count=True``)."""
        if not self.counting:
            raise EmulatorError("load the program with count=True to count instructions")
        return self.machine.insn_count[0]

    def __repr__(self) -> str:
        return (f"<EmuProgram {self.name!r} {self.type.name} "
                f"{len(self.instructions)} insns fd={self.fd}>")


def _maps_from(specs: Mapping[str, Any], ncpus: int | None) -> dict[Any, EmuMap]:
    out: dict[Any, EmuMap] = {}
    for name, value in specs.items():
        if isinstance(value, MapSpec):
            value = create_map(value, ncpus=ncpus)
            value.prog_readonly = isinstance(name, str) and readonly_data_name(name)
        out[name] = value
    return out


def load(program: ProgramSpec | bytes | Iterable[Instruction], *,
         maps: ObjectSpec | Mapping[Any, EmuMap | MapSpec] | None = None,
         machine: Machine | None = None, name: str | None = None,
         ncpus: int | None = None, budget: int | None = None, count: bool = False
         ) -> EmuProgram:
    """Validate and translate a program for the emulator.

    ``maps`` names the maps the program's ``LD_IMM64`` instructions refer to: an
    ``ObjectSpec`` (its map specs are instantiated), or a dict from map name (for a
    ``ProgramSpec``'s ``map_refs``) or fd number (for raw instructions) to an emulated map
    object or a ``MapSpec`` to instantiate.  ``budget`` caps executed instructions per
    function invocation (default 1,000,000).  ``count=True`` translates the program with
    an executed-instruction counter (slower; read ``insn_count`` after a run).
    """
    if machine is None:
        machine = Machine(budget=budget) if budget is not None else Machine()
    elif budget is not None:
        machine.budget = budget
    if isinstance(maps, ObjectSpec):
        maps = maps.maps
    emu_maps = _maps_from(maps or {}, ncpus)
    if isinstance(program, ProgramSpec):
        return EmuProgram(list(program.instructions), name=name or program.name,
                          prog_type=program.type, maps=emu_maps, map_refs=program.map_refs,
                          machine=machine, count=count, xdp_rules=True)
    if isinstance(program, bytes | bytearray):
        insns = decode(program)
    else:
        insns = list(program)
    return EmuProgram(insns, name=name or "prog", maps=emu_maps, machine=machine, count=count)


def run_packets(program: EmuProgram, packets: Iterable[bytes], ingress_ifindex: int = 1
                ) -> Counter[str]:
    """Run ``program`` over ``packets``; count verdicts by name (``XDP_PASS`` ...)."""
    counts: Counter[str] = Counter()
    for pkt in packets:
        counts["XDP_" + program.run_xdp(pkt, ingress_ifindex).verdict.name] += 1
    return counts


__all__ = ["EmuProgram", "load", "program_by_fd", "register_program", "run_packets"]

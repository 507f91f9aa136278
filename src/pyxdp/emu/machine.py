"""The machine: memory, helper state (CPU, clock, random numbers, FIB, trace output) and the
environment handed to translated code.

Several programs may share one machine (they then share map pointers and the trace);
``pyxdp.emu.load`` creates a fresh machine unless given one.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from typing import Any

from pyxdp.emu import alu
from pyxdp.emu.fib import Fib
from pyxdp.emu.helpers import IMPLEMENTED, Helpers
from pyxdp.emu.maps import ArrayMap, EmuMap, HashMap, MapOfMaps, RingBuf
from pyxdp.emu.memory import (
    CTX,
    FUNC_HANDLE_BASE,
    M64,
    MAP_HANDLE_BASE,
    MAX_FRAMES,
    OFFSET_MASK,
    PACKET,
    SHIFT,
    Memory,
    frame_pointer,
)
from pyxdp.emu.xdp import Redirect, XdpState
from pyxdp.errors import EmulatorError
from pyxdp.isa import HELPER_NAMES

DEFAULT_BUDGET = 1_000_000
_ATOMIC_OPS: dict[int, Callable[[int, int], int]] = {
    0x00: lambda a, b: a + b, 0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b,
    0xA0: lambda a, b: a ^ b, 0xE0: lambda a, b: b,
}


KeyedLookup = Callable[[bytes], tuple[int, Any, int]]
# how translated code looks up a key it read as bytes: ("hash", dict.get of the store, value
# buffer -> address) or ("array", key -> (address, buffer, offset), None)
KeyedAccess = tuple[str, Callable[..., Any], Callable[[Any], int] | None]


def _raise_runaway(budget: int) -> Callable[[int], None]:
    def runaway(pc: int) -> None:
        raise EmulatorError(f"instruction budget of {budget} exhausted (runaway loop?)", pc)
    return runaway


def _raise_deep(pc: int) -> None:
    raise EmulatorError(f"call stack deeper than {MAX_FRAMES} frames", pc)


class Machine:
    """Shared state of the programs loaded into it.

    ``cpu`` is what ``bpf_get_smp_processor_id`` returns and which per-CPU slot map helpers
    use; ``seed`` seeds ``bpf_get_prandom_u32``; ``clock`` returns nanoseconds for
    ``bpf_ktime_get_ns`` (monotonic time by default); ``fib`` answers ``bpf_fib_lookup``.
    """

    def __init__(self, *, cpu: int = 0, seed: int = 0, clock: Callable[[], int] | None = None,
                 fib: Fib | None = None, budget: int = DEFAULT_BUDGET) -> None:
        self.memory = Memory()
        self.cpu = cpu
        self.rng = random.Random(seed)
        self.clock = clock or time.monotonic_ns
        self.fib = fib or Fib()
        self.budget = budget
        self.maps_by_handle: dict[int, EmuMap] = {}
        self._handle_of: dict[int, int] = {}
        self._funcs: dict[int, tuple[Any, int]] = {}
        self.trace: list[str] = []
        self.redirect: Redirect | None = None
        self.xdp: XdpState | None = None
        self.xdp_state = XdpState()     # reused by run_xdp for every packet
        self.tail_calls = 0
        # set by helpers that leave per-run state behind (trace, redirect, reservations,
        # tail calls): the fast run_xdp path then calls finish()
        self.dirty = False
        self.insn_count = [0]           # executed instructions, for counting translations
        self.reserved: dict[int, tuple[RingBuf, bytearray]] = {}
        self.helpers = Helpers(self)
        self.helper_table: dict[int, Callable[..., int]] = {
            hid: getattr(self.helpers, name) for hid, name in IMPLEMENTED.items()}

    # -- handles -------------------------------------------------------------------------
    def map_handle(self, m: EmuMap) -> int:
        """The value ``LD_IMM64 src=MAP_FD`` puts in a register for map ``m``."""
        h = self._handle_of.get(id(m))
        if h is None:
            h = MAP_HANDLE_BASE + len(self._handle_of) * 8
            self._handle_of[id(m)] = h
            self.maps_by_handle[h] = m
        return h

    def map_value_address(self, m: EmuMap, offset: int) -> int:
        """Address of value 0 plus ``offset`` (``LD_IMM64 src=MAP_VALUE``, global data)."""
        loc = m.emu_lookup((0).to_bytes(m.key_size, "little"), self.cpu)
        if loc is None:
            raise EmulatorError(f"map {m.name!r} has no value 0 to point into")
        return self.memory.map_buffer(loc[0], m.static_values) + loc[1] + offset

    def func_handle(self, program: Any, start: int) -> int:
        h = FUNC_HANDLE_BASE + len(self._funcs) * 8
        self._funcs[h] = (program, start)
        return h

    def callback(self, handle: int) -> Callable[..., int]:
        entry = self._funcs.get(handle)
        if entry is None:
            raise EmulatorError(f"{handle:#x} is not a callback function pointer")
        program, start = entry
        return program.compiled.funcs[start]

    # -- run state -----------------------------------------------------------------------
    def begin(self, xdp: XdpState | None) -> None:
        mem = self.memory
        if mem.full:
            mem.flush_dynamic(force=True)
        self.trace = []
        self.dirty = False
        self.redirect = None
        self.tail_calls = 0
        if self.reserved:
            self.reserved.clear()
        self.xdp = xdp
        if xdp is not None:
            regions = mem.regions
            regions[PACKET] = xdp.buf
            regions[CTX] = xdp.ctx_bytes()

    def finish(self) -> None:
        """Leave the run state clean between runs (the fast ``run_xdp`` path relies on it
        instead of resetting everything up front)."""
        if self.trace:
            self.trace = []
        self.redirect = None
        self.tail_calls = 0
        if self.reserved:
            self.reserved.clear()
        if self.memory.full:
            self.memory.flush_dynamic(force=True)
        self.dirty = False

    def refresh_ctx(self) -> None:
        if self.xdp is not None:
            self.memory.regions[CTX] = self.xdp.ctx_bytes()

    def adopt(self, other: Machine) -> None:
        """Continue a run started on ``other`` (a tail call into a program loaded elsewhere)."""
        self.trace = other.trace
        self.redirect = other.redirect
        self.tail_calls = other.tail_calls
        self.xdp = other.xdp
        for region in (PACKET, CTX):
            if region in other.memory.regions:
                self.memory.regions[region] = other.memory.regions[region]

    # -- the environment of translated code ---------------------------------------------
    def env(self) -> dict[str, Any]:
        mem = self.memory

        def atomic(addr: int, size: int, op: int, src: int) -> int:
            buf, off = mem.locate(addr, size)
            fmt = "<I" if size == 4 else "<Q"
            mask = (1 << (8 * size)) - 1
            old = struct.unpack_from(fmt, buf, off)[0]
            struct.pack_into(fmt, buf, off, _ATOMIC_OPS[op & 0xF0](old, src & mask) & mask)
            return old

        def cmpxchg(addr: int, size: int, r0: int, src: int) -> int:
            buf, off = mem.locate(addr, size)
            fmt = "<I" if size == 4 else "<Q"
            mask = (1 << (8 * size)) - 1
            old = struct.unpack_from(fmt, buf, off)[0]
            if old == r0 & mask:
                struct.pack_into(fmt, buf, off, src & mask)
            return old

        def callx(target: int, r1: int, r2: int, r3: int, r4: int, r5: int, depth: int
                  ) -> int:
            fn = self.helper_table.get(target)
            if fn is None:
                name = HELPER_NAMES.get(target, "?")
                raise EmulatorError(f"callx to unknown or unimplemented helper {target}"
                                    f" ({name})")
            if target in (164, 181):
                return fn(r1, r2, r3, r4, r5, depth)
            return fn(r1, r2, r3, r4, r5)

        env: dict[str, Any] = {
            "M": mem.regions, "STK": mem.stacks,
            "FP": [frame_pointer(d) for d in range(MAX_FRAMES)],
            "SDIV": alu.sdiv, "SMOD": alu.smod, "SW64": alu.swap64,
            "ATOM": atomic, "CMPX": cmpxchg, "CALLX": callx,
            "RUNAWAY": _raise_runaway(self.budget), "DEEP": _raise_deep,
            "CNT": self.insn_count,
        }
        for name, fmt in (("U16", "<H"), ("U32", "<I"), ("U64", "<Q"), ("B16", ">H"),
                          ("B32", ">I"), ("B64", ">Q"), ("S8", "<b"), ("S16", "<h"),
                          ("S32", "<i")):
            env[name] = struct.Struct(fmt).unpack_from
        for name, fmt in (("P16", "<H"), ("P32", "<I"), ("P64", "<Q")):
            env[name] = struct.Struct(fmt).pack_into
        for hid, fn in self.helper_table.items():
            env[f"h{hid}"] = fn
        return env

    def fast_lookup_key(self, m: EmuMap) -> KeyedAccess | None:
        """A ``map_lookup_elem`` taking the key bytes, for keys at a constant stack slot;
        None when only the address-keyed form exists for this kind of map.  A plain hash
        map is looked up by the generated code itself (``store.get(key, NOVALUE)[0]``)."""
        if isinstance(m, HashMap) and not m.lru and not m.percpu:
            return "hash", m.store.get, _value_address(self.memory)
        if isinstance(m, ArrayMap) and not m.percpu:
            return "array", _array_lookup_key(self.memory, m), None
        return None

    def fast_lookup(self, m: EmuMap) -> Callable[[int], int]:
        """A ``map_lookup_elem`` specialised for one map (the common ``r1 = map ll`` case)."""
        if isinstance(m, HashMap) and not m.lru and not m.percpu:
            return _hash_lookup(self.memory, m)
        if isinstance(m, ArrayMap) and not m.percpu:
            return _array_lookup(self.memory, m)
        mem = self.memory
        read, map_buffer = mem.read, mem.map_buffer
        ks, static, lookup = m.key_size, m.static_values, m.emu_lookup
        cpu_of = self
        if isinstance(m, MapOfMaps):
            inner_of, handle = m.inner, self.map_handle

            def lk_map(kaddr: int) -> int:
                inner = inner_of(read(kaddr, ks))
                return 0 if inner is None else handle(inner)
            return lk_map

        def lk(kaddr: int) -> int:
            loc = lookup(read(kaddr, ks), cpu_of.cpu)
            if loc is None:
                return 0
            return map_buffer(loc[0], static) + loc[1]
        return lk


_MISS = (0, None, 0)


def _value_address(mem: Memory) -> Callable[[Any], int]:
    """Address of a map value buffer (0 for None, a missed lookup), mapping it on first
    use: what an inlined hash lookup's r0 becomes when the program reads it as a number."""
    addr_of, map_buffer = mem.dynamic_addresses.get, mem.map_buffer

    def address(v: Any) -> int:
        if v is None:
            return 0
        return addr_of(id(v)) or map_buffer(v)
    return address


def _array_lookup_key(mem: Memory, m: ArrayMap) -> KeyedLookup:
    limit, stride = m.spec.max_entries, m._stride
    buf = m.vm_buffer()
    base = mem.map_buffer(buf, static=True)
    from_bytes = int.from_bytes

    def lookup(key: bytes) -> tuple[int, Any, int]:
        idx = from_bytes(key, "little")
        if idx >= limit:
            return _MISS
        off = idx * stride
        return base + off, buf, off
    return lookup


def _hash_lookup(mem: Memory, m: HashMap) -> Callable[[int], int]:
    """Hash lookup without the generic layers: key bytes -> value buffer -> its address."""
    regions, ks = mem.regions, m.key_size
    store, addr_of, map_buffer = m.store, mem.dynamic_addresses, mem.map_buffer

    def lookup(kaddr: int) -> int:
        buf = regions.get(kaddr >> SHIFT)
        o = kaddr & OFFSET_MASK
        key = bytes(buf[o:o + ks]) if buf is not None else b""
        if len(key) != ks:
            raise EmulatorError(f"map key of {ks} bytes is not readable", address=kaddr)
        bufs = store.get(key)
        if bufs is None:
            return 0
        v = bufs[0]
        base = addr_of.get(id(v))
        return base if base is not None else map_buffer(v)
    return lookup


def _array_lookup(mem: Memory, m: ArrayMap) -> Callable[[int], int]:
    regions, limit, stride = mem.regions, m.spec.max_entries, m._stride
    base = mem.map_buffer(m.vm_buffer(), static=True)
    u32 = struct.Struct("<I").unpack_from

    def lookup(kaddr: int) -> int:
        buf = regions.get(kaddr >> SHIFT)
        try:
            # an unmapped region (None) raises TypeError: no extra test on this hot path
            idx = u32(buf, kaddr & OFFSET_MASK)[0]  # type: ignore[arg-type]
        except (TypeError, struct.error):
            raise EmulatorError("map key of 4 bytes is not readable", address=kaddr) from None
        return base + idx * stride if idx < limit else 0
    return lookup


__all__ = ["DEFAULT_BUDGET", "M64", "Machine"]

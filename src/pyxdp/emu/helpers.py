"""Kernel helper functions, implemented against one :class:`~pyxdp.emu.machine.Machine`.

Each helper takes the five argument registers and returns r0 as an unsigned 64-bit int;
kernel error returns are ``-errno`` reduced modulo 2**64, exactly what a program sees.
``IMPLEMENTED`` maps helper ids to method names; the translator refuses programs calling
anything else, naming the helper.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import struct
from typing import TYPE_CHECKING, Any

from pyxdp.abi import MapType
from pyxdp.emu.fib import AF_INET, AF_INET6, FIB_PARAMS_SIZE, FibResult
from pyxdp.emu.maps import (
    ArrayMap,
    EmuMap,
    HashMap,
    MapOfMaps,
    PerfEventArray,
    ProgArray,
    RingBuf,
    SlotMap,
)
from pyxdp.emu.memory import M64
from pyxdp.emu.printk import render
from pyxdp.emu.xdp import Redirect
from pyxdp.errors import EmulatorError
from pyxdp.isa import HELPERS, XdpAction

if TYPE_CHECKING:
    from pyxdp.emu.machine import Machine

MAX_TAIL_CALLS = 33
MAX_LOOPS = 1 << 23
BPF_F_BROADCAST = 1 << 3
BPF_F_EXCLUDE_INGRESS = 1 << 4
_ACTION_MASK = 0x3


class TailCall(Exception):
    """Raised by ``bpf_tail_call`` to replace the running program."""

    def __init__(self, program: Any) -> None:
        self.program = program


def _neg(err: int) -> int:
    return -err & M64


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


class Helpers:
    """The helper implementations; bound methods end up as ``h<id>`` in generated code."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.mem = machine.memory

    def _map(self, handle: int, what: str = "map") -> EmuMap:
        m = self.m.maps_by_handle.get(handle)
        if m is None:
            raise EmulatorError(f"{what} argument {handle:#x} is not a map pointer")
        return m

    # -- maps ----------------------------------------------------------------------------
    def map_lookup_elem(self, r1: int, r2: int, *_: int) -> int:
        m = self._map(r1)
        if isinstance(m, MapOfMaps):
            inner = m.inner(self.mem.read(r2, m.key_size))
            return 0 if inner is None else self.m.map_handle(inner)
        loc = m.emu_lookup(self.mem.read(r2, m.key_size), self.m.cpu)
        if loc is None:
            return 0
        return self.mem.map_buffer(loc[0], m.static_values) + loc[1]

    def map_lookup_percpu_elem(self, r1: int, r2: int, r3: int, *_: int) -> int:
        m = self._map(r1)
        if r3 >= m.ncpus:
            return 0
        loc = m.emu_lookup(self.mem.read(r2, m.key_size), r3)
        return 0 if loc is None else self.mem.map_buffer(loc[0], m.static_values) + loc[1]

    def map_update_elem(self, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
        m = self._map(r1)
        key = self.mem.read(r2, m.key_size)
        return m.emu_update(key, self.mem.read(r3, m.value_size), r4, self.m.cpu) & M64

    def map_delete_elem(self, r1: int, r2: int, *_: int) -> int:
        m = self._map(r1)
        return m.emu_delete(self.mem.read(r2, m.key_size)) & M64

    # -- bpf_spin_lock ---------------------------------------------------------------------
    def spin_lock(self, r1: int, *_: int) -> int:
        """One CPU runs at a time here, so a lock is free when taken; a lock found held
        means the program took it twice (the kernel's verifier refuses that)."""
        if self.mem.read(r1, 4) != bytes(4):
            raise EmulatorError("bpf_spin_lock on a lock already held: the kernel would"
                                " spin forever (the verifier refuses this program)")
        self.mem.write(r1, b"\1\0\0\0")
        self.m.dirty = True
        return 0

    def spin_unlock(self, r1: int, *_: int) -> int:
        if self.mem.read(r1, 4) == bytes(4):
            raise EmulatorError("bpf_spin_unlock on a lock not held")
        self.mem.write(r1, bytes(4))
        self.m.dirty = True
        return 0

    # -- misc ----------------------------------------------------------------------------
    def ktime_get_ns(self, *_: int) -> int:
        return self.m.clock() & M64

    ktime_get_boot_ns = ktime_get_coarse_ns = ktime_get_tai_ns = ktime_get_ns

    def get_prandom_u32(self, *_: int) -> int:
        return self.m.rng.getrandbits(32)

    def get_smp_processor_id(self, *_: int) -> int:
        return self.m.cpu

    def get_numa_node_id(self, *_: int) -> int:
        return 0

    def trace_printk(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        fmt = self.mem.read_cstr(r1, r2)
        text = render(fmt, [r3, r4, r5], lambda a: self.mem.read_cstr(a, 256))
        self.m.trace.append(text)
        self.m.dirty = True
        return len(text) + 1

    def csum_diff(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        if r2 % 4 or r4 % 4 or r2 > 512 or r4 > 512:
            return _neg(_errno.EINVAL)
        total = r5 & 0xFFFFFFFF
        if r2:
            for (w,) in struct.iter_unpack("<I", self.mem.read(r1, r2)):
                total += w ^ 0xFFFFFFFF
        if r4:
            for (w,) in struct.iter_unpack("<I", self.mem.read(r3, r4)):
                total += w
        while total >> 32:
            total = (total & 0xFFFFFFFF) + (total >> 32)
        return total

    def tail_call(self, r1: int, r2: int, r3: int, *_: int) -> int:
        m = self._map(r2, "prog_array")
        if not isinstance(m, ProgArray):
            raise EmulatorError("tail_call needs a PROG_ARRAY map")
        prog = m.programs.get(r3 & 0xFFFFFFFF)
        if prog is None or self.m.tail_calls >= MAX_TAIL_CALLS:
            return _neg(_errno.ENOENT)
        self.m.tail_calls += 1
        self.m.dirty = True
        raise TailCall(prog)

    def loop(self, r1: int, r2: int, r3: int, r4: int, r5: int, depth: int = 0) -> int:
        if r4:
            return _neg(_errno.EINVAL)
        if r1 > MAX_LOOPS:
            return _neg(_errno.E2BIG)
        fn = self.m.callback(r2)
        for i in range(r1):
            if fn(i, r3, 0, 0, 0, depth + 1) == 1:
                return i + 1
        return r1

    def for_each_map_elem(self, r1: int, r2: int, r3: int, r4: int, r5: int,
                          depth: int = 0) -> int:
        """Call the callback ``(map, &key, &value, ctx)`` for every element until it
        returns non-zero; r0 is how many elements were visited (the stopping one too).
        Keys are read-only; values are live, as in the kernel."""
        if r4:
            return _neg(_errno.EINVAL)
        m = self._map(r1)
        fn = self.m.callback(r2)
        mem, cpu = self.mem, self.m.cpu
        if isinstance(m, ArrayMap):
            buf = m.vm_buffer(cpu)
            base, stride = mem.map_buffer(buf, True), m._stride
            elems: Any = ((i.to_bytes(4, "little"), base + i * stride)
                          for i in range(m.spec.max_entries))
        elif isinstance(m, HashMap):
            store = m.store
            snapshot = list(store.items())

            def live() -> Any:
                for key, bufs in snapshot:
                    if store.get(key) is bufs:    # deleted by an earlier callback: skipped
                        yield key, mem.map_buffer(bufs[cpu if m.percpu else 0])
            elems = live()
        else:
            raise EmulatorError(f"bpf_for_each_map_elem: the emulator iterates array and"
                                f" hash maps, not {m.type.name} ({m.name!r})")
        n = 0
        kbuf = bytearray(m.key_size)
        kview = memoryview(kbuf).toreadonly()   # a store through the key faults
        kaddr = mem.map_buffer(kview)
        try:
            for key, vaddr in elems:
                kbuf[:] = key
                n += 1
                if fn(r1, kaddr, vaddr, r3, 0, depth + 1):
                    break
        finally:
            mem.unmap(kview)
        return n

    # -- ring buffer ---------------------------------------------------------------------
    def _ringbuf(self, handle: int) -> RingBuf:
        m = self._map(handle)
        if not isinstance(m, RingBuf):
            raise EmulatorError(f"map {m.name!r} is not a ring buffer")
        return m

    def ringbuf_output(self, r1: int, r2: int, r3: int, *_: int) -> int:
        rb = self._ringbuf(r1)
        data = self.mem.read(r2, r3)
        if not rb.reserve(r3):
            return _neg(_errno.EAGAIN)
        rb.commit(data, r3)
        return 0

    def ringbuf_reserve(self, r1: int, r2: int, r3: int, *_: int) -> int:
        rb = self._ringbuf(r1)
        if r3 or not rb.reserve(r2):
            return 0
        buf = bytearray(r2)
        addr = self.mem.map_buffer(buf)
        self.m.reserved[addr] = (rb, buf)
        self.m.dirty = True
        return addr

    def _commit(self, addr: int, submit: bool) -> int:
        entry = self.m.reserved.pop(addr, None)
        if entry is None:
            raise EmulatorError("ringbuf submit/discard of a pointer that is not a reserved"
                                " record", address=addr)
        rb, buf = entry
        rb.commit(bytes(buf) if submit else None, len(buf))
        self.mem.unmap(buf)
        return 0

    def ringbuf_submit(self, r1: int, *_: int) -> int:
        return self._commit(r1, True)

    def ringbuf_discard(self, r1: int, *_: int) -> int:
        return self._commit(r1, False)

    # -- XDP -----------------------------------------------------------------------------
    def _xdp(self, op: str, delta: int) -> int:
        state = self.m.xdp
        if state is None:
            raise EmulatorError(f"{op} needs an XDP context (use run_xdp)")
        rc = getattr(state, op)(_s32(delta))
        self.m.refresh_ctx()
        self.m.dirty = True     # run_xdp puts data/data_meta back after the run
        return rc & M64

    def xdp_adjust_head(self, r1: int, r2: int, *_: int) -> int:
        return self._xdp("adjust_head", r2)

    def xdp_adjust_tail(self, r1: int, r2: int, *_: int) -> int:
        return self._xdp("adjust_tail", r2)

    def xdp_adjust_meta(self, r1: int, r2: int, *_: int) -> int:
        return self._xdp("adjust_meta", r2)

    def xdp_get_buff_len(self, *_: int) -> int:
        state = self.m.xdp
        return 0 if state is None else state.buff_len()

    def _xdp_state(self) -> Any:
        state = self.m.xdp
        if state is None:
            raise EmulatorError("xdp_load/store_bytes need an XDP context")
        return state

    def xdp_load_bytes(self, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
        got = self._xdp_state().copy_out(r2 & 0xFFFFFFFF, r4 & 0xFFFFFFFF)
        if isinstance(got, int):
            return got & M64
        self.mem.write(r3, got)
        return 0

    def xdp_store_bytes(self, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
        state = self._xdp_state()
        length = r4 & 0xFFFFFFFF
        data = self.mem.read(r3, length) if length <= 0xFFFF else b"\0" * 0x10000
        return state.copy_in(r2 & 0xFFFFFFFF, data) & M64

    def perf_event_output(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        """``bpf_perf_event_output(ctx, map, flags, data, size)`` of an XDP program (the
        kernel's XDP flavour, which ``bpf_xdp_output`` is for tracing programs): flags'
        low 32 bits pick the
        CPU ring (``BPF_F_CURRENT_CPU``: this one), bits 32..51 how many packet bytes to
        append (frags included); anything else, or more bytes than the frame: an error."""
        m = self._map(r2)
        if not isinstance(m, PerfEventArray):
            raise EmulatorError("bpf_perf_event_output needs a PERF_EVENT_ARRAY map")
        if r3 & ~(0xFFFFFFFF | (0xFFFFF << 32)):
            return _neg(_errno.EINVAL)
        index = r3 & 0xFFFFFFFF
        index = self.m.cpu if index == 0xFFFFFFFF else index
        ctx_len = (r3 >> 32) & 0xFFFFF
        data = self.mem.read(r4, r5) if r5 else b""
        if ctx_len:
            got = self._xdp_state().copy_out(0, ctx_len)
            if isinstance(got, int):
                return _neg(_errno.EFAULT)
            data += got
        self.m.dirty = True
        return m.output(index, data) & M64

    def redirect(self, r1: int, r2: int, *_: int) -> int:
        if r2:
            return XdpAction.ABORTED
        self.m.dirty = True
        self.m.redirect = Redirect(ifindex=r1 & 0xFFFFFFFF)
        return XdpAction.REDIRECT

    def redirect_map(self, r1: int, r2: int, r3: int, *_: int) -> int:
        m = self._map(r1)
        if not isinstance(m, SlotMap) or isinstance(m, ProgArray):
            raise EmulatorError(f"redirect_map on a {m.type.name} map")
        broadcast = bool(r3 & BPF_F_BROADCAST) and m.type in (MapType.DEVMAP,
                                                               MapType.DEVMAP_HASH)
        if broadcast:
            self.m.dirty = True
            self.m.redirect = Redirect(map=m.name, map_type=m.type.name, broadcast=True,
                                       exclude_ingress=bool(r3 & BPF_F_EXCLUDE_INGRESS))
            return XdpAction.REDIRECT
        key = (r2 & 0xFFFFFFFF).to_bytes(4, "little")
        if m.type == MapType.DEVMAP_HASH:
            key = (r2 & ((1 << (8 * m.key_size)) - 1)).to_bytes(m.key_size, "little")
        value = m.target(key)
        if value is None:
            self.m.redirect = None
            return r3 & _ACTION_MASK
        self.m.dirty = True
        self.m.redirect = Redirect(map=m.name, map_type=m.type.name,
                                   key=int.from_bytes(key, "little"), value=value)
        return XdpAction.REDIRECT

    def fib_lookup(self, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
        if r3 != FIB_PARAMS_SIZE:
            return _neg(_errno.EINVAL)
        p = bytearray(self.mem.read(r2, FIB_PARAMS_SIZE))
        family = p[0]
        if family == AF_INET:
            dst: Any = ipaddress.IPv4Address(bytes(p[32:36]))
        elif family == AF_INET6:
            dst = ipaddress.IPv6Address(bytes(p[32:48]))
        else:
            return _neg(_errno.EAFNOSUPPORT)
        fib = self.m.fib
        if not fib.forwarding:
            return FibResult.FWD_DISABLED
        route = fib.lookup(dst)
        if route is None:
            return FibResult.NOT_FWDED
        if route.kind != FibResult.SUCCESS:
            return route.kind
        tot_len = int.from_bytes(p[6:8], "little")
        if tot_len and tot_len > route.mtu:
            p[6:8] = route.mtu.to_bytes(2, "little")
            self.mem.write(r2, bytes(p))
            return FibResult.FRAG_NEEDED
        p[8:12] = route.ifindex.to_bytes(4, "little")
        if route.dmac is None:
            self.mem.write(r2, bytes(p))
            return FibResult.NO_NEIGH
        p[52:58] = route.smac
        p[58:64] = route.dmac
        self.mem.write(r2, bytes(p))
        return FibResult.SUCCESS


IMPLEMENTED: dict[int, str] = {
    HELPERS[name]: name for name in (
        "map_lookup_elem", "map_update_elem", "map_delete_elem", "map_lookup_percpu_elem",
        "ktime_get_ns", "ktime_get_boot_ns", "ktime_get_coarse_ns", "ktime_get_tai_ns",
        "get_prandom_u32", "get_smp_processor_id", "get_numa_node_id", "trace_printk",
        "csum_diff", "tail_call", "loop", "for_each_map_elem", "ringbuf_output", "ringbuf_reserve",
        "ringbuf_submit", "ringbuf_discard", "xdp_adjust_head", "xdp_adjust_tail",
        "xdp_adjust_meta", "xdp_get_buff_len", "xdp_load_bytes", "xdp_store_bytes",
        "redirect", "redirect_map", "fib_lookup", "spin_lock", "spin_unlock", "perf_event_output")
}

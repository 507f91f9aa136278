"""Maps whose values name something outside the program: network devices (``DEVMAP``,
``DEVMAP_HASH``), CPUs (``CPUMAP``), AF_XDP sockets (``XSKMAP``) and programs
(``PROG_ARRAY``), plus the ring buffer (``RINGBUF``).

The emulator has no devices or sockets, so their values are kept as bytes and
``redirect_map`` reports *which* entry a packet was sent to; tests assert on that.
"""

from __future__ import annotations

import errno as _errno
from collections import deque
from typing import Any

from pyxdp.abi import MapType
from pyxdp.emu.maps.base import Buffer, EmuMap, EmuMapError, check_flags
from pyxdp.maps import MapSpec, UpdateFlags


class SlotMap(EmuMap):
    """Sparse map keyed by a u32 slot (array-like types) or by any key (``DEVMAP_HASH``)."""

    def __init__(self, spec: MapSpec, key_type: Any = None, value_type: Any = None,
                 ncpus: int = 1) -> None:
        self.slots: dict[bytes, Buffer] = {}
        self.hashed = spec.type == MapType.DEVMAP_HASH
        super().__init__(spec, key_type, value_type, ncpus)

    def _in_range(self, key: bytes) -> bool:
        return self.hashed or int.from_bytes(key, "little") < self.spec.max_entries

    def _lookup(self, key: bytes) -> bytes | None:
        self._check_sizes(key)
        v = self.slots.get(key)
        return None if v is None else bytes(v)

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        self._check_sizes(key, value)
        if not self._in_range(key):
            raise EmuMapError(_errno.E2BIG, "index out of range")
        check_flags(flags, key in self.slots)
        if key not in self.slots and len(self.slots) >= self.spec.max_entries:
            raise EmuMapError(_errno.E2BIG, f"map {self.name!r} is full")
        self._store(key, value)

    def _store(self, key: bytes, value: bytes) -> None:
        self.slots[key] = bytearray(value)

    def _delete(self, key: bytes) -> bool:
        self._check_sizes(key)
        return self.slots.pop(key, None) is not None

    def _next_key(self, key: bytes | None) -> bytes | None:
        keys = sorted(self.slots, key=lambda k: int.from_bytes(k, "little")) if (
            not self.hashed) else list(self.slots)
        if not keys:
            return None
        if key is None or key not in self.slots:
            return keys[0]
        i = keys.index(key) + 1
        return keys[i] if i < len(keys) else None

    def emu_lookup(self, key: bytes, cpu: int) -> tuple[Buffer, int] | None:
        if self.type in (MapType.XSKMAP, MapType.DEVMAP, MapType.DEVMAP_HASH):
            v = self.slots.get(key)
            return None if v is None else (v, 0)
        return super().emu_lookup(key, cpu)

    def target(self, key: bytes) -> int | None:
        """The u32 the entry names (ifindex, queue size, socket) or None when empty."""
        v = self.slots.get(key)
        return None if v is None else int.from_bytes(v[:4], "little")


class ProgArray(SlotMap):
    """Values are emulated programs; the raw value is the program's (fake) fd."""

    def __init__(self, spec: MapSpec, key_type: Any = None, value_type: Any = None,
                 ncpus: int = 1) -> None:
        self.programs: dict[int, Any] = {}
        super().__init__(spec, key_type, value_type, ncpus)

    def update(self, key: Any, value: Any, flags: int = UpdateFlags.ANY) -> None:
        """Accept an emulated program object as well as its fd."""
        if hasattr(value, "fd") and hasattr(value, "run"):
            from pyxdp.emu.program import register_program
            register_program(value)
            value = value.fd
        super().update(key, value, flags)

    def _store(self, key: bytes, value: bytes) -> None:
        from pyxdp.emu.program import program_by_fd
        fd = int.from_bytes(value, "little")
        prog = program_by_fd(fd)
        if prog is None:
            raise EmuMapError(_errno.EBADF, f"no emulated program has fd {fd}")
        super()._store(key, value)
        self.programs[int.from_bytes(key, "little")] = prog

    def _delete(self, key: bytes) -> bool:
        self.programs.pop(int.from_bytes(key, "little"), None)
        return super()._delete(key)


class _Keyless(EmuMap):
    """A map user space drains instead of reading by key (ring buffers, perf rings)."""

    WHY_NO_KEYS = ""

    def _unsupported(self) -> Any:
        raise EmuMapError(_errno.EOPNOTSUPP, self.WHY_NO_KEYS)

    def _lookup(self, key: bytes) -> bytes | None:
        return self._unsupported()

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        self._unsupported()

    def _delete(self, key: bytes) -> bool:
        return self._unsupported()

    def _next_key(self, key: bytes | None) -> bytes | None:
        return None


class RingBuf(_Keyless):
    """A ring buffer: programs reserve/submit or output records, userspace drains them."""

    HEADER = 8

    def __init__(self, spec: MapSpec, key_type: Any = None, value_type: Any = None,
                 ncpus: int = 1) -> None:
        self.records: deque[bytes] = deque()
        self.used = 0
        super().__init__(spec, key_type, value_type, ncpus)

    def _cost(self, size: int) -> int:
        return self.HEADER + ((size + 7) & ~7)

    def reserve(self, size: int) -> bool:
        """Account for a record of ``size`` bytes; False when it does not fit."""
        cost = self._cost(size)
        if size <= 0 or self.used + cost > self.spec.max_entries:
            return False
        self.used += cost
        return True

    def commit(self, data: bytes | None, size: int) -> None:
        """Submit (``data``) or discard (``None``) a reserved record."""
        if data is None:
            self.used -= self._cost(size)
        else:
            self.records.append(bytes(data))

    def drain(self, limit: int | None = None) -> list[bytes]:
        """Consume the submitted records (at most ``limit``), oldest first."""
        n = len(self.records) if limit is None else min(limit, len(self.records))
        out = [self.records.popleft() for _ in range(n)]
        self.used -= sum(self._cost(len(r)) for r in out)
        return out

    WHY_NO_KEYS = "ring buffers have no keys; use drain()"


class PerfEventArray(_Keyless):
    """A perf event array: one sample ring per CPU index.  As in the kernel, a sample
    only lands once userspace has opened a ring for that CPU (:meth:`subscribe`); before,
    ``bpf_xdp_output`` returns -ENOENT.  Samples are padded to what the kernel's raw
    record holds (8-byte aligned with its 4-byte size), and a full ring drops them and
    counts them in :attr:`lost`."""

    def __init__(self, spec: MapSpec, key_type: Any = None, value_type: Any = None,
                 ncpus: int = 1) -> None:
        super().__init__(spec, key_type, value_type, ncpus)
        self.entries = spec.max_entries or ncpus        # 0: one per CPU, as libbpf does
        self.rings: dict[int, deque[bytes]] = {}
        self.capacity = 0
        self.used: dict[int, int] = {}
        self.lost = 0

    def subscribe(self, pages: int = 8) -> None:
        if pages <= 0 or pages & (pages - 1):
            raise EmuMapError(_errno.EINVAL, f"perf ring pages must be a power of two,"
                              f" not {pages}")
        if not self.rings:
            self.capacity = pages * 4096
            for cpu in range(min(self.entries, self.ncpus)):
                self.rings[cpu] = deque()
                self.used[cpu] = 0

    def output(self, index: int, data: bytes) -> int:
        """Write a sample for CPU ring ``index``; 0 or a negative errno."""
        ring = self.rings.get(index)
        if ring is None:
            return -_errno.ENOENT
        raw = (len(data) + 4 + 7) // 8 * 8 - 4
        cost = 8 + 4 + raw                                # perf header, size, data
        if self.used[index] + cost > self.capacity:
            self.lost += 1
            return -_errno.ENOSPC
        self.used[index] += cost
        ring.append(bytes(data) + bytes(raw - len(data)))
        return 0

    def drain(self, limit: int | None = None) -> list[bytes]:
        if not self.rings:
            raise EmuMapError(_errno.EINVAL, f"perf event array {self.spec.name!r}: call"
                              " subscribe() first (samples only reach rings opened before"
                              " they are written)")
        out: list[bytes] = []
        for cpu, ring in self.rings.items():
            while ring and (limit is None or len(out) < limit):
                rec = ring.popleft()
                self.used[cpu] -= 12 + len(rec)
                out.append(rec)
        return out

    WHY_NO_KEYS = ("a perf event array holds perf event fds; in the emulator use subscribe()"
                   " and drain()")

"""Array maps (``ARRAY``, ``PERCPU_ARRAY``): one preallocated buffer per CPU.

Elements are ``round_up(value_size, 8)`` apart, as in the kernel, and the buffer is
mapped into the VM once, so a pointer returned by ``map_lookup_elem`` is just the base plus
``index * stride`` and stays valid for the life of the map.
"""

from __future__ import annotations

import errno as _errno
from typing import Any

from pyxdp.abi import BPF_F_RDONLY_PROG
from pyxdp.emu.maps.base import Buffer, EmuMap, EmuMapError, check_flags
from pyxdp.maps import MapSpec


class ArrayMap(EmuMap):
    static_values = True

    def __init__(self, spec: MapSpec, key_type: Any = None, value_type: Any = None,
                 ncpus: int = 1) -> None:
        if spec.key_size != 4:
            raise EmuMapError(_errno.EINVAL, "array map keys must be 4 bytes")
        n = 1 if spec.type.name == "ARRAY" else ncpus
        stride = (spec.value_size + 7) & ~7
        self.buffers = [bytearray(stride * spec.max_entries) for _ in range(n)]
        super().__init__(spec, key_type, value_type, ncpus)

    def _index(self, key: bytes) -> int | None:
        self._check_sizes(key)
        idx = int.from_bytes(key, "little")
        return idx if idx < self.spec.max_entries else None

    def _lookup(self, key: bytes) -> bytes | None:
        idx = self._index(key)
        if idx is None:
            return None
        s, size = self._stride, self.value_size
        if not self.percpu:
            return bytes(self.buffers[0][idx * s: idx * s + size])
        return b"".join(bytes(b[idx * s: idx * s + s]) for b in self.buffers)

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        self._check_sizes(key, value)
        idx = self._index(key)
        if idx is None:
            raise EmuMapError(_errno.E2BIG, f"index {int.from_bytes(key, 'little')} is out"
                                            f" of range (max_entries {self.spec.max_entries})")
        check_flags(flags, True)
        s = self._stride
        if not self.percpu:
            self.buffers[0][idx * s: idx * s + self.value_size] = value
            return
        for cpu, buf in enumerate(self.buffers):
            buf[idx * s: idx * s + s] = value[cpu * s: cpu * s + s]

    def _delete(self, key: bytes) -> bool:
        raise EmuMapError(_errno.EINVAL, "array map elements cannot be deleted")

    def _next_key(self, key: bytes | None) -> bytes | None:
        idx = 0 if key is None else int.from_bytes(key, "little") + 1
        if key is not None and idx - 1 >= self.spec.max_entries:
            idx = 0
        return idx.to_bytes(4, "little") if idx < self.spec.max_entries else None

    # VM side
    def vm_buffer(self, cpu: int = 0) -> Buffer:
        """The buffer programs see: the live values, or for a map read-only to programs a
        read-only view of them, so a store the load-time check missed still faults."""
        buf = self.buffers[cpu if self.percpu else 0]
        if not (self.prog_readonly or self.spec.flags & BPF_F_RDONLY_PROG):  # is_readonly
            return buf
        views = self.__dict__.setdefault("_ro_views", {})
        view = views.get(id(buf))
        if view is None:
            view = views[id(buf)] = memoryview(buf).toreadonly()
        return view

    def emu_lookup(self, key: bytes, cpu: int) -> tuple[Buffer, int] | None:
        idx = int.from_bytes(key, "little")
        if idx >= self.spec.max_entries:
            return None
        return self.vm_buffer(cpu), idx * self._stride

    def emu_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        loc = self.emu_lookup(key, cpu)
        if loc is None:
            return -_errno.E2BIG
        try:
            check_flags(flags, True)
        except EmuMapError as e:
            return -e.errno
        off = loc[1]
        self.buffers[cpu if self.percpu else 0][off: off + self.value_size] = value
        return 0

    def emu_delete(self, key: bytes) -> int:
        return -_errno.EINVAL

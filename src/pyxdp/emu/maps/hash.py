"""Hash maps (``HASH``, ``PERCPU_HASH``, ``LRU_HASH``, ``LRU_PERCPU_HASH``).

Each element's value is its own ``bytearray`` (one per CPU for per-CPU maps) that is
updated in place, so pointers a program holds keep seeing the element.  The dict keeps
insertion order, which is also the iteration order; LRU maps move an element to the end on
every access and evict from the front when full (the kernel's LRU is approximate; this one
is exact, which is what tests want).
"""

from __future__ import annotations

import errno as _errno
from typing import Any

from pyxdp.abi import MapType
from pyxdp.emu.maps.base import Buffer, EmuMap, EmuMapError, check_flags
from pyxdp.maps import MapSpec

_LRU = {MapType.LRU_HASH, MapType.LRU_PERCPU_HASH}


class HashMap(EmuMap):
    def __init__(self, spec: MapSpec, key_type: Any = None, value_type: Any = None,
                 ncpus: int = 1) -> None:
        self.store: dict[bytes, list[Buffer]] = {}
        self.lru = spec.type in _LRU
        super().__init__(spec, key_type, value_type, ncpus)

    def _lookup(self, key: bytes) -> bytes | None:
        self._check_sizes(key)
        bufs = self.store.get(key)
        if bufs is None:
            return None
        if not self.percpu:
            return bytes(bufs[0])
        pad = bytes(self._stride - self.value_size)
        return b"".join(bytes(b) + pad for b in bufs)

    def _split(self, value: bytes) -> list[bytes]:
        if not self.percpu:
            return [value]
        s, size = self._stride, self.value_size
        return [value[i * s: i * s + size] for i in range(self.ncpus)]

    def _make_room(self, key: bytes) -> None:
        if key in self.store or len(self.store) < self.spec.max_entries:
            return
        if not self.lru or not self.store:
            raise EmuMapError(_errno.E2BIG, f"map {self.name!r} is full "
                                            f"({self.spec.max_entries} entries)")
        del self.store[next(iter(self.store))]

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        self._check_sizes(key, value)
        bufs = self.store.get(key)
        check_flags(flags, bufs is not None)
        parts = self._split(value)
        if bufs is None:
            self._make_room(key)
            self.store[key] = [bytearray(p) for p in parts]
            return
        for buf, part in zip(bufs, parts):
            buf[:] = part
        if self.lru:
            self.store[key] = self.store.pop(key)

    def _delete(self, key: bytes) -> bool:
        self._check_sizes(key)
        return self.store.pop(key, None) is not None

    def _next_key(self, key: bytes | None) -> bytes | None:
        keys = list(self.store)
        if not keys:
            return None
        if key is None or key not in self.store:
            return keys[0]
        i = keys.index(key) + 1
        return keys[i] if i < len(keys) else None

    # VM side
    def emu_lookup(self, key: bytes, cpu: int) -> tuple[Buffer, int] | None:
        bufs = self.store.get(key)
        if bufs is None:
            return None
        if self.lru:
            self.store[key] = self.store.pop(key)
        return bufs[cpu if self.percpu else 0], 0

    def emu_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        bufs = self.store.get(key)
        try:
            check_flags(flags, bufs is not None)
            if bufs is None:
                self._make_room(key)
        except EmuMapError as e:
            return -e.errno
        if bufs is None:
            n = self.ncpus if self.percpu else 1
            bufs = [bytearray(self.value_size) for _ in range(n)]
            self.store[key] = bufs
        elif self.lru:
            self.store[key] = self.store.pop(key)
        bufs[cpu if self.percpu else 0][:] = value
        return 0

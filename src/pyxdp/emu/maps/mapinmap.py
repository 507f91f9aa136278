"""Maps of maps (``ARRAY_OF_MAPS``, ``HASH_OF_MAPS``): values are other emulated maps.

As in the kernel, the outer map is created from a template of its inner maps
(``MapSpec.inner``), and every map stored in it must match that template: same type, key
and value size and flags, and for array inner maps the same ``max_entries`` unless the
template has ``BPF_F_INNER_MAP`` (the kernel's ``map_meta_equal``); anything else is
refused with ``EINVAL``.  User space stores a map object (or its emulated id, the
emulator's stand-in for an fd) and reads back the id, like the kernel's syscall returns
map ids.  A program's ``bpf_map_lookup_elem`` on the outer map returns the inner map's
handle: a map pointer usable in further map helpers, or NULL for an empty slot.
"""

from __future__ import annotations

import errno as _errno
from typing import Any

from pyxdp.abi import BPF_F_INNER_MAP, MapType
from pyxdp.emu.maps.base import Buffer, EmuMap, EmuMapError, check_flags, map_by_id
from pyxdp.errors import EmulatorError
from pyxdp.maps import MapSpec, UpdateFlags

MAP_IN_MAP_TYPES = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})
_ARRAY_INNER = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY})


def inner_mismatch(template: MapSpec, inner: MapSpec) -> str | None:
    """Why ``inner`` may not be stored in a map-in-map made from ``template`` (the
    kernel's ``map_meta_equal``), or None when it may."""
    for attr in ("type", "key_size", "value_size", "flags"):
        want, got = getattr(template, attr), getattr(inner, attr)
        if want != got:
            if attr == "type":
                want, got = MapType(want).name, MapType(got).name
            return f"{attr} {got}, the inner-map template has {want}"
    if (template.type in _ARRAY_INNER and not template.flags & BPF_F_INNER_MAP
            and template.max_entries != inner.max_entries):
        return (f"max_entries {inner.max_entries}, the inner-map template has"
                f" {template.max_entries} (and no BPF_F_INNER_MAP)")
    return None


class MapOfMaps(EmuMap):
    """``ARRAY_OF_MAPS`` (u32 index < max_entries) or ``HASH_OF_MAPS`` (any key)."""

    def __init__(self, spec: MapSpec, key_type: Any = None, value_type: Any = None,
                 ncpus: int = 1) -> None:
        if spec.inner is None:
            raise EmuMapError(_errno.EINVAL, f"map-in-map {spec.name!r} needs an inner-map"
                                             " template (MapSpec.inner)")
        if spec.inner.type in MAP_IN_MAP_TYPES:
            raise EmuMapError(_errno.EINVAL, f"map-in-map {spec.name!r}: inner maps cannot"
                                             " be maps of maps (one level only)")
        if spec.value_size != 4:
            raise EmuMapError(_errno.EINVAL, f"map-in-map {spec.name!r}: value_size must be"
                                             f" 4 (a map fd), not {spec.value_size}")
        self.is_array = spec.type == MapType.ARRAY_OF_MAPS
        if self.is_array and spec.key_size != 4:
            raise EmuMapError(_errno.EINVAL, "array-of-maps keys must be 4 bytes")
        self.inner_spec = spec.inner
        self.slots: dict[bytes, EmuMap] = {}
        super().__init__(spec, key_type, value_type, ncpus)

    # -- user space ----------------------------------------------------------------------
    def encode_value(self, value: Any) -> bytes:
        """An emulated map, or its id (the emulator's fd), or the raw 4 bytes."""
        if isinstance(value, EmuMap):
            return value.id.to_bytes(4, "little")
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < 1 << 32:
                raise EmuMapError(_errno.EBADF, f"{value} is not a map id")
            return value.to_bytes(4, "little")
        raise EmuMapError(_errno.EBADF, f"a map-in-map value must be an emulated map or"
                                        f" its id, not {type(value).__name__}")

    def _resolve(self, value: bytes) -> EmuMap:
        mid = int.from_bytes(value, "little")
        inner = map_by_id(mid)
        if inner is None:
            raise EmuMapError(_errno.EBADF, f"no emulated map has id {mid}")
        why = inner_mismatch(self.inner_spec, inner.spec)
        if why is not None:
            raise EmuMapError(_errno.EINVAL, f"map {inner.name!r} cannot go into"
                                             f" {self.name!r}: it has {why}")
        return inner

    def _lookup(self, key: bytes) -> bytes | None:
        self._check_sizes(key)
        inner = self.slots.get(key)
        return None if inner is None else inner.id.to_bytes(4, "little")

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        self._check_sizes(key, value)
        if self.is_array:
            idx = int.from_bytes(key, "little")
            if idx >= self.spec.max_entries:
                raise EmuMapError(_errno.E2BIG, f"index {idx} is out of range (max_entries"
                                                f" {self.spec.max_entries})")
            if flags != UpdateFlags.ANY:
                raise EmuMapError(_errno.EINVAL, "array-of-maps updates take BPF_ANY only")
        else:
            check_flags(flags, key in self.slots)
            if key not in self.slots and len(self.slots) >= self.spec.max_entries:
                raise EmuMapError(_errno.E2BIG, f"map {self.name!r} is full"
                                                f" ({self.spec.max_entries} entries)")
        self.slots[key] = self._resolve(value)

    def _delete(self, key: bytes) -> bool:
        self._check_sizes(key)
        if self.is_array and int.from_bytes(key, "little") >= self.spec.max_entries:
            raise EmuMapError(_errno.E2BIG, "index out of range")
        return self.slots.pop(key, None) is not None

    def _next_key(self, key: bytes | None) -> bytes | None:
        if self.is_array:     # every index, like array maps
            idx = 0 if key is None else int.from_bytes(key, "little") + 1
            if key is not None and idx - 1 >= self.spec.max_entries:
                idx = 0
            return idx.to_bytes(4, "little") if idx < self.spec.max_entries else None
        keys = list(self.slots)
        if not keys:
            return None
        if key is None or key not in self.slots:
            return keys[0]
        i = keys.index(key) + 1
        return keys[i] if i < len(keys) else None

    # -- VM side -------------------------------------------------------------------------
    def inner(self, key: bytes) -> EmuMap | None:
        """The map in the slot ``key`` (what a program's lookup points at), or None."""
        return self.slots.get(key)

    def emu_lookup(self, key: bytes, cpu: int) -> tuple[Buffer, int] | None:
        raise EmulatorError(f"{self.type.name} map {self.name!r}: a lookup gives a map, not a"
                            " value")

    def emu_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        raise EmulatorError(f"programs cannot update {self.type.name} map {self.name!r} (the"
                            " verifier refuses bpf_map_update_elem on it)")

    def emu_delete(self, key: bytes) -> int:
        raise EmulatorError(f"programs cannot delete from {self.type.name} map {self.name!r}"
                            " (the verifier refuses bpf_map_delete_elem on it)")

"""Common ground of the emulator's maps: kernel errno errors and the VM-side interface.

Emulated maps implement :class:`pyxdp.maps.MapBase` (the same protocol kernel maps
implement) for the control plane, and a small *VM-side* interface the helpers use:
``emu_lookup`` returns the live buffer and offset of a value (so a program's writes through
the returned pointer are visible in the map, as in the kernel), ``emu_update`` and
``emu_delete`` return a kernel-style ``-errno`` instead of raising.
"""

from __future__ import annotations

import errno as _errno
import itertools
import weakref
from typing import Any

from pyxdp.abi import BPF_F_RDONLY_PROG
from pyxdp.errors import MapError
from pyxdp.maps import MapBase, MapSpec, UpdateFlags

Buffer = bytearray | memoryview   # memoryview: a read-only view programs get of .rodata
_IDS = itertools.count(1)
_BY_ID: weakref.WeakValueDictionary[int, EmuMap] = weakref.WeakValueDictionary()


def is_readonly(m: MapBase) -> bool:
    """Programs may only read ``m``: it has ``BPF_F_RDONLY_PROG``, or it is ``.rodata*`` /
    ``.kconfig`` global data (:func:`readonly_data_name`), which the kernel loader creates
    with that flag."""
    return bool(m.spec.flags & BPF_F_RDONLY_PROG or getattr(m, "prog_readonly", False))


def readonly_data_name(name: str) -> bool:
    """Whether the object's map called ``name`` is read-only global data for programs."""
    return name.startswith(".rodata") or name == ".kconfig"


def _frozen_guard(method: Any) -> Any:
    def guarded(self: EmuMap, *args: Any) -> Any:
        if self.frozen:
            raise EmuMapError(_errno.EPERM, f"map {self.name!r} is frozen: user space may"
                                            " not change it")
        return method(self, *args)
    guarded.__name__ = method.__name__
    guarded.__doc__ = method.__doc__
    guarded.unguarded = method  # type: ignore[attr-defined]
    return guarded


def map_by_id(map_id: int) -> EmuMap | None:
    """The live emulated map with id ``map_id`` (what map-in-map values name), or None."""
    return _BY_ID.get(map_id)


class EmuMapError(MapError):
    """A map operation the kernel would refuse; ``errno`` is the kernel's errno."""

    def __init__(self, err: int, message: str) -> None:
        self.errno = err
        super().__init__(f"{message} [{_errno.errorcode.get(err, err)}]")


def check_flags(flags: int, exists: bool) -> None:
    """Enforce BPF_NOEXIST / BPF_EXIST like the kernel's ``check_flags``."""
    if flags & ~(UpdateFlags.NOEXIST | UpdateFlags.EXIST | UpdateFlags.F_LOCK) or (
            flags & UpdateFlags.NOEXIST and flags & UpdateFlags.EXIST):
        raise EmuMapError(_errno.EINVAL, f"invalid update flags {flags:#x}")
    if exists and flags & UpdateFlags.NOEXIST:
        raise EmuMapError(_errno.EEXIST, "key exists and BPF_NOEXIST was given")
    if not exists and flags & UpdateFlags.EXIST:
        raise EmuMapError(_errno.ENOENT, "key does not exist and BPF_EXIST was given")


class EmuMap(MapBase):
    """Base of every emulator map."""

    static_values = False   # True when value buffers live as long as the map (arrays)
    frozen = False          # BPF_MAP_FREEZE: user-space updates and deletes get EPERM
    prog_readonly = False   # .rodata-like: programs may not write (see is_readonly)

    def __init_subclass__(cls, **kw: Any) -> None:
        """User-space writes (``_update``/``_delete``) of every map class honour
        :attr:`frozen`; the VM side goes around the guard, as programs may still write a
        frozen map unless it is read-only for them."""
        super().__init_subclass__(**kw)
        for name in ("_update", "_delete"):
            method = cls.__dict__.get(name)
            if method is not None and not hasattr(method, "unguarded"):
                setattr(cls, name, _frozen_guard(method))

    def __init__(self, spec: MapSpec, key_type: Any = None, value_type: Any = None,
                 ncpus: int = 1) -> None:
        super().__init__(spec, key_type, value_type, ncpus)
        self.id = next(_IDS)    # like a kernel map id: map-in-map values name maps by it
        _BY_ID[self.id] = self
        self.value_size = spec.value_size
        self.key_size = spec.key_size
        for key, value in spec.contents:
            self._update(bytes(key), self._widen(bytes(value)), UpdateFlags.ANY)
        self.frozen = spec.freeze     # like kernel Map.create: frozen once filled

    def freeze(self) -> None:
        """``BPF_MAP_FREEZE``: from now on user space can only read the map."""
        self.frozen = True

    def _widen(self, value: bytes) -> bytes:
        """Initial contents give one value; per-CPU maps store it for every CPU."""
        if self.percpu and len(value) == self.value_size:
            pad = bytes(self._stride - self.value_size)
            return (value + pad) * self.ncpus
        return value

    def _check_sizes(self, key: bytes, value: bytes | None = None) -> None:
        if len(key) != self.key_size:
            raise EmuMapError(_errno.EINVAL, f"key must be {self.key_size} bytes, "
                                             f"got {len(key)}")
        if value is not None:
            want = self._stride * self.ncpus if self.percpu else self.value_size
            if len(value) != want:
                raise EmuMapError(_errno.EINVAL, f"value must be {want} bytes, "
                                                 f"got {len(value)}")

    # -- VM side -------------------------------------------------------------------------
    def emu_lookup(self, key: bytes, cpu: int) -> tuple[Buffer, int] | None:
        raise EmuMapError(_errno.EOPNOTSUPP, f"{self.type.name} maps cannot be looked up "
                                             "from a program")

    def emu_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        try:
            update = type(self)._update.unguarded  # type: ignore[attr-defined]
            update(self, key, self._widen(value), flags)
        except EmuMapError as e:
            return -e.errno
        return 0

    def emu_delete(self, key: bytes) -> int:
        try:
            delete = type(self)._delete.unguarded  # type: ignore[attr-defined]
            return 0 if delete(self, key) else -_errno.ENOENT
        except EmuMapError as e:
            return -e.errno

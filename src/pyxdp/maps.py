"""The one map protocol shared by emulator maps and kernel maps.

A map stores fixed-size byte keys and values.  Python code sees *typed* keys and values
through a :class:`Codec` (ints, bytes, ``struct`` formats, ``ctypes`` structures, LPM keys),
and talks to every map the same way, like a ``dict``::

    m[key] = value          # update (BPF_ANY)
    m[key]                  # lookup, KeyError when missing
    m.get(key)              # lookup, None when missing
    del m[key]              # delete, KeyError when missing
    for k, v in m.items()   # iteration
    m.update_batch(pairs)   # batch operations

A backend implements five raw byte-level methods (``_lookup``, ``_update``, ``_delete``,
``_next_key``, and optionally the batch ones); everything typed lives here, once.  Per-CPU
maps take and return a list with one value per possible CPU.
"""

from __future__ import annotations

import array
import ctypes
import ipaddress
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from pyxdp.abi import BPF_F_RDONLY_PROG, MapType, UpdateFlags
from pyxdp.errors import MapError

if TYPE_CHECKING:
    # the ctypes types a CtypesCodec accepts (make_codec checks the same four at run time)
    CtypesType: TypeAlias = type[ctypes._SimpleCData[Any] | ctypes.Structure | ctypes.Union
                                 | ctypes.Array[Any]]

PERCPU_TYPES = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
                          MapType.PERCPU_CGROUP_STORAGE})
ARRAY_TYPES = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY,
                         MapType.DEVMAP, MapType.CPUMAP, MapType.XSKMAP,
                         MapType.ARRAY_OF_MAPS, MapType.PERF_EVENT_ARRAY})


# -- codecs ----------------------------------------------------------------------------------
class Codec(ABC):
    """Converts a Python value to exactly ``size`` bytes and back."""

    size: int

    @abstractmethod
    def encode(self, value: Any) -> bytes: ...

    @abstractmethod
    def decode(self, data: bytes) -> Any: ...


class BytesCodec(Codec):
    """Raw bytes of a fixed size (the default when nothing better is known)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, value: Any) -> bytes:
        if isinstance(value, int):  # convenience: ints of the right size
            return IntCodec(self.size).encode(value) if self.size in (1, 2, 4, 8) else _bad(
                value, f"{self.size} bytes")
        if isinstance(value, ctypes.Structure | ctypes.Union | ctypes.Array):
            value = bytes(value)
        if not isinstance(value, bytes | bytearray | memoryview):
            _bad(value, f"{self.size} bytes")
        value = bytes(value)
        if len(value) != self.size:
            raise MapError(f"expected {self.size} bytes, got {len(value)}")
        return value

    def decode(self, data: bytes) -> bytes:
        return bytes(data)


class IntCodec(Codec):
    """A little-endian (host order) integer of 1, 2, 4 or 8 bytes."""

    def __init__(self, size: int, signed: bool = False) -> None:
        if size not in (1, 2, 4, 8):
            raise MapError(f"an integer key or value must be 1, 2, 4 or 8 bytes, not {size}")
        self.size = size
        self.signed = signed

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray) and len(value) == self.size:
            return bytes(value)
        if not isinstance(value, int):
            _bad(value, f"an int of {self.size} bytes")
        try:
            return int(value).to_bytes(self.size, "little", signed=self.signed)
        except OverflowError:
            raise MapError(f"{value} does not fit in {self.size} bytes"
                           f" ({'signed' if self.signed else 'unsigned'})") from None

    def decode(self, data: bytes) -> int:
        return int.from_bytes(data, "little", signed=self.signed)


class StructCodec(Codec):
    """A ``struct`` format; single-field formats encode and decode a bare value."""

    def __init__(self, fmt: str) -> None:
        if fmt[:1] not in "<>!=@":
            fmt = "=" + fmt
        self.struct = struct.Struct(fmt)
        self.size = self.struct.size
        self.single = len(self.struct.unpack(bytes(self.size))) == 1

    def encode(self, value: Any) -> bytes:
        try:
            return self.struct.pack(value) if self.single else self.struct.pack(*value)
        except (struct.error, TypeError) as e:
            raise MapError(f"cannot pack {value!r} as {self.struct.format!r}: {e}") from None

    def decode(self, data: bytes) -> Any:
        vals = self.struct.unpack(data)
        return vals[0] if self.single else vals


class CtypesCodec(Codec):
    """A ``ctypes`` type (structure, array or scalar)."""

    def __init__(self, ctype: CtypesType) -> None:
        self.ctype = ctype
        self.size = ctypes.sizeof(ctype)

    def encode(self, value: Any) -> bytes:
        if isinstance(value, self.ctype):
            return bytes(value)
        if isinstance(value, bytes | bytearray) and len(value) == self.size:
            return bytes(value)
        try:
            if isinstance(value, tuple):
                return bytes(self.ctype(*value))
            if isinstance(value, dict):
                return bytes(self.ctype(**value))
            return bytes(self.ctype(value))
        except (TypeError, ValueError) as e:
            raise MapError(f"cannot convert {value!r} to {self.ctype.__name__}: {e}") from None

    def decode(self, data: bytes) -> Any:
        obj = self.ctype.from_buffer_copy(data)
        return obj.value if isinstance(obj, ctypes._SimpleCData) else obj


class LpmKeyCodec(Codec):
    """LPM trie keys ``{u32 prefixlen; u8 data[n]}``.

    Accepts ``(prefixlen, address)`` with the address as bytes or an ``ipaddress`` object,
    an ``ipaddress`` network, or a string like ``"198.18.0.0/15"``; decodes to
    ``(prefixlen, address)`` with an ``ipaddress`` address when the data is 4 or 16 bytes.
    """

    def __init__(self, size: int) -> None:
        if size < 5:
            raise MapError(f"an LPM trie key must be at least 5 bytes, not {size}")
        self.size = size
        self.data_len = size - 4

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray) and len(value) == self.size:
            return bytes(value)
        if isinstance(value, str):
            try:
                value = ipaddress.ip_network(value, strict=False)
            except ValueError as e:
                raise MapError(f"bad prefix {value!r}: {e}") from None
        addr: Any        # bytes-like, or an address (string or object) until converted
        if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            plen, addr = value.prefixlen, value.network_address.packed
        elif isinstance(value, tuple) and len(value) == 2:
            plen, addr = value
            if isinstance(addr, str):
                try:
                    addr = ipaddress.ip_address(addr)
                except ValueError as e:
                    raise MapError(f"bad address {addr!r}: {e}") from None
            if isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
                addr = addr.packed
        else:
            _bad(value, "(prefixlen, address), a network or a 'a.b.c.d/n' string")
        addr = bytes(addr)
        if len(addr) != self.data_len:
            raise MapError(f"LPM key data must be {self.data_len} bytes, got {len(addr)}")
        if not isinstance(plen, int) or not 0 <= plen <= 8 * self.data_len:
            raise MapError(f"prefix length {plen!r} out of range 0..{8 * self.data_len}")
        return plen.to_bytes(4, "little") + addr

    def decode(self, data: bytes) -> tuple[int, Any]:
        plen = int.from_bytes(data[:4], "little")
        addr = bytes(data[4:])
        if len(addr) in (4, 16):
            return plen, ipaddress.ip_address(addr)
        return plen, addr


def _bad(value: Any, expected: str) -> Any:
    raise MapError(f"expected {expected}, got {type(value).__name__} {value!r}")


def make_codec(kind: Any, size: int) -> Codec:
    """Build a codec: ``None`` (bytes, or int for 1/2/4/8 byte sizes), ``int``, ``bytes``,
    a ``struct`` format string, a ``ctypes`` type, or a ready :class:`Codec`."""
    if isinstance(kind, Codec):
        codec = kind
    elif kind is None:
        codec = IntCodec(size) if size in (1, 2, 4, 8) else BytesCodec(size)
    elif kind is int:
        codec = IntCodec(size)
    elif kind is bytes:
        codec = BytesCodec(size)
    elif isinstance(kind, str):
        codec = StructCodec(kind)
    elif isinstance(kind, type) and issubclass(kind, ctypes._SimpleCData | ctypes.Structure
                                               | ctypes.Union | ctypes.Array):
        codec = CtypesCodec(kind)
    else:
        raise MapError(f"cannot make a codec from {kind!r}")
    if codec.size != size:
        raise MapError(f"codec {kind!r} is {codec.size} bytes but the map wants {size}")
    return codec


# -- the description of a map ----------------------------------------------------------------
@dataclass
class MapSpec:
    """A pure description of a map: enough to create it in the kernel or in the emulator."""

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    inner: MapSpec | None = None
    pinning: int = 0                       # 0: none, 1: LIBBPF_PIN_BY_NAME
    contents: list[tuple[bytes, bytes]] = field(default_factory=list)
    freeze: bool = False                   # .rodata: frozen after initialisation
    key_type_id: int = 0                   # BTF type ids, where known
    value_type_id: int = 0
    map_extra: int = 0
    numa_node: int = 0

    def __post_init__(self) -> None:
        self.type = MapType(self.type)
        if self.max_entries < 0 or self.key_size < 0 or self.value_size < 0:
            raise MapError(f"map {self.name!r}: sizes must not be negative")


# -- the protocol ----------------------------------------------------------------------------
def check_reuse_compat(name: str, got: MapSpec, want: MapSpec) -> None:
    """libbpf's ``map_is_reuse_compat``: a pinned map reused for ``want`` must have its
    layout (type, key and value size, max_entries, flags); raises :class:`MapError` naming
    the first difference."""
    for attr in ("type", "key_size", "value_size", "max_entries", "flags"):
        have, wanted = getattr(got, attr), getattr(want, attr)
        if attr == "flags" and want.type in (MapType.DEVMAP, MapType.DEVMAP_HASH):
            # the kernel adds BPF_F_RDONLY_PROG to every devmap it creates (libbpf asks
            # for it up front): a devmap read back has it whatever the object said
            have, wanted = have & ~BPF_F_RDONLY_PROG, wanted & ~BPF_F_RDONLY_PROG
        if have != wanted:
            raise MapError(f"pinned map {name!r} has {attr} {getattr(got, attr)}, the object"
                           f" wants {getattr(want, attr)}")


class MapBase(ABC):
    """Typed, dict-like access to a map; backends implement the raw byte-level methods."""

    def __init__(self, spec: MapSpec, key_type: Any = None, value_type: Any = None,
                 ncpus: int = 1) -> None:
        self.spec = spec
        self.ncpus = ncpus if spec.type in PERCPU_TYPES else 1
        if spec.type == MapType.LPM_TRIE and key_type is None:
            key_type = LpmKeyCodec(spec.key_size)
        self.key_codec = make_codec(key_type, spec.key_size)
        self.value_codec = make_codec(value_type, spec.value_size) if spec.value_size else None
        self._stride = (spec.value_size + 7) & ~7

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def type(self) -> MapType:
        return self.spec.type

    @property
    def percpu(self) -> bool:
        return self.spec.type in PERCPU_TYPES

    # raw byte-level operations a backend provides
    @abstractmethod
    def _lookup(self, key: bytes) -> bytes | None: ...

    @abstractmethod
    def _update(self, key: bytes, value: bytes, flags: int) -> None: ...

    @abstractmethod
    def _delete(self, key: bytes) -> bool: ...

    @abstractmethod
    def _next_key(self, key: bytes | None) -> bytes | None: ...

    # typed conversions
    def encode_key(self, key: Any) -> bytes:
        return self.key_codec.encode(key)

    def encode_value(self, value: Any) -> bytes:
        if self.value_codec is None:
            return b""
        if not self.percpu:
            return self.value_codec.encode(value)
        if not isinstance(value, list | tuple) or len(value) != self.ncpus:
            # one value for every CPU is the common case when initialising counters
            value = [value] * self.ncpus
        pad = bytes(self._stride - self.spec.value_size)
        return b"".join(self.value_codec.encode(v) + pad for v in value)

    def decode_value(self, data: bytes) -> Any:
        if self.value_codec is None:
            return None
        if not self.percpu:
            return self.value_codec.decode(data)
        size, stride = self.spec.value_size, self._stride
        return [self.value_codec.decode(data[i * stride:i * stride + size])
                for i in range(self.ncpus)]

    # the public, typed protocol
    def lookup(self, key: Any) -> Any:
        """The value for ``key``; raises ``KeyError`` when it is missing."""
        raw = self._lookup(self.encode_key(key))
        if raw is None:
            raise KeyError(key)
        return self.decode_value(raw)

    def get(self, key: Any, default: Any = None) -> Any:
        raw = self._lookup(self.encode_key(key))
        return default if raw is None else self.decode_value(raw)

    def lookup_raw(self, key: Any) -> bytes | None:
        """The value's bytes as the map holds them (per-CPU maps: every CPU's, padded to 8
        bytes each), or None when ``key`` is missing; no value codec involved."""
        return self._lookup(self.encode_key(key))

    def update(self, key: Any, value: Any, flags: int = UpdateFlags.ANY) -> None:
        self._update(self.encode_key(key), self.encode_value(value), int(flags))

    def delete(self, key: Any) -> None:
        """Delete ``key``; raises ``KeyError`` when it is missing."""
        if not self._delete(self.encode_key(key)):
            raise KeyError(key)

    def raw_keys(self) -> Iterator[bytes]:
        key = self._next_key(None)
        seen = 0
        limit = max(self.spec.max_entries, 1) * 2 + 16  # guard against a changing map
        while key is not None and seen < limit:
            yield key
            seen += 1
            key = self._next_key(key)

    def keys(self) -> Iterator[Any]:
        for k in self.raw_keys():
            yield self.key_codec.decode(k)

    def items(self) -> Iterator[tuple[Any, Any]]:
        for k in self.raw_keys():
            raw = self._lookup(k)
            if raw is not None:
                yield self.key_codec.decode(k), self.decode_value(raw)

    def values(self) -> Iterator[Any]:
        for _, v in self.items():
            yield v

    # batch operations: backends with native batches override these
    def lookup_batch(self, keys: Iterable[Any]) -> list[Any]:
        """Values for ``keys`` (``None`` where a key is missing)."""
        return [self.get(k) for k in keys]

    def update_batch(self, pairs: Iterable[tuple[Any, Any]],
                     flags: int = UpdateFlags.ANY) -> int:
        n = 0
        for k, v in pairs:
            self.update(k, v, flags)
            n += 1
        return n

    def update_batch_raw(self, keys: bytes, values: bytes, flags: int = 0) -> int:
        """Update from packed keys and values (``key_size``/value width bytes each), the way
        a control plane writes large tables without a Python object per entry; returns how
        many were written.  Backends with native batches override this."""
        ks = self.spec.key_size
        vs = self._stride * self.ncpus if self.percpu else self.spec.value_size
        n = len(keys) // ks if ks else 0
        if len(keys) != n * ks or len(values) != n * vs:
            raise MapError(f"map {self.name!r}: blobs of {len(keys)} key and {len(values)}"
                           f" value bytes are not {n} elements of {ks}+{vs} bytes")
        for i in range(n):
            self._update(keys[i * ks:(i + 1) * ks], values[i * vs:(i + 1) * vs], flags)
        return n

    def write_array(self, values: bytes | memoryview, start: int = 0) -> int:
        """Write consecutive values of an ARRAY map from one blob (``value_size`` bytes
        each), from index ``start``; returns how many.  Here one batch update with
        generated keys; the kernel writes an mmapable array through a shared mapping."""
        if self.spec.type != MapType.ARRAY:
            raise MapError(f"map {self.name!r} is a {self.spec.type.name}, not an ARRAY")
        vs = self.spec.value_size
        n = len(values) // vs if vs else 0
        if len(values) != n * vs or start < 0 or start + n > self.spec.max_entries:
            raise MapError(f"map {self.name!r}: {len(values)} bytes from index {start} are"
                           f" not whole {vs}-byte values inside its {self.spec.max_entries}"
                           " entries")
        keys = array.array("I", range(start, start + n))     # u32 keys, native order
        return self.update_batch_raw(keys.tobytes(), bytes(values))

    def write_value_bytes(self, key: bytes, offset: int, data: bytes) -> None:
        """Overwrite ``data`` at ``offset`` in the value of raw ``key`` (read-modify-write
        here; the kernel's mmapable data maps write just those bytes, so a running
        program's writes to the rest of the value are never undone)."""
        old = self._lookup(key)
        if old is None:
            old = bytes(self.spec.value_size)
        if offset < 0 or offset + len(data) > len(old):
            raise MapError(f"map {self.name!r}: {len(data)} bytes at offset {offset} do not"
                             f" fit a {len(old)}-byte value")
        self._update(key, old[:offset] + data + old[offset + len(data):], 0)

    def close(self) -> None:
        """Release the map (a no-op for maps that own nothing outside Python)."""
        return None

    def delete_batch(self, keys: Iterable[Any]) -> int:
        """Delete ``keys``; returns how many existed."""
        n = 0
        for k in keys:
            n += self._delete(self.encode_key(k))
        return n

    def clear(self) -> None:
        """Empty the map; value arrays (which cannot lose keys) are zeroed instead.  Arrays
        of fds (programs, maps, devices) do lose their entries: they are deleted."""
        if self.spec.type in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            width = self._stride * self.ncpus if self.percpu else self.spec.value_size
            for k in list(self.raw_keys()):
                self._update(k, bytes(width), UpdateFlags.ANY)
            return
        for k in list(self.raw_keys()):
            self._delete(k)

    # dict-like sugar
    def __getitem__(self, key: Any) -> Any:
        return self.lookup(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: Any) -> bool:
        return self._lookup(self.encode_key(key)) is not None

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def __len__(self) -> int:
        return sum(1 for _ in self.raw_keys())

    def __repr__(self) -> str:
        s = self.spec
        return (f"<{type(self).__name__} {s.name!r} {s.type.name} key={s.key_size}"
                f" value={s.value_size} max={s.max_entries}>")


__all__ = [
    "ARRAY_TYPES", "PERCPU_TYPES", "BytesCodec", "Codec", "CtypesCodec", "IntCodec",
    "LpmKeyCodec", "MapBase", "MapSpec", "StructCodec", "UpdateFlags", "check_reuse_compat",
    "make_codec",
]

"""Kernel maps behind the shared :class:`~pyxdp.maps.MapBase` protocol.

The protocol does the typing (codecs, per-CPU lists); this module only moves bytes in and
out of the kernel.  Two things are tuned because they are the hot paths of a control plane:

* single operations reuse one pre-built attr and value buffer per map (no per-call ctypes
  objects besides the key pointer);
* batch operations build *one* contiguous key blob and value blob (``bytes.join`` or
  ``array`` for integers) and hand the kernel their addresses, so Python does O(1) work per
  syscall, not per element.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno as _errno
import gc
import mmap
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any

from pyxdp.abi import BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG, Cmd, MapType
from pyxdp.errors import BpfError, MapError, NotSupportedError
from pyxdp.kernel._fd import Fd, fd_number
from pyxdp.kernel._info import MapInfo, fd_by_id, map_info
from pyxdp.kernel._owned import OwnedObject
from pyxdp.kernel._pin import obj_get
from pyxdp.kernel._ringbuf import RingBufReader
from pyxdp.kernel._sys import (
    ENOTSUPP,
    MapBatchAttr,
    MapCreateAttr,
    MapElemAttr,
    bpf,
    bytes_addr,
    obj_name,
    possible_cpus,
)
from pyxdp.maps import Codec, IntCodec, MapBase, MapSpec, StructCodec, UpdateFlags

FD_VALUE_TYPES = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.PROG_ARRAY,
                            MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY,
                            MapType.SOCKMAP, MapType.SOCKHASH})
DEFAULT_CHUNK = 1 << 16
_BATCH_UNSUPPORTED = (ENOTSUPP, _errno.EOPNOTSUPP, _errno.EINVAL)


class _ElemPtrAttr(ctypes.Structure):
    """Same layout as :class:`MapElemAttr`, but ``key``/``value`` are ``char *`` fields so a
    ``bytes`` key can be assigned directly (ctypes keeps it alive) without an address lookup.
    Valid on the 64-bit targets we support, where a pointer is an 8-byte aligned u64."""

    _fields_ = [("map_fd", ctypes.c_uint32), ("key", ctypes.c_char_p),
                ("value", ctypes.c_char_p), ("flags", ctypes.c_uint64)]


assert ctypes.sizeof(_ElemPtrAttr) == ctypes.sizeof(MapElemAttr)

_ARRAY_CODES: dict[tuple[int, bool], str] = {}
for _tc in "BHILQbhilq":
    _ARRAY_CODES.setdefault((array.array(_tc).itemsize, _tc.islower()), _tc)
_NATIVE_LE = sys.byteorder == "little"


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building big lists of fresh ints/tuples: they cannot form
    cycles, yet every 700 allocations would trigger a collection (halving batch speed)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# anon inode names (fs/anon_inodes.c callers in kernel/bpf/) -> what we call the object
_BPF_INODES = {"bpf-map": "map", "bpf-prog": "program", "bpf_link": "link", "btf": "BTF",
               "bpf-token": "token"}


def bpf_object_kind(fd: object) -> str | None:
    """What the file behind ``fd`` is: ``"map"``, ``"program"``, ``"link"``, ``"BTF"``...

    Every bpf object is an anonymous inode whose name ``/proc/self/fd`` shows.  This must be
    known *before* BPF_OBJ_GET_INFO_BY_FD: that call accepts any bpf object and fills the
    caller's struct with the other object's info (a program's info read as a map's gives
    garbage sizes).  Anything else is described as ``"file <link target>"``; ``None``
    means the kind cannot be told (no /proc), and callers then go on unchecked.
    """
    try:
        target = os.readlink(f"/proc/self/fd/{fd_number(fd)}")
    except OSError:
        return None
    name = target.removeprefix("anon_inode:")
    if name != target and name in _BPF_INODES:
        return _BPF_INODES[name]
    return f"file {target}"


def expect_kind(fd: object, want: str, what: str | None = None) -> str | None:
    """None when ``fd`` holds a BPF ``want`` (or nobody can tell), else an error text that
    names ``what`` (a pin path; default: the fd number) and what it really is."""
    kind = bpf_object_kind(fd)
    if kind is None or kind == want:
        return None
    where = what if what is not None else f"fd {fd_number(fd)}"
    if kind in _BPF_INODES.values():
        return f"{where} is a BPF {kind}, not a BPF {want}"
    return f"{where} is not a BPF {want} but a {kind}"


def _array_code(codec: Codec | None) -> str | None:
    """An ``array`` typecode that encodes exactly like ``codec`` (plain ints), or None."""
    if type(codec) is not IntCodec or not _NATIVE_LE:
        return None
    return _ARRAY_CODES.get((codec.size, codec.signed))


class Map(OwnedObject, MapBase):
    """A live kernel map. Owns its :class:`Fd`; ``close()`` or ``with`` releases it.

    Values of fd-holding maps (``ARRAY_OF_MAPS``, ``HASH_OF_MAPS``, ``PROG_ARRAY``, ...)
    take a :class:`Map`/``Program``/:class:`Fd`/int fd on update and read back as the
    kernel object *id* (that is what the kernel returns).
    """

    def __init__(self, fd: Fd, spec: MapSpec, key_type: Any = None,
                 value_type: Any = None) -> None:
        super().__init__(spec, key_type, value_type, ncpus=possible_cpus())
        self.fd = fd
        self._ksize = spec.key_size
        self._vwidth = self._stride * self.ncpus if self.percpu else spec.value_size
        self._fd_values = spec.type in FD_VALUE_TYPES
        self._vbuf = ctypes.create_string_buffer(max(self._vwidth, 1))
        self._nbuf = ctypes.create_string_buffer(max(self._ksize, 1))
        self._attr = _ElemPtrAttr(map_fd=fd.fileno())
        self._lock = threading.Lock()
        self._batch: dict[int, bool] = {}        # per batch command: supported? (unknown: absent)
        self._pinned: str | None = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, spec: MapSpec, key_type: Any = None, value_type: Any = None,
               btf_fd: object = None, inner_map_fd: object = None) -> Map:
        """Create a map from ``spec`` (BPF_MAP_CREATE), fill ``spec.contents`` and freeze it
        if ``spec.freeze``.

        Map-in-map needs a template inner map: pass ``inner_map_fd``, or give ``spec.inner``
        and a temporary inner map is created for the call.  LPM tries get
        ``BPF_F_NO_PREALLOC`` added because the kernel refuses them without it.
        """
        flags = spec.flags
        if spec.type == MapType.LPM_TRIE:
            flags |= BPF_F_NO_PREALLOC
        attr = MapCreateAttr(
            map_type=spec.type, key_size=spec.key_size, value_size=spec.value_size,
            max_entries=spec.max_entries, map_flags=flags, numa_node=spec.numa_node,
            map_name=obj_name(spec.name), map_extra=spec.map_extra)
        if btf_fd is not None:
            attr.btf_fd = fd_number(btf_fd)
            attr.btf_key_type_id = spec.key_type_id
            attr.btf_value_type_id = spec.value_type_id
        temp_inner: Map | None = None
        if spec.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            if inner_map_fd is None:
                if spec.inner is None:
                    raise MapError(f"map {spec.name!r}: a map-in-map needs inner_map_fd or"
                                   " spec.inner")
                temp_inner = cls.create(spec.inner)
                inner_map_fd = temp_inner
            attr.inner_map_fd = fd_number(inner_map_fd)
        try:
            fd = Fd(bpf(Cmd.MAP_CREATE, attr))
        finally:
            if temp_inner is not None:
                temp_inner.close()
        m = cls(fd, spec, key_type, value_type)
        try:
            for k, v in spec.contents:
                m._update(k, v, UpdateFlags.ANY)
            if spec.freeze:
                m.freeze()
        except BaseException:
            m.close()
            raise
        return m

    @classmethod
    def from_fd(cls, fd: Fd, key_type: Any = None, value_type: Any = None, *,
                what: str | None = None) -> Map:
        """Wrap an owned fd (ownership passes to the map); the spec comes from the kernel.

        Raises :class:`MapError` (and closes ``fd``) when the fd is not a map; ``what``
        names it in that message (e.g. the pin path it came from).
        """
        try:
            problem = expect_kind(fd, "map", what)
            if problem is not None:
                raise MapError(problem)
            info = map_info(fd)
            if not isinstance(info.type, MapType):
                raise NotSupportedError(f"map type {info.type}")
            spec = MapSpec(name=info.name, type=info.type, key_size=info.key_size,
                           value_size=info.value_size, max_entries=info.max_entries,
                           flags=info.flags, key_type_id=info.btf_key_type_id,
                           value_type_id=info.btf_value_type_id, map_extra=info.map_extra)
            return cls(fd, spec, key_type, value_type)
        except BaseException:
            fd.close()
            raise

    @classmethod
    def from_pin(cls, path: str, key_type: Any = None, value_type: Any = None,
                 flags: int = 0) -> Map:
        """Open a map pinned at ``path``; a pinned program or link raises :class:`MapError`."""
        return cls.from_fd(obj_get(path, flags), key_type, value_type, what=path)

    @classmethod
    def from_id(cls, map_id: int, key_type: Any = None, value_type: Any = None) -> Map:
        """Open a map by its kernel id (BPF_MAP_GET_FD_BY_ID)."""
        return cls.from_fd(fd_by_id(Cmd.MAP_GET_FD_BY_ID, map_id), key_type, value_type)

    # -- lifetime ------------------------------------------------------------------------
    def info(self) -> MapInfo:
        return map_info(self.fd)

    @property
    def id(self) -> int:
        return self.info().id

    def freeze(self) -> None:
        """Make the map read-only for user space (BPF_MAP_FREEZE); programs may still write
        unless the map was created with ``BPF_F_RDONLY_PROG``."""
        bpf(Cmd.MAP_FREEZE, MapElemAttr(map_fd=self.fd.fileno()))

    def _not_pinned(self) -> Exception:
        return MapError(f"map {self.name!r} is not pinned")

    # -- value typing: fd-holding maps ---------------------------------------------------
    def encode_value(self, value: Any) -> bytes:
        if self._fd_values and not isinstance(value, bytes | bytearray):
            return fd_number(value).to_bytes(4, "little")
        return super().encode_value(value)

    # -- raw single operations -----------------------------------------------------------
    def _check_key(self, key: bytes) -> None:
        if len(key) != self._ksize:
            raise MapError(f"map {self.name!r}: key must be {self._ksize} bytes, got {len(key)}")

    def _lookup(self, key: bytes) -> bytes | None:
        if len(key) != self._ksize:
            self._check_key(key)
        with self._lock:
            a = self._attr
            a.map_fd = self.fd.fileno()  # raises once closed: never a reused fd number
            a.key = key or None
            a.value = ctypes.addressof(self._vbuf)
            a.flags = 0
            try:
                bpf(Cmd.MAP_LOOKUP_ELEM, a)
            except BpfError as e:
                if e.errno == _errno.ENOENT:
                    return None
                raise
            return self._vbuf.raw[:self._vwidth]

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        if len(key) != self._ksize:
            self._check_key(key)
        if len(value) != self._vwidth:
            raise MapError(f"map {self.name!r}: value must be {self._vwidth} bytes,"
                           f" got {len(value)}")
        with self._lock:
            a = self._attr
            a.map_fd = self.fd.fileno()  # raises once closed: never a reused fd number
            a.key = key or None
            a.value = value or None
            a.flags = flags
            bpf(Cmd.MAP_UPDATE_ELEM, a)

    def _delete(self, key: bytes) -> bool:
        if len(key) != self._ksize:
            self._check_key(key)
        with self._lock:
            a = self._attr
            a.map_fd = self.fd.fileno()  # raises once closed: never a reused fd number
            a.key = key or None
            a.value = None
            a.flags = 0
            try:
                bpf(Cmd.MAP_DELETE_ELEM, a)
            except BpfError as e:
                if e.errno == _errno.ENOENT:
                    return False
                raise
            return True

    def _next_key(self, key: bytes | None) -> bytes | None:
        if key is not None and len(key) != self._ksize:
            self._check_key(key)
        with self._lock:
            a = self._attr
            a.map_fd = self.fd.fileno()  # raises once closed: never a reused fd number
            a.key = key
            a.value = ctypes.addressof(self._nbuf)
            a.flags = 0
            try:
                bpf(Cmd.MAP_GET_NEXT_KEY, a)
            except BpfError as e:
                if e.errno == _errno.ENOENT:
                    return None
                raise
            return self._nbuf.raw[:self._ksize]

    # -- bulk encoding ---------------------------------------------------------------------
    def encode_keys(self, keys: Sequence[Any]) -> bytes:
        """All keys as one contiguous blob (fast path for integer keys)."""
        code = _array_code(self.key_codec)
        if code is not None:
            try:
                return array.array(code, keys).tobytes()
            except (TypeError, OverflowError):
                pass  # fall through: the codec names the bad key
        ks = self._ksize
        if keys and type(keys[0]) is bytes and not isinstance(self.key_codec, StructCodec) and all(
                type(k) is bytes and len(k) == ks for k in keys):
            return b"".join(keys)  # already in kernel layout, which these codecs accept
        enc = self.key_codec.encode
        return b"".join([enc(k) for k in keys])

    def encode_values(self, values: Sequence[Any]) -> bytes:
        """All values as one contiguous blob in the kernel's batch layout."""
        code = None if (self.percpu or self._fd_values) else _array_code(self.value_codec)
        if code is not None:
            try:
                return array.array(code, values).tobytes()
            except (TypeError, OverflowError):
                pass
        enc = self.encode_value
        return b"".join([enc(v) for v in values])

    def decode_keys(self, blob: bytes) -> list[Any]:
        code = _array_code(self.key_codec)
        if code is not None:
            return array.array(code, blob).tolist()
        dec, ks = self.key_codec.decode, self._ksize
        return [dec(blob[i:i + ks]) for i in range(0, len(blob), ks)]

    def decode_values(self, blob: bytes) -> list[Any]:
        code = None if self.percpu else _array_code(self.value_codec)
        if code is not None:
            return array.array(code, blob).tolist()
        dec, w = self.decode_value, self._vwidth
        return [dec(blob[i:i + w]) for i in range(0, len(blob), w)]

    # -- batch operations --------------------------------------------------------------------
    def update_batch(self, pairs: Iterable[tuple[Any, Any]] | Mapping[Any, Any],
                     flags: int = UpdateFlags.ANY) -> int:
        """Insert or overwrite many pairs with BPF_MAP_UPDATE_BATCH; returns how many.

        Falls back to one update per element on map types without batch support.  On a
        kernel error (``E2BIG`` when full, ...) elements before the failing one are stored.
        """
        if isinstance(pairs, Mapping):
            keys, values = list(pairs.keys()), list(pairs.values())
        else:
            pairs = pairs if isinstance(pairs, list | tuple) else list(pairs)
            keys, values = list(map(itemgetter(0), pairs)), list(map(itemgetter(1), pairs))
        if not keys:
            return 0
        return self.update_batch_raw(self.encode_keys(keys), self.encode_values(values), flags)

    def close(self) -> None:
        for attr in ("_ringbuf", "_perf"):
            reader = self.__dict__.pop(attr, None)
            if reader is not None:
                reader.close()
        super().close()

    def subscribe(self, pages: int = 8) -> None:
        """Open a perf ring per CPU for a PERF_EVENT_ARRAY map and store their fds in it;
        samples the programs write from then on are read with :meth:`drain` (before, the
        kernel has nowhere to put them: ``bpf_xdp_output`` returns -ENOENT)."""
        if self.spec.type != MapType.PERF_EVENT_ARRAY:
            raise MapError(f"map {self.name!r} is a {self.spec.type.name}, not a"
                           " PERF_EVENT_ARRAY")
        if getattr(self, "_perf", None) is None:
            from pyxdp.kernel._perf import PerfReader
            ncpu = min(self.spec.max_entries, os.cpu_count() or 1)
            self._perf = PerfReader(self, list(range(ncpu)), pages)

    @property
    def lost(self) -> int:
        """Perf samples the kernel dropped because a ring was full (PERF_RECORD_LOST)."""
        reader = getattr(self, "_perf", None)
        return 0 if reader is None else reader.lost

    def drain(self, limit: int | None = None) -> list[bytes]:
        """The submitted records of a ring buffer map, oldest first (consumed: the next
        call returns what came after), or the samples of a subscribed perf event array
        (CPU by CPU, each CPU's oldest first); the same call as the emulator's."""
        if self.spec.type == MapType.PERF_EVENT_ARRAY:
            perf = getattr(self, "_perf", None)
            if perf is None:
                raise MapError(f"perf event array {self.name!r}: call subscribe() first"
                               " (samples only reach rings opened before they are written)")
            return perf.drain(limit)
        if self.spec.type != MapType.RINGBUF:
            raise MapError(f"map {self.name!r} is a {self.spec.type.name}, not a RINGBUF")
        reader = getattr(self, "_ringbuf", None)
        if reader is None:
            reader = self._ringbuf = RingBufReader(self.fd.fileno(), self.spec.max_entries)
        return reader.drain(limit)

    def _mmap_write(self, start: int, data: bytes | memoryview) -> bool:
        """Write ``data`` at byte ``start`` of an mmapable array's shared mapping (values
        8-byte aligned in it); False when the map cannot be mapped (then the caller goes
        through bpf())."""
        if not (self.spec.flags & BPF_F_MMAPABLE and self.spec.type == MapType.ARRAY):
            return False
        stride = (self.spec.value_size + 7) & ~7
        page = mmap.PAGESIZE
        length = (stride * self.spec.max_entries + page - 1) // page * page
        if start < 0 or start + len(data) > length:
            return False
        try:
            mm = mmap.mmap(self.fd.fileno(), length, mmap.MAP_SHARED,
                           mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            return False
        with mm:
            mm[start:start + len(data)] = data
        return True

    def write_value_bytes(self, key: bytes, offset: int, data: bytes) -> None:
        """Overwrite bytes of one value.  An mmapable array (every global data map libbpf-
        style) is written through a shared mapping, just those bytes, so a running
        program's concurrent writes to its neighbours are never undone; other maps (and
        kernels before 5.5) fall back to read-modify-write."""
        if len(key) == 4:
            index = int.from_bytes(key, "little")
            stride = (self.spec.value_size + 7) & ~7
            if (offset >= 0 and offset + len(data) <= self.spec.value_size
                    and index < self.spec.max_entries
                    and self._mmap_write(index * stride + offset, data)):
                return
        super().write_value_bytes(key, offset, data)

    def write_array(self, values: bytes | memoryview, start: int = 0) -> int:
        """Consecutive values of an ARRAY map from one blob; an mmapable array whose
        values are whole 8-byte words (so the mapping holds them back to back) is written
        through its shared mapping in one copy, tens of megabytes in milliseconds; others
        by one batch update."""
        vs = self.spec.value_size
        values = memoryview(values).cast("B")
        if (vs and vs % 8 == 0 and len(values) % vs == 0 and start >= 0
                and start + len(values) // vs <= self.spec.max_entries
                and self._mmap_write(start * vs, values)):
            return len(values) // vs
        return super().write_array(values, start)

    def update_batch_raw(self, keys: bytes, values: bytes, flags: int = 0) -> int:
        """Batch update from contiguous key/value blobs (already in kernel layout)."""
        ks, vw = self._ksize, self._vwidth
        n = len(keys) // ks if ks else 0
        if len(keys) != n * ks or len(values) != n * vw:
            raise MapError(f"map {self.name!r}: blobs of {len(keys)} key and {len(values)}"
                           f" value bytes are not {n} elements of {ks}+{vw} bytes")
        if n == 0:
            return 0
        if self._batch.get(Cmd.MAP_UPDATE_BATCH, True):
            attr = MapBatchAttr(keys=bytes_addr(keys), values=bytes_addr(values), count=n,
                                map_fd=self.fd.fileno(), elem_flags=flags)
            try:
                bpf(Cmd.MAP_UPDATE_BATCH, attr)
                self._batch[Cmd.MAP_UPDATE_BATCH] = True
                return n
            except BpfError as e:
                if not self._batch_unsupported(Cmd.MAP_UPDATE_BATCH, e, attr.count):
                    raise
        for i in range(n):
            self._update(keys[i * ks:(i + 1) * ks], values[i * vw:(i + 1) * vw], flags)
        return n

    def _batch_unsupported(self, cmd: Cmd, e: BpfError, done: int) -> bool:
        """Whether ``e`` means "this map type lacks batch command ``cmd``" (then remember
        it, except for EINVAL, which may also be a bad argument)."""
        if self._batch.get(cmd) or e.errno not in _BATCH_UNSUPPORTED:
            return False
        if done and e.errno not in (ENOTSUPP, _errno.EOPNOTSUPP):
            return False  # some elements were done: a real error part-way
        if e.errno != _errno.EINVAL:
            self._batch[cmd] = False
        return True

    def delete_batch(self, keys: Iterable[Any]) -> int:
        """Delete many keys with BPF_MAP_DELETE_BATCH; returns how many existed."""
        keys = keys if isinstance(keys, list | tuple) else list(keys)
        return self.delete_batch_raw(self.encode_keys(keys)) if keys else 0

    def delete_batch_raw(self, keys: bytes) -> int:
        ks = self._ksize
        n = len(keys) // ks if ks else 0
        if len(keys) != n * ks:
            raise MapError(f"map {self.name!r}: {len(keys)} bytes are not whole {ks}-byte keys")
        deleted = pos = 0
        base = bytes_addr(keys)
        while pos < n and self._batch.get(Cmd.MAP_DELETE_BATCH, True):
            attr = MapBatchAttr(keys=base + pos * ks, count=n - pos, map_fd=self.fd.fileno())
            try:
                bpf(Cmd.MAP_DELETE_BATCH, attr)
                self._batch[Cmd.MAP_DELETE_BATCH] = True
                return deleted + attr.count
            except BpfError as e:
                if e.errno == _errno.ENOENT:  # a missing key stops the kernel: skip it
                    self._batch[Cmd.MAP_DELETE_BATCH] = True
                    deleted += attr.count
                    pos += attr.count + 1
                    continue
                if not self._batch_unsupported(Cmd.MAP_DELETE_BATCH, e, attr.count):
                    raise
                break
        for i in range(pos, n):
            deleted += self._delete(keys[i * ks:(i + 1) * ks])
        return deleted

    def dump_raw(self, chunk: int = DEFAULT_CHUNK, delete: bool = False) -> tuple[bytes, bytes]:
        """Every key and value as two contiguous blobs, read with BPF_MAP_LOOKUP_BATCH
        (``delete``: BPF_MAP_LOOKUP_AND_DELETE_BATCH, draining the map).

        Falls back to GET_NEXT_KEY + lookup on map types without batch lookup.
        """
        ks, vw = self._ksize, self._vwidth
        chunk = max(1, min(chunk, max(self.spec.max_entries, 1)))
        cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
        token_in = ctypes.create_string_buffer(max(ks, 8))
        token_out = ctypes.create_string_buffer(max(ks, 8))
        kparts: list[bytes] = []
        vparts: list[bytes] = []
        if not self._batch.get(cmd, True):
            return self._dump_slow(delete)
        first = True
        while True:
            kbuf = ctypes.create_string_buffer(chunk * ks)
            vbuf = ctypes.create_string_buffer(chunk * vw)
            attr = MapBatchAttr(in_batch=0 if first else ctypes.addressof(token_in),
                                out_batch=ctypes.addressof(token_out),
                                keys=ctypes.addressof(kbuf), values=ctypes.addressof(vbuf),
                                count=chunk, map_fd=self.fd.fileno())
            done = False
            try:
                bpf(cmd, attr)
            except BpfError as e:
                if e.errno == _errno.ENOENT:
                    done = True
                elif e.errno == _errno.ENOSPC and attr.count == 0:
                    chunk *= 2  # a hash bucket holds more than `chunk` elements
                    continue
                elif first and self._batch_unsupported(cmd, e, 0):
                    return self._dump_slow(delete)
                else:
                    raise
            self._batch[cmd] = True
            got = attr.count
            if got:
                kparts.append(ctypes.string_at(kbuf, got * ks))
                vparts.append(ctypes.string_at(vbuf, got * vw))
            if done:
                break
            first = False
            ctypes.memmove(token_in, token_out, len(token_in))
        return b"".join(kparts), b"".join(vparts)

    def _dump_slow(self, delete: bool) -> tuple[bytes, bytes]:
        keys = list(self.raw_keys())
        kparts, vparts = [], []
        for k in keys:
            v = self._lookup(k)
            if v is not None:
                kparts.append(k)
                vparts.append(v)
        if delete:
            for k in kparts:
                self._delete(k)
        return b"".join(kparts), b"".join(vparts)

    def dump(self, chunk: int = DEFAULT_CHUNK, delete: bool = False) -> list[tuple[Any, Any]]:
        """Every ``(key, value)`` pair, typed, read in batches (see :meth:`dump_raw`)."""
        kblob, vblob = self.dump_raw(chunk, delete)
        with _gc_paused():
            return list(zip(self.decode_keys(kblob), self.decode_values(vblob)))

    def lookup_batch(self, keys: Iterable[Any]) -> list[Any]:
        """Values for ``keys`` (``None`` where missing).

        The kernel has no keyed batch lookup (BPF_MAP_LOOKUP_BATCH walks the whole map, see
        :meth:`dump`), so this is a tight loop of single lookups sharing one buffer.
        """
        keys = keys if isinstance(keys, list | tuple) else list(keys)
        blob = self.encode_keys(keys)
        ks, look, dec = self._ksize, self._lookup, self.decode_value
        out: list[Any] = []
        for i in range(len(keys)):
            raw = look(blob[i * ks:(i + 1) * ks])
            out.append(None if raw is None else dec(raw))
        return out


__all__ = ["BPF_F_MMAPABLE", "BPF_F_NO_PREALLOC", "BPF_F_RDONLY_PROG", "DEFAULT_CHUNK",
           "FD_VALUE_TYPES", "Map", "bpf_object_kind", "expect_kind"]

"""The kernel's BTF, read lazily: an index by name and kind up front, types decoded when
asked for.

vmlinux BTF has ~100k-200k types; decoding all of them in Python takes seconds, while a
CO-RE relocation or a kfunc lookup touches a few dozen.  :class:`LazyBtf` walks the type
section once to record where each type starts and what it is called (no objects made),
and decodes a type on first access (then keeps it).  It answers everything :class:`Btf`
answers (``types[i]``, ``find``, ``by_name``, ``member_offset``, ...); only its own
``encode`` is not offered (kernel BTF is never re-encoded).

The index can be kept in a cache file (:func:`load_index` / :func:`save_index`): it is
keyed by the BTF's content (its SHA-256), so another kernel's BTF never reuses it, and a
damaged or foreign file is ignored and rebuilt, never trusted.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import marshal
import os
import struct
from collections.abc import Iterator, Sequence
from typing import Any, overload

from pyxdp.btf._btf import (
    _EXTRA,
    _PER_VLEN,
    HEADER_LEN,
    Btf,
    _endian,
    _Layouts,
    _parse_one,
    _type_len,
)
from pyxdp.btf._strings import StringTable
from pyxdp.btf._types import VOID, BtfType, Kind
from pyxdp.errors import BtfError

INDEX_VERSION = 2


class _LazyTypes(Sequence[BtfType]):
    """``types`` of a :class:`LazyBtf`: decoded on first access."""

    def __init__(self, btf: LazyBtf) -> None:
        self._btf = btf
        self._cache: dict[int, BtfType] = {0: VOID}
        self._extra: list[BtfType] = []

    def __len__(self) -> int:
        return len(self._btf._offsets) + 1 + len(self._extra)

    @overload
    def __getitem__(self, i: int) -> BtfType: ...

    @overload
    def __getitem__(self, i: slice) -> list[BtfType]: ...

    def __getitem__(self, i: int | slice) -> BtfType | list[BtfType]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self._btf._offsets) + 1
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        if i >= n:
            return self._extra[i - n]
        t = self._cache.get(i)
        if t is None:
            t = self._cache[i] = self._btf._decode(i)
        return t

    def __iter__(self) -> Iterator[BtfType]:
        for i in range(len(self)):
            yield self[i]

    def append(self, t: BtfType) -> None:
        self._extra.append(t)


class LazyBtf(Btf):
    """A BTF blob indexed up front and decoded on demand (see the module doc)."""

    def __init__(self, data: bytes, index: dict[str, Any] | None = None,
                 digest: str | None = None) -> None:
        e = _endian(data)
        if len(data) < HEADER_LEN:
            raise BtfError(f"BTF header truncated: {len(data)} bytes")
        _, version, _flags, hdr_len = struct.unpack_from(e + "HBBI", data, 0)
        if version != 1 or not HEADER_LEN <= hdr_len <= len(data):
            raise BtfError(f"unsupported BTF (version {version}, header {hdr_len})")
        type_off, type_len, str_off, str_len = struct.unpack_from(e + "IIII", data, 8)
        body = len(data) - hdr_len
        if type_off + type_len > body or str_off + str_len > body:
            raise BtfError("BTF sections exceed the blob")
        strings = StringTable(data[hdr_len + str_off:hdr_len + str_off + str_len])
        super().__init__(None, strings, None, e)
        self._data = data
        self._raw = data[hdr_len + type_off:hdr_len + type_off + type_len]
        self._lay = _Layouts(e)
        self.digest = digest or hashlib.sha256(data).hexdigest()
        self._found: dict[str, list[int]] = {}
        self._flav: dict[str, list[int]] = {}
        if index is not None and index.get("digest") == self.digest:
            self._offsets = array.array("I")
            self._offsets.frombytes(index["offsets"])
            self._kinds = index["kinds"]
            self._name_offs = array.array("I")
            self._name_offs.frombytes(index["name_offs"])
        else:
            self._scan()
        self._name_bytes = self._name_offs.tobytes()
        self.types = _LazyTypes(self)  # type: ignore[assignment]

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, base: Btf | None = None
              ) -> LazyBtf:
        if base is not None:
            raise BtfError("LazyBtf reads base BTF only (vmlinux)")
        return cls(bytes(data))

    def _scan(self) -> None:
        """Offsets, kinds and the name index, from one walk of the type section (the hot
        loop of a cold start: plain ints and local names only)."""
        raw, lay = self._raw, self._lay
        n = len(raw)
        extra = [0] * 32
        per = [0] * 32
        valid = [False] * 32
        for k in Kind:
            if k != Kind.UNKN:
                valid[k] = True
                extra[k] = _EXTRA.get(k, 0)
                per[k] = _PER_VLEN.get(k, 0)
        offsets = array.array("I")
        kinds = bytearray()
        name_offs = array.array("I")
        unpack = lay.two.unpack_from          # name_off, info
        add_off, add_kind, add_name = offsets.append, kinds.append, name_offs.append
        pos = 0
        while pos < n:
            if pos + 12 > n:
                raise BtfError(f"type at byte {pos} truncated")
            name_off, info = unpack(raw, pos)
            k = (info >> 24) & 0x1F
            if not valid[k]:
                _type_len(raw, pos, lay)      # raises the precise error
            add_off(pos)
            add_kind(k)
            add_name(name_off)
            pos += 12 + extra[k] + per[k] * (info & 0xFFFF)
        if pos != n:
            raise BtfError(f"last BTF type overruns the type section by {pos - n} bytes")
        self._offsets, self._kinds, self._name_offs = offsets, bytes(kinds), name_offs

    def _decode(self, tid: int) -> BtfType:
        t, _ = _parse_one(self._raw, self._offsets[tid - 1], self._lay, self.strings)
        return t

    # -- names: searched in the string section, not indexed in a dict ---------------------
    def _ids_with_name_off(self, off: int) -> list[int]:
        pat = array.array("I", [off]).tobytes()
        blob, at = self._name_bytes, 0
        out: list[int] = []
        while True:
            at = blob.find(pat, at)
            if at < 0:
                return out
            if at % 4 == 0:
                out.append(at // 4 + 1)
                at += 4
            else:
                at += 1

    def _string_offsets(self, prefix: bytes, whole: bool) -> list[tuple[int, str]]:
        """``(offset, string)`` of every string equal to (``whole``) or starting with
        ``prefix`` in the string section."""
        data = self.strings.data
        out: list[tuple[int, str]] = []
        pat = b"\0" + prefix + (b"\0" if whole else b"")
        at = data.find(pat)
        while at >= 0:
            off = at + 1
            end = data.index(b"\0", off)
            out.append((off, data[off:end].decode(errors="replace")))
            at = data.find(pat, at + 1)
        return out

    def _ids_named(self, name: str) -> list[int]:
        ids = self._found.get(name)
        if ids is None:
            self._lookup(name)
            ids = self._found[name]
        return ids

    def _lookup(self, name: str) -> None:
        """One pass over the strings starting with ``name``: the exact ones give
        :meth:`find`, the ``name___*`` ones :meth:`flavours`."""
        exact: list[int] = []
        flav: list[int] = []
        if name:
            for off, full in self._string_offsets(name.encode(), False):
                if full == name:
                    exact += self._ids_with_name_off(off)
                elif full.find("___") == len(name):
                    flav += self._ids_with_name_off(off)
        exact += [i for i in range(len(self._offsets) + 1, len(self.types))
                  if self.types[i].name == name]          # types added after the scan
        self._found[name] = sorted(exact)
        self._flav[name] = sorted(flav)

    def find(self, name: str, kind: Kind | None = None) -> list[int]:
        ids = self._ids_named(name)
        if kind is None:
            return list(ids)
        k, n = int(kind), len(self._kinds)
        return [i for i in ids if (self._kinds[i - 1] == k if i <= n else
                                    self.types[i].kind == kind)]

    def flavours(self, name: str) -> list[int]:
        if name not in self._flav:
            self._lookup(name)
        return list(self._flav[name])

    def _names(self) -> dict[str, list[int]]:
        """Every name (slow: decodes them all; :meth:`find` does not need it)."""
        if self._by_name is None:
            idx: dict[str, list[int]] = {}
            for tid, off in enumerate(self._name_offs, 1):
                if off:
                    idx.setdefault(self.strings.get(off), []).append(tid)
            for tid in range(len(self._offsets) + 1, len(self.types)):
                if self.types[tid].name:
                    idx.setdefault(self.types[tid].name, []).append(tid)
            self._by_name = idx
        return self._by_name

    def invalidate(self) -> None:
        self._by_name = None
        self._flavours = None
        self._found = {}
        self._flav = {}

    def validate(self) -> None:
        """Kernel BTF is the kernel's: each type is checked as it is decoded."""

    def encode(self) -> bytes:
        """The blob: unchanged bytes when nothing was added, else a full re-encode (which
        decodes every type: slow, and never needed for kernel BTF in practice)."""
        if not self.types._extra:                           # type: ignore[attr-defined]
            return self._data
        full = Btf(list(self.types)[1:], StringTable(bytes(self.strings.data)),
                   endian=self.endian)
        return full.encode()

    def index(self) -> dict[str, Any]:
        """What :func:`save_index` keeps."""
        return {"version": INDEX_VERSION, "digest": self.digest,
                "offsets": self._offsets.tobytes(), "kinds": self._kinds,
                "name_offs": self._name_bytes}

    def __repr__(self) -> str:
        return f"<LazyBtf {len(self._offsets)} types, {len(self.types._cache) - 1} decoded>"  # type: ignore[attr-defined]


def load_index(path: str, digest: str) -> dict[str, Any] | None:
    """The cached index at ``path`` if it is one of ours for ``digest``, else None (a
    damaged, foreign or stale file is not an error: it is rebuilt).  The file ends with
    the SHA-256 of what precedes it, so a torn or altered file is never used."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    body, check = blob[:-32], blob[-32:]
    if len(blob) < 33 or hashlib.sha256(body).digest() != check:
        return None
    try:
        doc = marshal.loads(body)
    except (EOFError, ValueError, TypeError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != INDEX_VERSION \
            or doc.get("digest") != digest:
        return None
    if not all(isinstance(doc.get(k), bytes) for k in ("offsets", "kinds", "name_offs")) \
            or not len(doc["offsets"]) == len(doc["name_offs"]) == 4 * len(doc["kinds"]):
        return None
    return doc


def save_index(path: str, btf: LazyBtf) -> None:
    """Write ``btf``'s index to ``path`` atomically (a temporary file renamed, readable
    by its owner only); failures are ignored: the cache is an optimisation."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        body = marshal.dumps(btf.index())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(body + hashlib.sha256(body).digest())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)

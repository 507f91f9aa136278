"""Parsing, querying and re-encoding a BTF blob (``.BTF`` or ``/sys/kernel/btf/*``).

Every count read from the blob is checked against the bytes that remain before anything is
allocated, so hostile input costs at most time linear in its length.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from pyxdp.btf._strings import StringTable
from pyxdp.btf._types import (
    MODIFIERS,
    SIZED,
    VOID,
    BtfType,
    EnumValue,
    Kind,
    Member,
    Param,
    VarSecinfo,
)
from pyxdp.errors import BtfError

MAGIC = 0xEB9F
HEADER_LEN = 24
_MAX_DEPTH = 64          # modifier/array chains longer than this are treated as loops
_EXTRA = {Kind.INT: 4, Kind.ARRAY: 12, Kind.VAR: 4, Kind.DECL_TAG: 4}
_PER_VLEN = {Kind.STRUCT: 12, Kind.UNION: 12, Kind.ENUM: 8, Kind.ENUM64: 12,
             Kind.FUNC_PROTO: 8, Kind.DATASEC: 12}


def _endian(data: bytes, what: str = "BTF") -> str:
    if len(data) < 4:
        raise BtfError(f"{what} is truncated: {len(data)} bytes")
    if data[:2] == b"\x9f\xeb":
        return "<"
    if data[:2] == b"\xeb\x9f":
        return ">"
    raise BtfError(f"{what} has bad magic {data[:2].hex()} (want 9feb)")


class Btf:
    """A parsed BTF blob: ``types[i]`` is type id ``i`` (0 is ``void``).

    For split BTF (kernel modules) ``base`` holds vmlinux; ids continue after the base's last
    id and ``types`` covers both, while :meth:`encode` writes only this blob's own types.
    """

    def __init__(self, types: list[BtfType] | None = None, strings: StringTable | None = None,
                 base: Btf | None = None, endian: str = "<") -> None:
        self.base = base
        self.endian = endian
        self.strings: StringTable = strings or StringTable(b"\0", base.strings if base else None)
        self.start_id = len(base.types) if base is not None else 1
        own = types or []
        self.types: list[BtfType] = (list(base.types) if base else [VOID]) + own
        self._by_name: dict[str, list[int]] | None = None
        self._flavours: dict[str, list[int]] | None = None

    # -- parsing -----------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, base: Btf | None = None) -> Btf:
        """Parse a BTF blob; ``base`` when it is split BTF on top of vmlinux."""
        data = bytes(data)
        e = _endian(data)
        if len(data) < HEADER_LEN:
            raise BtfError(f"BTF header truncated: {len(data)} bytes")
        _, version, _flags, hdr_len = struct.unpack_from(e + "HBBI", data, 0)
        if version != 1:
            raise BtfError(f"unsupported BTF version {version}")
        if hdr_len < HEADER_LEN or hdr_len > len(data):
            raise BtfError(f"bad BTF header length {hdr_len}")
        type_off, type_len, str_off, str_len = struct.unpack_from(e + "IIII", data, 8)
        body = len(data) - hdr_len
        for what, off, ln in (("type", type_off, type_len), ("string", str_off, str_len)):
            if off + ln > body:
                raise BtfError(f"BTF {what} section [{off}, +{ln}) exceeds the {body}"
                               " bytes after the header")
        if type_off % 4:
            raise BtfError(f"BTF type section offset {type_off} is not 4-byte aligned")
        if type_off < str_off + str_len and str_off < type_off + type_len:
            raise BtfError("BTF type and string sections overlap")
        strings = StringTable(data[hdr_len + str_off:hdr_len + str_off + str_len],
                              base.strings if base else None)
        raw = data[hdr_len + type_off:hdr_len + type_off + type_len]
        btf = cls(list(_parse_types(raw, e, strings)), strings, base, e)
        btf.validate()
        return btf

    def validate(self) -> None:
        """Check that every referenced type id exists and that kinds fit their role."""
        n = len(self.types)
        for tid in range(self.start_id, n):
            t = self.types[tid]
            refs = [t.type] if t.kind not in SIZED else []
            refs += [t.elem_type, t.index_type] if t.kind == Kind.ARRAY else []
            refs += [m.type for m in t.members] + [p.type for p in t.params]
            refs += [v.type for v in t.secinfos]
            for r in refs:
                if not 0 <= r < n:
                    raise BtfError(f"type [{tid}] {t.kind.name} {t.name!r} references"
                                   f" type id {r}, but there are only {n - 1} types")
            if t.kind == Kind.FUNC and self.types[t.type].kind != Kind.FUNC_PROTO:
                raise BtfError(f"FUNC [{tid}] {t.name!r} does not point at a FUNC_PROTO")
            if t.kind == Kind.DATASEC:
                for v in t.secinfos:
                    # .ksyms also lists the extern kfuncs (FUNC), as libbpf expects
                    if t.name == ".ksyms" and self.types[v.type].kind == Kind.FUNC:
                        continue
                    if self.types[v.type].kind != Kind.VAR:
                        raise BtfError(f"DATASEC [{tid}] {t.name!r} entry is not a VAR")

    # -- lookups -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.types)

    def __getitem__(self, type_id: int) -> BtfType:
        if not 0 <= type_id < len(self.types):
            raise BtfError(f"no BTF type with id {type_id}")
        return self.types[type_id]

    def __iter__(self) -> Iterator[tuple[int, BtfType]]:
        return iter(enumerate(self.types))

    def _names(self) -> dict[str, list[int]]:
        if self._by_name is None:
            idx: dict[str, list[int]] = {}
            for tid, t in enumerate(self.types):
                if t.name:
                    idx.setdefault(t.name, []).append(tid)
            self._by_name = idx
        return self._by_name

    def invalidate(self) -> None:
        """Forget the name index (call after renaming or adding types)."""
        self._by_name = None
        self._flavours = None

    def flavours(self, name: str) -> list[int]:
        """Ids of the types named ``name___<flavour>`` (CO-RE's flavoured names)."""
        if getattr(self, "_flavours", None) is None:
            idx: dict[str, list[int]] = {}
            for n, ids in self._names().items():
                cut = n.find("___")
                if cut > 0:
                    idx.setdefault(n[:cut], []).extend(ids)
            for ids in idx.values():
                ids.sort()
            self._flavours = idx
        assert self._flavours is not None
        return self._flavours.get(name, [])

    def find(self, name: str, kind: Kind | None = None) -> list[int]:
        """Ids of types called ``name`` (of ``kind`` when given)."""
        ids = self._names().get(name, [])
        return [i for i in ids if kind is None or self.types[i].kind == kind]

    def by_name(self, name: str, kind: Kind | None = None) -> tuple[int, BtfType]:
        """The one type called ``name``; raises ``KeyError`` when there is none."""
        ids = self.find(name, kind)
        if not ids:
            raise KeyError(name)
        return ids[0], self.types[ids[0]]

    def add(self, t: BtfType) -> int:
        """Append a type, returning its id."""
        self.types.append(t)
        self.invalidate()
        return len(self.types) - 1

    def skip_modifiers(self, type_id: int, typedefs: bool = True) -> int:
        """Follow CONST/VOLATILE/RESTRICT/TYPE_TAG (and TYPEDEF) to the underlying id."""
        for _ in range(_MAX_DEPTH):
            t = self[type_id]
            if t.kind not in MODIFIERS or (not typedefs and t.kind == Kind.TYPEDEF):
                return type_id
            type_id = t.type
        raise BtfError(f"modifier chain too long at type {type_id} (a loop?)")

    def resolve(self, type_id: int) -> BtfType:
        return self[self.skip_modifiers(type_id)]

    def size_of(self, type_id: int) -> int:
        """Size in bytes of a type, resolving typedefs, qualifiers, arrays and VARs."""
        mult = 1
        for _ in range(_MAX_DEPTH):
            t = self[type_id]
            if t.kind in SIZED:
                return mult * t.size
            if t.kind == Kind.PTR:
                return mult * 8
            if t.kind == Kind.ARRAY:
                mult *= t.nelems
                type_id = t.elem_type
            elif t.kind in MODIFIERS or t.kind == Kind.VAR:
                type_id = t.type
            else:
                raise BtfError(f"type [{type_id}] {t.kind.name} {t.name!r} has no size")
        raise BtfError(f"type chain too long at type {type_id} (a loop?)")

    def member_offset(self, type_id: int, path: str) -> tuple[int, int]:
        """``(bit_offset, bitfield_size)`` of a dotted member path such as ``"a.b"``.

        Anonymous struct/union members are searched through, as C does.
        """
        total = 0
        last = 0
        for part in path.split("."):
            found = self._find_member(self.skip_modifiers(type_id), part)
            if found is None:
                raise KeyError(f"{self[type_id].name or 'anonymous type'} has no member {part!r}")
            off, m = found
            total += off
            last = m.bitfield_size
            type_id = m.type
        return total, last

    def _find_member(self, type_id: int, name: str, depth: int = 0,
                     misses: set[int] | None = None) -> tuple[int, Member] | None:
        """Search ``name`` through ``type_id`` and its anonymous members.  A type is
        searched once per lookup (``misses``): a crafted struct whose anonymous members are
        itself would otherwise take exponential time."""
        misses = set() if misses is None else misses
        if type_id in misses:
            return None
        t = self[type_id]
        if t.kind not in (Kind.STRUCT, Kind.UNION) or depth > _MAX_DEPTH:
            return None
        # marked on entry: a type cannot contain itself by value, so meeting it again
        # below is a crafted loop, and a finished search of it found nothing
        misses.add(type_id)
        for m in t.members:
            if m.name == name:
                return m.bit_offset, m
            if not m.name:
                sub = self._find_member(self.skip_modifiers(m.type), name, depth + 1, misses)
                if sub is not None:
                    return m.bit_offset + sub[0], sub[1]
        return None

    # -- encoding ----------------------------------------------------------------------------
    def encode(self) -> bytes:
        """This blob (own types only, for split BTF) as bytes the kernel accepts."""
        e = self.endian
        out = bytearray()
        s = self.strings
        for t in self.types[self.start_id:]:
            out += _encode_type(t, e, s)
        strs = bytes(s.data)
        hdr = struct.pack(e + "HBBIIIII", MAGIC, 1, 0, HEADER_LEN, 0, len(out), len(out),
                          len(strs))
        return hdr + bytes(out) + strs

    def __repr__(self) -> str:
        return f"<Btf {len(self.types) - self.start_id} types" + (" split>" if self.base else ">")


class _Layouts:
    """The struct layouts one byte order needs, made once per parse."""

    def __init__(self, e: str) -> None:
        self.hdr = struct.Struct(e + "III")
        self.u32 = struct.Struct(e + "I")
        self.three = struct.Struct(e + "III")
        self.two = struct.Struct(e + "II")


def _parse_types(raw: bytes, e: str, strings: StringTable) -> Iterator[BtfType]:
    pos, n = 0, len(raw)
    lay = _Layouts(e)
    while pos < n:
        t, pos = _parse_one(raw, pos, lay, strings)
        yield t


def _type_len(raw: bytes, pos: int, lay: _Layouts) -> tuple[int, int, int]:
    """``(kind, name_off, length in bytes)`` of the type at ``pos``, checked against the
    bytes that remain."""
    n = len(raw)
    if pos + 12 > n:
        raise BtfError(f"type at byte {pos} truncated")
    name_off, info, _ = lay.hdr.unpack_from(raw, pos)
    k = (info >> 24) & 0x1F
    try:
        kind = Kind(k)
    except ValueError:
        raise BtfError(f"type at byte {pos} has unknown kind {k}") from None
    if kind == Kind.UNKN:
        raise BtfError(f"type at byte {pos} has kind 0 (UNKN)")
    need = _EXTRA.get(kind, 0) + _PER_VLEN.get(kind, 0) * (info & 0xFFFF)
    if pos + 12 + need > n:
        raise BtfError(f"{kind.name} type at byte {pos} needs {need} more bytes"
                       f" (vlen {info & 0xFFFF}) but only {n - pos - 12} remain")
    return k, name_off, 12 + need


def _parse_one(raw: bytes, pos: int, lay: _Layouts, strings: StringTable
               ) -> tuple[BtfType, int]:
    """The type at byte ``pos`` and the position after it."""
    _, _, length = _type_len(raw, pos, lay)
    name_off, info, size_type = lay.hdr.unpack_from(raw, pos)
    start = pos
    pos += 12
    vlen = info & 0xFFFF
    kind = Kind((info >> 24) & 0x1F)
    three, two, u32 = lay.three, lay.two, lay.u32
    t = BtfType(kind, strings.get(name_off), kind_flag=bool(info >> 31), name_off=name_off)
    if kind in SIZED:
        t.size = size_type
    else:
        t.type = size_type
    if kind == Kind.INT:
        (v,) = u32.unpack_from(raw, pos)
        t.encoding, t.int_offset, t.bits = (v >> 24) & 0xF, (v >> 16) & 0xFF, v & 0xFF
    elif kind == Kind.ARRAY:
        t.elem_type, t.index_type, t.nelems = three.unpack_from(raw, pos)
    elif kind in (Kind.STRUCT, Kind.UNION):
        for i in range(vlen):
            mn, mt, mo = three.unpack_from(raw, pos + 12 * i)
            if t.kind_flag:
                t.members.append(Member(strings.get(mn), mt, mo & 0xFFFFFF, mo >> 24))
            else:
                t.members.append(Member(strings.get(mn), mt, mo))
    elif kind == Kind.ENUM:
        for i in range(vlen):
            vn, vv = two.unpack_from(raw, pos + 8 * i)
            if t.kind_flag and vv >= 1 << 31:
                vv -= 1 << 32
            t.values.append(EnumValue(strings.get(vn), vv))
    elif kind == Kind.ENUM64:
        for i in range(vlen):
            vn, lo, hi = three.unpack_from(raw, pos + 12 * i)
            vv = lo | hi << 32
            if t.kind_flag and vv >= 1 << 63:
                vv -= 1 << 64
            t.values.append(EnumValue(strings.get(vn), vv))
    elif kind == Kind.FUNC_PROTO:
        for i in range(vlen):
            pn, pt = two.unpack_from(raw, pos + 8 * i)
            t.params.append(Param(strings.get(pn), pt))
    elif kind == Kind.DATASEC:
        t.secinfos = [VarSecinfo(*three.unpack_from(raw, pos + 12 * i)) for i in range(vlen)]
    elif kind == Kind.VAR:
        (t.linkage,) = u32.unpack_from(raw, pos)
    elif kind == Kind.DECL_TAG:
        (ci,) = u32.unpack_from(raw, pos)
        t.component_idx = ci - (1 << 32) if ci >= 1 << 31 else ci
    elif kind == Kind.FUNC:
        t.linkage = vlen
    elif vlen:
        raise BtfError(f"{kind.name} type at byte {start} has vlen {vlen}, expected 0")
    return t, start + length


def _encode_type(t: BtfType, e: str, s: StringTable) -> bytes:
    try:
        return _encode_type_checked(t, e, s)
    except struct.error as err:
        raise BtfError(f"{t.kind.name} {t.name!r}: a value does not fit its BTF field"
                       f" ({err})") from None


def _encode_type_checked(t: BtfType, e: str, s: StringTable) -> bytes:
    name_off = s.offset_of(t.name, t.name_off)
    vlen = t.vlen
    if vlen > 0xFFFF:
        raise BtfError(f"{t.kind.name} {t.name!r} has {vlen} entries, more than BTF allows")
    info = (int(t.kind) << 24) | vlen | (0x80000000 if t.kind_flag else 0)
    third = t.size if t.kind in SIZED else t.type
    out = [struct.pack(e + "III", name_off, info, third)]
    k = t.kind
    if k == Kind.INT:
        out.append(struct.pack(e + "I", (t.encoding << 24) | (t.int_offset << 16) | t.bits))
    elif k == Kind.ARRAY:
        out.append(struct.pack(e + "III", t.elem_type, t.index_type, t.nelems))
    elif k in (Kind.STRUCT, Kind.UNION):
        for m in t.members:
            off = (m.bitfield_size << 24 | m.bit_offset) if t.kind_flag else m.bit_offset
            out.append(struct.pack(e + "III", s.offset_of(m.name), m.type, off))
    elif k == Kind.ENUM:
        for v in t.values:
            out.append(struct.pack(e + "II", s.offset_of(v.name), v.value & 0xFFFFFFFF))
    elif k == Kind.ENUM64:
        for v in t.values:
            val = v.value & 0xFFFFFFFFFFFFFFFF
            out.append(struct.pack(e + "III", s.offset_of(v.name), val & 0xFFFFFFFF, val >> 32))
    elif k == Kind.FUNC_PROTO:
        for p in t.params:
            out.append(struct.pack(e + "II", s.offset_of(p.name), p.type))
    elif k == Kind.DATASEC:
        for sec in t.secinfos:
            out.append(struct.pack(e + "III", sec.type, sec.offset, sec.size))
    elif k == Kind.VAR:
        out.append(struct.pack(e + "I", t.linkage))
    elif k == Kind.DECL_TAG:
        out.append(struct.pack(e + "i", t.component_idx))
    return b"".join(out)

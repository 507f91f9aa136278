"""``.BTF.ext``: per-instruction debug records (func_info, line_info, CO-RE relocations).

Each record set is grouped by ELF section name; ``insn_off`` is a *byte* offset into that
section in the object file (the kernel wants instruction slots: divide by 8).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from pyxdp.btf._btf import Btf, _endian
from pyxdp.errors import BtfError


class CoreReloKind(IntEnum):
    """``enum bpf_core_relo_kind``."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


@dataclass(frozen=True)
class FuncRecord:
    insn_off: int          # bytes into the section
    type_id: int


@dataclass(frozen=True)
class LineRecord:
    insn_off: int          # bytes into the section
    file_name_off: int
    line_off: int
    line_col: int

    @property
    def line(self) -> int:
        return self.line_col >> 10

    @property
    def column(self) -> int:
        return self.line_col & 0x3FF


@dataclass(frozen=True)
class CoreRelo:
    """One CO-RE relocation.  ``insn_off`` is bytes in ``.BTF.ext`` and instruction slots
    once attached to a :class:`~pyxdp.spec.ProgramSpec`."""

    insn_off: int
    type_id: int
    access: str
    kind: CoreReloKind


@dataclass
class BtfExt:
    """Records of a ``.BTF.ext`` section, keyed by ELF section name."""

    func_info: dict[str, list[FuncRecord]] = field(default_factory=dict)
    line_info: dict[str, list[LineRecord]] = field(default_factory=dict)
    core_relos: dict[str, list[CoreRelo]] = field(default_factory=dict)
    func_info_rec_size: int = 8
    line_info_rec_size: int = 16

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, btf: Btf) -> BtfExt:
        data = bytes(data)
        e = _endian(data, ".BTF.ext")
        if len(data) < 8:
            raise BtfError(".BTF.ext header truncated")
        _, version, _flags, hdr_len = struct.unpack_from(e + "HBBI", data, 0)
        if version != 1:
            raise BtfError(f"unsupported .BTF.ext version {version}")
        if hdr_len < 24 or hdr_len > len(data):
            raise BtfError(f"bad .BTF.ext header length {hdr_len}")
        fi_off, fi_len, li_off, li_len = struct.unpack_from(e + "IIII", data, 8)
        co_off = co_len = 0
        if hdr_len >= 32:
            co_off, co_len = struct.unpack_from(e + "II", data, 24)
        body = data[hdr_len:]
        ext = cls()
        ext.func_info_rec_size, fi = _sections(body, fi_off, fi_len, e, 8, "func_info", btf)
        ext.line_info_rec_size, li = _sections(body, li_off, li_len, e, 16, "line_info", btf)
        _, co = _sections(body, co_off, co_len, e, 16, "core_relo", btf)
        for sec, recs in fi.items():
            ext.func_info[sec] = [FuncRecord(*struct.unpack_from(e + "II", r)) for r in recs]
        for sec, recs in li.items():
            ext.line_info[sec] = [LineRecord(*struct.unpack_from(e + "IIII", r)) for r in recs]
        for sec, recs in co.items():
            out = []
            for r in recs:
                off, tid, acc, kind = struct.unpack_from(e + "IIII", r)
                try:
                    k = CoreReloKind(kind)
                except ValueError:
                    raise BtfError(f"CO-RE relocation in {sec!r} has unknown kind {kind}") from None
                if not 0 < tid < len(btf.types):
                    raise BtfError(f"CO-RE relocation in {sec!r} references type {tid}")
                out.append(CoreRelo(off, tid, btf.strings.get(acc), k))
            ext.core_relos[sec] = out
        return ext


def _sections(body: bytes, off: int, length: int, e: str, min_rec: int, what: str,
              btf: Btf) -> tuple[int, dict[str, list[bytes]]]:
    """Split one info block into ``{section name: [record bytes]}``."""
    if not length:
        return min_rec, {}
    if off + length > len(body):
        raise BtfError(f".BTF.ext {what} [{off}, +{length}) exceeds the section")
    blk = body[off:off + length]
    if len(blk) < 4:
        raise BtfError(f".BTF.ext {what} is too short for its record size")
    (rec_size,) = struct.unpack_from(e + "I", blk, 0)
    if rec_size < min_rec or rec_size % 4 or rec_size > 1024:
        raise BtfError(f".BTF.ext {what} record size {rec_size} is invalid")
    pos = 4
    out: dict[str, list[bytes]] = {}
    while pos < len(blk):
        if pos + 8 > len(blk):
            raise BtfError(f".BTF.ext {what}: truncated section header at {pos}")
        name_off, num = struct.unpack_from(e + "II", blk, pos)
        pos += 8
        if num == 0 or num * rec_size > len(blk) - pos:
            raise BtfError(f".BTF.ext {what}: {num} records of {rec_size} bytes do not fit")
        name = btf.strings.get(name_off)
        recs = out.setdefault(name, [])
        recs.extend(blk[pos + i * rec_size:pos + (i + 1) * rec_size] for i in range(num))
        pos += num * rec_size
    return rec_size, out

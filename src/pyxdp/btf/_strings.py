"""The BTF string section: NUL-separated names addressed by byte offset.

Encoding keeps the original bytes as a prefix so that string offsets held elsewhere (line
info in ``.BTF.ext`` refers to file names and source lines by offset) stay valid; new names
are appended.
"""

from __future__ import annotations

from pyxdp.errors import BtfError


class StringTable:
    """Strings of one BTF blob, optionally continuing a base (split BTF) table."""

    def __init__(self, data: bytes, base: StringTable | None = None) -> None:
        if data and data[-1:] != b"\0":
            raise BtfError("string section is not NUL-terminated")
        if base is None and data[:1] != b"\0":
            raise BtfError("string section must start with an empty string")
        self.data = bytearray(data)
        self.base = base
        self.start = base.end if base is not None else 0
        self._index: dict[str, int] | None = None

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def get(self, off: int) -> str:
        """The string at ``off`` (offsets below ``start`` live in the base table)."""
        if off < self.start:
            assert self.base is not None
            return self.base.get(off)
        rel = off - self.start
        if rel >= len(self.data):
            raise BtfError(f"string offset {off} is outside the string section")
        nul = self.data.index(b"\0", rel)
        try:
            return self.data[rel:nul].decode()
        except UnicodeDecodeError:
            raise BtfError(f"string at offset {off} is not UTF-8") from None

    def add(self, s: str) -> int:
        """Offset of ``s``, appending it when not present."""
        if not s:
            return 0
        if self._index is None:
            self._index = {}
            pos = 0
            for part in bytes(self.data).split(b"\0"):
                self._index.setdefault(part.decode(errors="replace"), self.start + pos)
                pos += len(part) + 1
        off = self._index.get(s)
        if off is None:
            off = self.end
            self.data += s.encode() + b"\0"
            self._index[s] = off
        return off

    def offset_of(self, s: str, hint: int = 0) -> int:
        """``hint`` when it still names ``s``, else the offset :meth:`add` gives."""
        if not s:
            return 0
        if hint:
            try:
                if self.get(hint) == s:
                    return hint
            except BtfError:
                pass
        return self.add(s)

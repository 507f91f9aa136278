"""A bounds-checked view of a BPF ELF relocatable object.

pyelftools parses and validates the ELF header; the section table, string tables, symbols
and relocations are read here with explicit checks against the file
length, so a hostile file can neither make us allocate what it does not contain nor loop.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError as _PyElfError
from elftools.common.exceptions import ELFParseError
from elftools.elf.elffile import ELFFile

from pyxdp.errors import ElfError

EM_BPF = 247
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS, SHT_REL = 1, 2, 3, 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
SHN_UNDEF, SHN_LORESERVE = 0, 0xFF00
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")
_MAX_SECTIONS = 65280
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SHDR_FIELDS = ("sh_name", "sh_type", "sh_flags", "sh_addr", "sh_offset", "sh_size", "sh_link",
                "sh_info", "sh_addralign", "sh_entsize")


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int
    data: bytes          # b"" for SHT_NOBITS

    @property
    def is_exec(self) -> bool:
        return self.type == SHT_PROGBITS and bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True)
class Symbol:
    index: int
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int


@dataclass(frozen=True)
class Rel:
    offset: int
    sym: int
    type: int


def _cstr(blob: bytes, off: int, what: str) -> str:
    if not 0 <= off < len(blob):
        if off == 0:
            return ""
        raise ElfError(f"{what}: string offset {off} outside its string table")
    end = blob.find(b"\0", off)
    if end < 0:
        raise ElfError(f"{what}: unterminated string at offset {off}")
    try:
        return blob[off:end].decode()
    except UnicodeDecodeError:
        raise ElfError(f"{what}: name at offset {off} is not UTF-8") from None


class ElfReader:
    """Sections, symbols and relocations of one object file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        try:
            elf = ELFFile(io.BytesIO(data))
            hdr = elf.header
            shoff, shnum = hdr["e_shoff"], hdr["e_shnum"]
            shentsize, shstrndx = hdr["e_shentsize"], hdr["e_shstrndx"]
            machine, etype = hdr["e_machine"], hdr["e_type"]
        except (_PyElfError, ELFParseError, struct.error) as e:
            raise ElfError(f"not a valid ELF file: {e}") from None
        if elf.elfclass != 64:
            raise ElfError(f"ELF class is {elf.elfclass}-bit; BPF objects are 64-bit")
        if not elf.little_endian:
            raise ElfError("big-endian BPF objects are not supported")
        if machine not in ("EM_BPF", EM_BPF):
            raise ElfError(f"ELF machine is {machine}, not EM_BPF: not a BPF object")
        if etype not in ("ET_REL", 1):
            raise ElfError(f"ELF type is {etype}; BPF objects are relocatable (ET_REL)")
        if shentsize != 64:
            raise ElfError(f"section header entry size {shentsize}, expected 64")
        if not 0 < shnum <= _MAX_SECTIONS or shoff + shnum * 64 > len(data):
            raise ElfError(f"section header table ({shnum} entries at {shoff}) lies outside"
                           f" the {len(data)}-byte file")
        # pyelftools maps type numbers to names; we want the raw numbers, so unpack here
        raw = [dict(zip(_SHDR_FIELDS, _SHDR.unpack_from(data, shoff + 64 * i)))
               for i in range(shnum)]
        if not 0 < shstrndx < shnum:
            raise ElfError(f"section name table index {shstrndx} out of range")
        self.sections: list[Section] = []
        names = self._bytes(raw[shstrndx], shstrndx)
        for i, sh in enumerate(raw):
            name = _cstr(names, sh["sh_name"], f"section {i}")
            body = b"" if sh["sh_type"] == SHT_NOBITS else self._bytes(sh, i)
            self.sections.append(Section(i, name, sh["sh_type"], sh["sh_flags"],
                                         sh["sh_offset"], sh["sh_size"], sh["sh_link"],
                                         sh["sh_info"], sh["sh_entsize"], body))
        self.by_name = {s.name: s for s in reversed(self.sections)}
        self.symbols = self._symbols()

    def _bytes(self, sh: dict[str, int], index: int) -> bytes:
        off, size = sh["sh_offset"], sh["sh_size"]
        if off + size > len(self.data):
            raise ElfError(f"section {index} [{off}, +{size}) extends past the end of the"
                           f" {len(self.data)}-byte file")
        return self.data[off:off + size]

    def section(self, index: int, what: str) -> Section:
        if not 0 < index < len(self.sections):
            raise ElfError(f"{what}: section index {index} out of range")
        return self.sections[index]

    def _symbols(self) -> list[Symbol]:
        tabs = [s for s in self.sections if s.type == SHT_SYMTAB]
        if not tabs:
            return []
        if len(tabs) > 1:
            raise ElfError("more than one symbol table")
        tab = tabs[0]
        if tab.entsize not in (0, _SYM.size) or tab.size % _SYM.size:
            raise ElfError(f"symbol table entry size {tab.entsize} / size {tab.size} invalid")
        strtab = self.section(tab.link, "symbol table string link")
        if strtab.type != SHT_STRTAB:
            raise ElfError("symbol table is not linked to a string table")
        out = []
        for i in range(tab.size // _SYM.size):
            name_off, info, _other, shndx, value, size = _SYM.unpack_from(tab.data, i * _SYM.size)
            name = _cstr(strtab.data, name_off, f"symbol {i}")
            if shndx and shndx < SHN_LORESERVE and shndx >= len(self.sections):
                raise ElfError(f"symbol {i} {name!r} is in section {shndx}, which does not"
                               " exist")
            out.append(Symbol(i, name, value, size, info & 0xF, info >> 4, shndx))
        return out

    def relocations(self, target: Section) -> list[Rel]:
        """REL entries that apply to ``target`` (R_BPF relocations have no addend)."""
        out: list[Rel] = []
        for s in self.sections:
            if s.type != SHT_REL or s.info != target.index:
                continue
            if s.entsize not in (0, _REL.size) or s.size % _REL.size:
                raise ElfError(f"relocation section {s.name!r} has bad entry size")
            for i in range(s.size // _REL.size):
                off, info = _REL.unpack_from(s.data, i * _REL.size)
                sym, rtype = info >> 32, info & 0xFFFFFFFF
                if not 0 <= sym < len(self.symbols):
                    raise ElfError(f"{s.name!r} entry {i} names symbol {sym}, which does not"
                                   " exist")
                if off >= max(target.size, 1) or (target.type != SHT_NOBITS
                                                   and off >= len(target.data)):
                    raise ElfError(f"{s.name!r} entry {i} at offset {off} lies outside"
                                   f" {target.name!r} ({target.size} bytes)")
                out.append(Rel(off, sym, rtype))
        return out

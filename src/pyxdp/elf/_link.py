"""From executable sections to finished programs: split sections into functions, classify
relocations, append called ``.text`` functions to each program (fixing call offsets) and
rebase ``.BTF.ext`` records onto each program's final instruction slots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pyxdp.btf import Btf, BtfExt, CoreRelo
from pyxdp.elf._externs import KCONFIG
from pyxdp.elf._reader import SHN_LORESERVE, SHN_UNDEF, STT_FUNC, ElfReader, Section
from pyxdp.errors import DecodeError, ElfError
from pyxdp.isa import LD_IMM64, Instruction, PseudoSrc, decode, slot_offsets
from pyxdp.spec import ExternSpec, FuncInfo, LineInfo, MapRef

_CALL = 0x85


@dataclass(frozen=True)
class Target:
    """A code location: section index and instruction slot within that section."""

    sec: int
    slot: int


@dataclass
class Func:
    """One function symbol's instructions (or a whole symbol-less section)."""

    name: str
    sec: Section
    start: int                 # first slot in the section
    end: int                   # one past the last slot
    insns: list[Instruction]
    slots: list[int] = field(default_factory=list)     # slot of each insn, from 0
    calls: dict[int, Target] = field(default_factory=dict)   # insn index -> callee
    funcs: dict[int, Target] = field(default_factory=dict)   # LD_IMM64 src=FUNC -> callee
    maps: dict[int, MapRef] = field(default_factory=dict)
    externs: dict[int, str] = field(default_factory=dict)    # insn index -> extern name


def split_functions(reader: ElfReader, sec: Section) -> list[Func]:
    """Decode one executable section and cut it at its FUNC symbols."""
    if sec.size % 8:
        raise ElfError(f"section {sec.name!r} size {sec.size} is not a multiple of 8")
    try:
        insns = decode(sec.data, strict=False)
    except DecodeError as e:
        raise ElfError(f"section {sec.name!r}: {e}") from None
    slots = slot_offsets(insns)
    index_of = {s: i for i, s in enumerate(slots)}
    nslots = sec.size // 8
    index_of[nslots] = len(insns)
    syms = sorted((s for s in reader.symbols if s.shndx == sec.index and s.type == STT_FUNC),
                  key=lambda s: s.value)
    if not syms:
        return [Func(sec.name, sec, 0, nslots, insns, slots)]
    out: list[Func] = []
    prev_end = 0
    for s in syms:
        if s.value % 8 or s.size % 8 or s.size == 0:
            raise ElfError(f"function {s.name!r} in {sec.name!r} has misaligned or empty"
                           f" extent [{s.value}, +{s.size})")
        start, end = s.value // 8, (s.value + s.size) // 8
        if end > nslots:
            raise ElfError(f"function {s.name!r} extends past the end of {sec.name!r}")
        if start < prev_end:
            raise ElfError(f"function {s.name!r} overlaps the previous one in {sec.name!r}")
        if start not in index_of or end not in index_of:
            raise ElfError(f"function {s.name!r} starts or ends inside an LD_IMM64")
        lo, hi = index_of[start], index_of[end]
        out.append(Func(s.name, sec, start, end, insns[lo:hi],
                        [x - start for x in slots[lo:hi]]))
        prev_end = end
    return out


def _containing(funcs: list[Func], slot: int) -> Func | None:
    for f in funcs:
        if f.start <= slot < f.end:
            return f
    return None


def classify_relocations(reader: ElfReader, sec: Section, funcs: list[Func],
                         map_at: dict[tuple[int, int], str], data_maps: dict[int, str],
                         externs: Mapping[str, ExternSpec] | None = None) -> None:
    """Attach each relocation of ``sec`` to the instruction it patches.

    ``map_at`` maps (section index, offset) of a map definition to its name (``.maps`` and
    legacy ``maps``); ``data_maps`` maps global data section indexes to their map name;
    ``externs`` are the ``.kconfig``/``.ksyms`` externs (a kconfig value becomes a
    MAP_VALUE reference into ``.kconfig``; kfuncs and ksyms are patched at load).
    """
    externs = externs or {}
    map_secs = {sec_index for sec_index, _ in map_at}
    for rel in reader.relocations(sec):
        if rel.offset % 8:
            raise ElfError(f"relocation in {sec.name!r} at {rel.offset} is not on an"
                           " instruction")
        f = _containing(funcs, rel.offset // 8)
        idx = None if f is None else _index(f, rel.offset // 8 - f.start)
        if f is None or idx is None:
            raise ElfError(f"relocation in {sec.name!r} at {rel.offset} is not on an"
                           " instruction of a function")
        insn = f.insns[idx]
        sym = reader.symbols[rel.sym]
        what = f"relocation at insn {idx} of {f.name!r} against {sym.name or 'section'!r}"
        if sym.shndx == SHN_UNDEF and sym.name in externs:
            _extern_reloc(f, idx, insn, externs[sym.name], what)
            continue
        if sym.shndx == SHN_UNDEF:
            if insn.opcode == _CALL:
                raise ElfError(f"program {f.name!r} calls {sym.name!r}, which this object"
                               " does not define (nor declares as a kfunc with __ksym):"
                               " link the objects first (bpftool gen object out.o a.o b.o)")
            raise ElfError(f"{what}: {sym.name!r} is not defined in this object (nor"
                           " declared __kconfig/__ksym): link the objects first (bpftool gen"
                           " object out.o a.o b.o)")
        if sym.shndx >= SHN_LORESERVE:
            raise ElfError(f"{what}: symbol is in special section {sym.shndx:#x}")
        target = reader.section(sym.shndx, what)
        if insn.opcode == _CALL and insn.src == 1:
            if not target.is_exec or sym.value % 8:
                raise ElfError(f"{what}: call target is not code")
            f.calls[idx] = Target(target.index, sym.value // 8 + insn.imm + 1)
        elif insn.opcode == LD_IMM64:
            addend = insn.imm & 0xFFFFFFFF
            addend -= (addend >> 31) << 32          # low 32 bits, signed
            if target.is_exec:
                off = sym.value + addend
                if off % 8:
                    raise ElfError(f"{what}: function address is not instruction-aligned")
                f.funcs[idx] = Target(target.index, off // 8)
            elif target.index in map_secs:
                # a static map is reached through the section symbol plus the addend in
                # imm: the map is the one at that offset, never simply the first one
                off = sym.value + addend
                if (target.index, off) not in map_at:
                    raise ElfError(f"{what}: offset {off} of {target.name!r} is not the start"
                                   " of a map definition")
                f.maps[idx] = MapRef(map_at[(target.index, off)], PseudoSrc.MAP_FD)
            elif target.index in data_maps:
                off = sym.value + addend
                if not 0 <= off < max(target.size, 1):
                    raise ElfError(f"{what}: offset {off} outside {target.name!r}")
                f.maps[idx] = MapRef(data_maps[target.index], PseudoSrc.MAP_VALUE, off)
            else:
                raise ElfError(f"{what}: {target.name!r} is neither code, a map nor data")
        else:
            raise ElfError(f"{what}: cannot relocate opcode {insn.opcode:#04x}")
    # bpf-to-bpf calls and callbacks within one section need no relocation
    for f in funcs:
        for i, insn in enumerate(f.insns):
            if i in f.calls or i in f.funcs:
                continue
            here = f.start + f.slots[i]
            if insn.opcode == _CALL and insn.src == 1:
                f.calls[i] = Target(sec.index, here + insn.imm + 1)
            elif insn.opcode == LD_IMM64 and insn.src == PseudoSrc.FUNC and (
                    i not in f.externs):
                f.funcs[i] = Target(sec.index, here + insn.imm + 1)


def _extern_reloc(f: Func, idx: int, insn: Instruction, ext: ExternSpec, what: str) -> None:
    if ext.kind == "kconfig":
        if insn.opcode != LD_IMM64:
            raise ElfError(f"{what}: a .kconfig extern is used by opcode {insn.opcode:#04x}")
        f.maps[idx] = MapRef(KCONFIG, PseudoSrc.MAP_VALUE, ext.offset)
    elif ext.kind == "kfunc" and insn.opcode == _CALL:
        if insn.src != 1:
            raise ElfError(f"{what}: kfunc call with src_reg {insn.src}")
        f.externs[idx] = ext.name
    elif insn.opcode == LD_IMM64:
        f.externs[idx] = ext.name
    else:
        raise ElfError(f"{what}: cannot relocate opcode {insn.opcode:#04x} against extern"
                       f" {ext.kind} {ext.name!r}")


def _index(f: Func, slot: int) -> int | None:
    lo, hi = 0, len(f.slots)
    while lo < hi:
        mid = (lo + hi) // 2
        if f.slots[mid] < slot:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(f.slots) and f.slots[lo] == slot else None


@dataclass
class Linked:
    insns: list[Instruction]
    map_refs: dict[int, MapRef]
    placed: list[tuple[Func, int]]     # (function, first slot in the program)
    extern_refs: dict[int, str] = field(default_factory=dict)


def link(main: Func, funcs_by_sec: dict[int, list[Func]]) -> Linked:
    """``main`` followed by every function it (transitively) calls or takes the address of,
    each once, with call and callback offsets rewritten for the final layout."""
    insns = list(main.insns)
    placed: list[tuple[Func, int]] = [(main, 0)]
    base_of: dict[int, tuple[int, int]] = {id(main): (0, 0)}   # id -> (index, slot)
    total = main.end - main.start
    refs: dict[int, MapRef] = {}
    ext_refs: dict[int, str] = {}
    todo = [main]
    while todo:
        f = todo.pop(0)
        base_idx, base_slot = base_of[id(f)]
        for i, ref in f.maps.items():
            refs[base_idx + i] = ref
        for i, name in f.externs.items():
            ext_refs[base_idx + i] = name
        for table, is_call in ((f.calls, True), (f.funcs, False)):
            for i, tgt in table.items():
                callee = _containing(funcs_by_sec.get(tgt.sec, []), tgt.slot)
                if callee is None or _index(callee, tgt.slot - callee.start) is None:
                    raise ElfError(f"{f.name!r} calls or references slot {tgt.slot} of section"
                                   f" {tgt.sec}, which is not the start of an instruction"
                                   " of any function")
                if id(callee) not in base_of:
                    base_of[id(callee)] = (len(insns), total)
                    placed.append((callee, total))
                    insns.extend(callee.insns)
                    total += callee.end - callee.start
                    todo.append(callee)
                dest = base_of[id(callee)][1] + tgt.slot - callee.start
                here = base_slot + f.slots[i]
                old = insns[base_idx + i]
                if is_call:
                    new = Instruction(old.opcode, old.dst, old.src, old.off, dest - here - 1)
                else:
                    new = Instruction(LD_IMM64, old.dst, PseudoSrc.FUNC, 0, dest - here - 1)
                insns[base_idx + i] = new
    for i, ref in refs.items():
        old = insns[i]
        insns[i] = Instruction(LD_IMM64, old.dst, ref.kind, 0, 0)
    return Linked(insns, refs, placed, ext_refs)


def rebase_ext(linked: Linked, ext: BtfExt | None, btf: Btf | None
               ) -> tuple[list[FuncInfo], list[LineInfo], list[CoreRelo]]:
    """``.BTF.ext`` records of every placed function, at their final slots."""
    if ext is None or btf is None:
        return [], [], []
    fi: list[FuncInfo] = []
    li: list[LineInfo] = []
    co: list[CoreRelo] = []
    for f, base in linked.placed:
        lo, hi = f.start * 8, f.end * 8

        def at(off: int, f: Func = f, base: int = base) -> int:
            return base + off // 8 - f.start

        for fr in ext.func_info.get(f.sec.name, []):
            if lo <= fr.insn_off < hi:
                fi.append(FuncInfo(at(fr.insn_off), fr.type_id, _name(btf, fr.type_id)))
        for lr in ext.line_info.get(f.sec.name, []):
            if lo <= lr.insn_off < hi:
                li.append(LineInfo(at(lr.insn_off), btf.strings.get(lr.file_name_off), lr.line,
                                   lr.column, btf.strings.get(lr.line_off), lr.file_name_off,
                                   lr.line_off, lr.line_col))
        for cr in ext.core_relos.get(f.sec.name, []):
            if lo <= cr.insn_off < hi:
                co.append(replace(cr, insn_off=at(cr.insn_off)))
    fi.sort(key=lambda x: x.insn_off)
    li.sort(key=lambda x: x.insn_off)
    co.sort(key=lambda x: x.insn_off)
    return fi, li, co


def _name(btf: Btf, type_id: int) -> str:
    if 0 < type_id < len(btf.types):
        return btf.types[type_id].name
    raise ElfError(f"func_info references BTF type {type_id}, which does not exist")

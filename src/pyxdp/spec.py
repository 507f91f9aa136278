"""Pure descriptions of BPF objects: what an ELF file (or the compiler, or the assembler)
produces, and what either the kernel loader or the emulator consumes.

``XxxSpec`` is a description; the bare names (``Program``, ``Map``) are live objects.  A spec
is deterministic: the same bytes in give the same spec out, whatever the running kernel.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pyxdp.abi import BPF_F_XDP_HAS_FRAGS, AttachType, MapType, ProgType
from pyxdp.isa import Instruction, PseudoSrc
from pyxdp.maps import MapSpec

XDP_FLAGS_HAS_FRAGS = BPF_F_XDP_HAS_FRAGS


@dataclass(frozen=True)
class MapRef:
    """A ``LD_IMM64`` that must be patched with a map: its fd, or the address of its value."""

    map_name: str
    kind: PseudoSrc = PseudoSrc.MAP_FD   # MAP_FD or MAP_VALUE
    offset: int = 0                      # byte offset into value 0 (MAP_VALUE)


@dataclass(frozen=True)
class FuncInfo:
    insn_off: int      # instruction slot where the function starts
    type_id: int       # BTF id of its FUNC type
    name: str = ""


@dataclass(frozen=True)
class LineInfo:
    insn_off: int      # instruction slot
    file_name: str
    line: int
    column: int
    line_text: str = ""
    file_name_off: int = 0  # offsets into the BTF string section (for loading)
    line_off: int = 0
    line_col: int = 0       # raw (line << 10 | column) as in .BTF.ext


@dataclass
class ProgramSpec:
    """One program: instructions plus everything needed to load or emulate it.

    ``map_refs`` maps instruction *indexes* (into ``instructions``) of ``LD_IMM64``
    instructions to the map they reference; their ``imm`` is a placeholder until load.
    """

    name: str
    type: ProgType
    instructions: list[Instruction]
    section: str = ""
    expected_attach_type: AttachType | None = None
    attach_to: str = ""
    license: str = "GPL"
    kernel_version: int = 0
    flags: int = 0
    map_refs: dict[int, MapRef] = field(default_factory=dict)
    func_info: list[FuncInfo] = field(default_factory=list)
    line_info: list[LineInfo] = field(default_factory=list)
    core_relos: list[Any] = field(default_factory=list)
    # instruction index -> name of the extern (kfunc call, __ksym LD_IMM64) it needs; the
    # loader patches these from the running kernel (ObjectSpec.externs says what they are)
    extern_refs: dict[int, str] = field(default_factory=dict)

    def source_line(self, insn_index: int) -> LineInfo | None:
        """The line info in force at instruction *index* ``insn_index`` (None if unknown)."""
        slot = 0
        for i, insn in enumerate(self.instructions):
            if i == insn_index:
                break
            slot += insn.slots
        best = None
        for li in self.line_info:
            if li.insn_off <= slot and (best is None or li.insn_off >= best.insn_off):
                best = li
        return best


@dataclass
class VariableSpec:
    """A global variable living in a data map (``.rodata``, ``.data``, ``.bss``, ...)."""

    name: str
    map_name: str
    offset: int
    size: int
    type_id: int = 0
    readonly: bool = False   # lives in a frozen .rodata* map: settable only before load


@dataclass
class ExternSpec:
    """An ``extern`` the object leaves to the loader (libbpf's ``struct extern_desc``).

    ``kind`` is ``"kconfig"`` (a ``.kconfig`` value: ``LINUX_KERNEL_VERSION``, ``CONFIG_*``),
    ``"ksym"`` (a ``__ksym`` variable: typed, ``type_id`` != 0, by kernel BTF id; typeless
    by /proc/kallsyms address) or ``"kfunc"`` (a ``__ksym`` function: ``type_id`` is its
    local FUNC_PROTO).  A kconfig extern lives at ``offset`` of the ``.kconfig`` map;
    ``kcfg_type`` is ``bool``, ``tristate``, ``char``, ``int`` or ``char_arr``.
    """

    name: str
    kind: str
    weak: bool = False
    type_id: int = 0
    kcfg_type: str = ""
    size: int = 0
    align: int = 0
    offset: int = 0
    signed: bool = False


@dataclass
class ObjectSpec:
    """Everything in one object file: programs, maps, global variables and BTF."""

    programs: dict[str, ProgramSpec] = field(default_factory=dict)
    maps: dict[str, MapSpec] = field(default_factory=dict)
    variables: dict[str, VariableSpec] = field(default_factory=dict)
    license: str = "GPL"
    kernel_version: int = 0
    btf: Any = None          # pyxdp.btf.Btf when the object has BTF
    path: str = ""
    # initial slots of prog arrays / map-in-maps from relocations in ``.maps``:
    # map name -> {index: program or map name}
    map_slots: dict[str, dict[int, str]] = field(default_factory=dict)
    externs: dict[str, ExternSpec] = field(default_factory=dict)

    def program(self, name: str | None = None, type: ProgType | None = None) -> ProgramSpec:
        """The program called ``name`` (its program or its section name); without a name
        the only program (the only one of ``type`` when a type is given).  Anything else
        raises :class:`~pyxdp.errors.PyxdpError` saying which programs there are."""
        from pyxdp.errors import PyxdpError

        where = self.path or "the object"
        have = ", ".join(self.programs) or "none"
        if name is not None:
            for spec in self.programs.values():
                if name in (spec.name, spec.section):
                    return spec
            raise PyxdpError(f"{where} has no program or section {name!r} (programs: {have})")
        pool = [p for p in self.programs.values() if type is None or p.type == type]
        if len(pool) == 1:
            return pool[0]
        kind = f"{type.name} programs" if type is not None else "programs"
        found = ", ".join(p.name for p in pool) or "none"
        raise PyxdpError(f"{where} has {len(pool)} {kind} ({found}): choose one by name")

    def only(self, *names: str) -> ObjectSpec:
        """A shallow copy that keeps the programs ``names`` (program or section names) and
        every map; initial prog-array slots pointing at a program left out are dropped."""
        keep = {self.program(n).name for n in names}
        out = copy.copy(self)
        out.programs = {n: p for n, p in self.programs.items() if n in keep}
        slots: dict[str, dict[int, str]] = {}
        for mname, entries in self.map_slots.items():
            kept = {i: what for i, what in entries.items()
                    if self.maps[mname].type != MapType.PROG_ARRAY or what in keep}
            if kept:
                slots[mname] = kept
        out.map_slots = slots
        return out


__all__ = [
    "ExternSpec", "FuncInfo", "LineInfo", "MapRef", "MapSpec", "MapType", "ObjectSpec",
    "ProgramSpec", "VariableSpec", "XDP_FLAGS_HAS_FRAGS",
]

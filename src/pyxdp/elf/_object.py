"""``load_object``: an ELF BPF object (path or bytes) to a pure :class:`ObjectSpec`."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from pyxdp.abi import ProgType
from pyxdp.btf import Btf, BtfExt, fixup_datasecs
from pyxdp.elf._externs import KCONFIG, collect_externs, fixup_extern_btf, kconfig_map
from pyxdp.elf._link import Func, classify_relocations, link, rebase_ext, split_functions
from pyxdp.elf._maps import btf_maps, data_maps, legacy_maps, map_slots
from pyxdp.elf._reader import STT_SECTION, ElfReader
from pyxdp.elf._sections import SectionKind, classify_section, section_names
from pyxdp.errors import BtfError, DecodeError, ElfError
from pyxdp.spec import ObjectSpec, ProgramSpec

_MAX_FILE = 1 << 30


def _read_input(src: str | os.PathLike[str] | bytes | bytearray | memoryview
                ) -> tuple[bytes, str]:
    if isinstance(src, bytes | bytearray | memoryview):
        return bytes(src), ""
    path = os.fspath(src)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as e:
        raise ElfError(f"cannot read {path}: {e.strerror}") from None
    if len(data) > _MAX_FILE:
        raise ElfError(f"{path} is larger than {_MAX_FILE} bytes")
    return data, path


def object_name(path: str) -> str:
    """libbpf's object name: the file's base name up to its first dot."""
    return Path(path).name.split(".", 1)[0] if path else ""


def load_object(src: str | os.PathLike[str] | bytes | bytearray | memoryview,
                name: str | None = None, *, prog_type: str | None = None,
                legacy: bool = False) -> ObjectSpec:
    """Parse a BPF ELF object into an :class:`ObjectSpec`.

    ``name`` (default: the file name up to its first dot) prefixes the kernel names of the
    global data maps, as libbpf does.  Any problem with the file raises :class:`ElfError`
    or :class:`BtfError` saying what is wrong.

    What libbpf 1.x accepts is accepted, and only that, unless asked otherwise:

    * ``prog_type`` is a section name (``"xdp"``, ``"tc"``, ``"cgroup_skb/ingress"``...)
      every program is loaded as, whatever its own section says: bpftool's ``prog loadall
      OBJ DIR type xdp``, for sections no table knows (what a section's own flags and
      attach target become: :func:`forced_kind`);
    * ``legacy`` reads libbpf 0.x conventions: the ``maps`` section (``struct
      bpf_map_def``) and bare-prefix section names (``xdp_prog`` as ``xdp``).
    """
    data, path = _read_input(src)
    forced = None
    if prog_type is not None:
        forced = classify_section(prog_type)
        if forced.type == ProgType.UNSPEC:
            raise ValueError(f"prog_type {prog_type!r} is not a known section name"
                             f" (supported: {section_names()})")
    try:
        return _load(data, path, object_name(path) if name is None else name, forced,
                     legacy)
    except (ElfError, BtfError):
        raise
    except (DecodeError, struct.error, KeyError, IndexError, ValueError, OverflowError,
            RecursionError, UnicodeDecodeError, TypeError, ZeroDivisionError) as e:
        # a check we do not have yet; still a bad object, never a crash
        raise ElfError(f"malformed object: {type(e).__name__}: {e}") from None


def _load(data: bytes, path: str, obj_name: str, forced: SectionKind | None,
          legacy: bool) -> ObjectSpec:
    reader = ElfReader(data)
    spec = ObjectSpec(path=path)
    lic = reader.by_name.get("license")
    # like libbpf: no license section is no license, so GPL-only helpers are refused
    spec.license = "" if lic is None else lic.data.split(b"\0", 1)[0].decode(
        errors="replace")
    ver = reader.by_name.get("version")
    if ver is not None:
        if len(ver.data) != 4:
            raise ElfError(f"version section is {len(ver.data)} bytes, expected 4")
        spec.kernel_version = struct.unpack("<I", ver.data)[0]

    btf = ext = None
    if ".BTF" in reader.by_name:
        btf = Btf.parse(reader.by_name[".BTF"].data)
        fixup_datasecs(btf, lambda n: _section_size(reader, n),
                       lambda sec, var: _symbol_offset(reader, sec, var))
        if ".BTF.ext" in reader.by_name:
            ext = BtfExt.parse(reader.by_name[".BTF.ext"].data, btf)
    spec.btf = btf

    # maps: BTF-defined, legacy, then global data
    map_at: dict[tuple[int, int], str] = {}
    bmaps = btf_maps(reader, btf)
    if bmaps:
        msec = reader.by_name[".maps"]
        for mname, bm in bmaps.items():
            spec.maps[mname] = bm.spec
            map_at[(msec.index, bm.offset)] = mname
        spec.map_slots = map_slots(reader, bmaps)
    lmaps = legacy_maps(reader, legacy)
    for mname, (off, mspec) in lmaps.items():
        if mname in spec.maps:
            raise ElfError(f"map {mname!r} is defined twice")
        spec.maps[mname] = mspec
        map_at[(reader.by_name["maps"].index, off)] = mname
    dmaps, data_index, spec.variables = data_maps(reader, obj_name, btf)
    spec.maps.update(dmaps)
    spec.externs = collect_externs(reader, btf)
    if spec.externs and btf is not None:
        kmap = kconfig_map(spec.externs, obj_name, btf)
        fixup_extern_btf(btf, spec.externs)
        if kmap is not None:
            spec.maps[KCONFIG] = kmap

    # code
    funcs_by_sec: dict[int, list[Func]] = {}
    for sec in reader.sections:
        if sec.is_exec and sec.size:
            funcs_by_sec[sec.index] = split_functions(reader, sec)
    for idx, funcs in funcs_by_sec.items():
        classify_relocations(reader, reader.sections[idx], funcs, map_at, data_index,
                             spec.externs)
    for idx, funcs in funcs_by_sec.items():
        sec = reader.sections[idx]
        if sec.name == ".text":
            continue
        kind = classify_section(sec.name, legacy)
        if forced is not None:
            kind = forced_kind(kind, forced)
        for f in funcs:
            if f.name in spec.programs:
                raise ElfError(f"program {f.name!r} is defined twice")
            linked = link(f, funcs_by_sec)
            fi, li, co = rebase_ext(linked, ext, btf)
            spec.programs[f.name] = ProgramSpec(
                name=f.name, type=kind.type, instructions=linked.insns, section=sec.name,
                expected_attach_type=kind.expected_attach_type,  # type: ignore[arg-type]
                attach_to=kind.attach_to, license=spec.license,
                kernel_version=spec.kernel_version, flags=kind.flags,
                map_refs=linked.map_refs, func_info=fi, line_info=li, core_relos=co,
                extern_refs=linked.extern_refs)
    return spec


def forced_kind(own: SectionKind, forced: SectionKind) -> SectionKind:
    """A program of section kind ``own`` loaded as ``forced`` (``prog_type=``), by
    libbpf's rules for bpftool's ``type`` (libbpf 1.2+ ``bpf_program__set_type``):

    * the type stays the section's: the section's handling stays (load flags such as XDP
      frags or sleepable, the BTF attach target); only the expected attach type is the
      forced one.  ``xdp.frags`` forced to ``xdp`` keeps frags; ``xdp`` forced to
      ``xdp.frags`` does not gain them, as with bpftool;
    * the type changes: the section's handling is dropped (it no longer applies): no
      section flags, no attach target; ``fentry/f`` forced to ``xdp`` is a plain XDP
      program.  (libbpf 1.1 kept the handler and crashes here; 1.2 dropped it:
      "disassociate section handler on explicit bpf_program__set_type() call".)
    """
    if forced.type == own.type:
        return SectionKind(own.type, forced.expected_attach_type, own.flags, own.attach_to)
    return SectionKind(forced.type, forced.expected_attach_type, 0, "")


def _section_size(reader: ElfReader, name: str) -> int | None:
    sec = reader.by_name.get(name)
    return None if sec is None else sec.size


def _symbol_offset(reader: ElfReader, section: str, var: str) -> int | None:
    sec = reader.by_name.get(section)
    if sec is None:
        return None
    for s in reader.symbols:
        if s.shndx == sec.index and s.name == var and s.type != STT_SECTION:
            return s.value
    return None

"""Map definitions of an object: BTF-defined (``.maps``), legacy (``maps``) and the global
data sections (``.data``, ``.rodata``, ``.bss`` and their ``.name`` variants)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from pyxdp.abi import MapType
from pyxdp.btf import Btf, Kind, Linkage
from pyxdp.elf._reader import SHT_NOBITS, SHT_PROGBITS, STT_FUNC, STT_SECTION, ElfReader, Section
from pyxdp.errors import BtfError, ElfError, MapError
from pyxdp.maps import MapSpec
from pyxdp.spec import VariableSpec

OBJ_NAME_LEN = 16                 # BPF_OBJ_NAME_LEN, including the NUL
_INT_FIELDS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
               "pinning", "map_extra")
_DATA_RE = re.compile(r"^\.(data|rodata|bss)(\..+)?$")
_MAX_VALUE = (1 << 32) - 1
_LINKAGE: dict[int, str] = {Linkage.STATIC: "static", Linkage.GLOBAL: "global",
                           Linkage.EXTERN: "extern"}


@dataclass
class BtfMap:
    """A ``.maps`` variable: its spec plus where it sits in the section."""

    spec: MapSpec
    offset: int
    size: int
    values_offset: int = -1       # byte offset of ``values[]`` inside the definition


def _make_spec(name: str, **kw: int) -> MapSpec:
    try:
        return MapSpec(name=name, **kw)  # type: ignore[arg-type]
    except (ValueError, MapError) as e:
        raise ElfError(f"map {name!r}: {e}") from None


def _int_field(btf: Btf, tid: int, map_name: str, field: str) -> int:
    """``__uint(field, N)`` is encoded as ``int (*field)[N]``: N is the array length."""
    ptr = btf.resolve(tid)
    if ptr.kind != Kind.PTR:
        raise ElfError(f"map {map_name!r}: field {field!r} is a {ptr.kind.name}, not __uint()")
    arr = btf[ptr.type]
    if arr.kind != Kind.ARRAY:
        raise ElfError(f"map {map_name!r}: field {field!r} does not point at an array")
    return arr.nelems


def _long_field(btf: Btf, tid: int, map_name: str, field: str) -> int:
    """``__ulong(field, N)`` (64-bit values, libbpf 1.4+) is an anonymous enum whose one
    enumerator is N."""
    t = btf.resolve(tid)
    if len(t.values) != 1:
        raise ElfError(f"map {map_name!r}: attr {field!r}: an __ulong() enum has one value,"
                       f" this one {len(t.values)}")
    return t.values[0].value & 0xFFFFFFFFFFFFFFFF


def parse_btf_map_def(btf: Btf, def_id: int, name: str, inner: bool = False) -> BtfMap:
    """Parse one BTF map definition struct (``struct { __uint(type, ...); ... }``)."""
    t = btf.resolve(def_id)
    if t.kind != Kind.STRUCT:
        raise ElfError(f"map {name!r}: definition is a {t.kind.name}, not a struct")
    vals: dict[str, int] = {}
    key_id = value_id = 0
    inner_spec: MapSpec | None = None
    values_off = -1
    values_kind = None
    for m in t.members:
        if m.name == "map_extra" and btf.resolve(m.type).kind in (Kind.ENUM, Kind.ENUM64):
            vals[m.name] = _long_field(btf, m.type, name, m.name)
        elif m.name in _INT_FIELDS:
            vals[m.name] = _int_field(btf, m.type, name, m.name)
        elif m.name in ("key", "value"):
            ptr = btf.resolve(m.type)
            if ptr.kind != Kind.PTR:
                raise ElfError(f"map {name!r}: {m.name} must be __type(), is {ptr.kind.name}")
            size = btf.size_of(ptr.type)
            if m.name == "key":
                key_id = ptr.type
                vals["key_size_t"] = size
            else:
                value_id = ptr.type
                vals["value_size_t"] = size
        elif m.name == "values":
            if inner:
                raise ElfError(f"map {name!r}: an inner map cannot have values")
            arr = btf.resolve(m.type)
            if arr.kind != Kind.ARRAY or arr.nelems:
                raise ElfError(f"map {name!r}: values must be a zero-sized __array()")
            ptr = btf.resolve(arr.elem_type)
            if ptr.kind != Kind.PTR:
                raise ElfError(f"map {name!r}: values[] elements must be pointers")
            target = btf.resolve(ptr.type)
            values_off = m.bit_offset // 8
            if target.kind == Kind.FUNC_PROTO:
                values_kind = "prog"
            elif target.kind == Kind.STRUCT:
                values_kind = "map"
                inner_spec = parse_btf_map_def(btf, btf.skip_modifiers(ptr.type),
                                               name + ".inner", inner=True).spec
            else:
                raise ElfError(f"map {name!r}: values[] must point at maps or functions")
        else:
            raise ElfError(f"map {name!r}: unknown field {m.name!r}")
    if "type" not in vals:
        raise ElfError(f"map {name!r}: no map type given")
    for which in ("key", "value"):
        given, typed = vals.get(f"{which}_size"), vals.get(f"{which}_size_t")
        if given is not None and typed is not None and given != typed:
            raise ElfError(f"map {name!r}: {which}_size {given} disagrees with the"
                           f" {which} type's size {typed}")
    key_size = vals.get("key_size", vals.get("key_size_t", 0))
    value_size = vals.get("value_size", vals.get("value_size_t", 0))
    try:
        mtype = MapType(vals["type"])
    except ValueError:
        raise ElfError(f"map {name!r}: unknown map type {vals['type']}") from None
    if values_kind == "prog" and mtype != MapType.PROG_ARRAY:
        raise ElfError(f"map {name!r}: function values need a PROG_ARRAY")
    if values_kind == "map" and mtype not in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        raise ElfError(f"map {name!r}: map values need an ARRAY_OF_MAPS or HASH_OF_MAPS")
    if values_kind is not None:
        value_size = value_size or 4
    spec = _make_spec(name, type=mtype, key_size=key_size, value_size=value_size,
                      max_entries=vals.get("max_entries", 0), flags=vals.get("map_flags", 0),
                      pinning=vals.get("pinning", 0), map_extra=vals.get("map_extra", 0),
                      numa_node=vals.get("numa_node", 0), key_type_id=key_id,
                      value_type_id=value_id)
    spec.inner = inner_spec
    return BtfMap(spec, 0, 0, values_off)


def btf_maps(reader: ElfReader, btf: Btf | None) -> dict[str, BtfMap]:
    """Maps of the ``.maps`` section, by variable name, with their section offsets."""
    sec = reader.by_name.get(".maps")
    if sec is None:
        return {}
    if btf is None:
        raise ElfError("object has a .maps section but no BTF to describe it")
    try:
        _, datasec = btf.by_name(".maps", Kind.DATASEC)
    except KeyError:
        raise ElfError("BTF has no DATASEC for .maps") from None
    out: dict[str, BtfMap] = {}
    for vsi in datasec.secinfos:
        var = btf[vsi.type]
        if var.kind != Kind.VAR:
            raise ElfError(f"map #{vsi.type}: .maps entry is a {var.kind.name}, not a VAR")
        if var.linkage != Linkage.GLOBAL:
            # libbpf refuses these too: a static map is referenced through the section
            # symbol, and binding it by name would be guesswork
            raise ElfError(f"map {var.name!r}: unsupported map linkage"
                           f" {_LINKAGE.get(var.linkage, str(var.linkage))}")
        try:
            bm = parse_btf_map_def(btf, var.type, var.name)
        except BtfError as e:
            raise ElfError(f"map {var.name!r}: bad BTF: {e}") from None
        if vsi.offset + vsi.size > sec.size:
            raise ElfError(f"map {var.name!r} [{vsi.offset}, +{vsi.size}) lies outside .maps")
        bm.offset, bm.size = vsi.offset, vsi.size
        out[var.name] = bm
    return out


def map_slots(reader: ElfReader, maps: dict[str, BtfMap]) -> dict[str, dict[int, str]]:
    """Initial ``values`` of prog arrays and map-in-maps, from relocations in ``.maps``."""
    sec = reader.by_name.get(".maps")
    if sec is None:
        return {}
    out: dict[str, dict[int, str]] = {}
    for rel in reader.relocations(sec):
        owner = next((n for n, m in maps.items() if m.offset <= rel.offset < m.offset + m.size),
                     None)
        if owner is None:
            raise ElfError(f".maps relocation at {rel.offset} is outside every map")
        m = maps[owner]
        rel_off = rel.offset - m.offset - m.values_offset
        if m.values_offset < 0 or rel_off < 0 or rel_off % 8:
            raise ElfError(f"map {owner!r}: relocation at {rel.offset} is not a values[] slot")
        idx = rel_off // 8
        if idx >= m.spec.max_entries:
            raise ElfError(f"map {owner!r}: initial slot {idx} >= max_entries")
        sym = reader.symbols[rel.sym]
        if m.spec.type == MapType.PROG_ARRAY and sym.type != STT_FUNC:
            raise ElfError(f"map {owner!r}: slot {idx} does not name a function")
        if m.spec.type != MapType.PROG_ARRAY and sym.name not in maps:
            raise ElfError(f"map {owner!r}: slot {idx} names {sym.name!r}, not a map")
        out.setdefault(owner, {})[idx] = sym.name
    return out


# struct bpf_map_def (libbpf 0.x) is 5 u32s; iproute2's struct bpf_elf_map continues it
_LEGACY_DEF = 20
_IPROUTE2_FIELDS = ((20, "id"), (24, "pinning"), (28, "inner_id"), (32, "inner_idx"))
_IPROUTE2_PINNING = {1: "PIN_OBJECT_NS", 2: "PIN_GLOBAL_NS"}


def legacy_maps(reader: ElfReader, legacy: bool = False) -> dict[str, tuple[int, MapSpec]]:
    """``struct bpf_map_def`` entries of the ``maps`` section: name -> (offset, spec).

    libbpf 1.x refuses the section and so do we, unless ``legacy``: then it is read as
    libbpf 0.x did, and a definition longer than ``struct bpf_map_def`` must have only
    zeros past it (iproute2's ``id``/``pinning``/``inner_id``/``inner_idx`` are refused by
    name: pinning them the iproute2 way is not implemented, and ignoring them would load
    something else than the object asks for).
    """
    sec = reader.by_name.get("maps")
    if sec is None or sec.type != SHT_PROGBITS:
        return {}
    syms = [s for s in reader.symbols if s.shndx == sec.index and s.type != STT_SECTION]
    if not syms:
        return {}
    if not legacy:
        names = ", ".join(repr(s.name) for s in syms)
        raise ElfError(f"maps {names}: legacy map definitions in 'maps' section are not"
                       " supported by libbpf v1.0+ (declare them in '.maps' with __uint()/"
                       "__type(), or load_object(..., legacy=True) for libbpf 0.x rules)")
    if sec.size % len(syms):
        raise ElfError(f"'maps' section size {sec.size} is not a multiple of its"
                       f" {len(syms)} definitions")
    def_size = sec.size // len(syms)
    if def_size < 16:
        raise ElfError(f"legacy map definitions of {def_size} bytes are too small")
    out = {}
    for s in syms:
        if s.value % 4 or s.value + def_size > sec.size:
            raise ElfError(f"legacy map {s.name!r} at {s.value} is misplaced in 'maps'")
        raw = sec.data[s.value:s.value + def_size]
        _check_legacy_tail(s.name, raw, def_size)
        mtype, ksz, vsz, maxe, flags = struct.unpack("<5I", raw[:_LEGACY_DEF].ljust(20, b"\0"))
        try:
            mt = MapType(mtype)
        except ValueError:
            raise ElfError(f"legacy map {s.name!r}: unknown map type {mtype}") from None
        out[s.name] = (s.value, _make_spec(s.name, type=mt, key_size=ksz, value_size=vsz,
                                           max_entries=maxe, flags=flags))
    return out


def _check_legacy_tail(name: str, raw: bytes, def_size: int) -> None:
    """Refuse non-zero bytes past ``struct bpf_map_def``, naming iproute2's fields."""
    if def_size <= _LEGACY_DEF or not any(raw[_LEGACY_DEF:]):
        return
    if def_size >= 36:
        for off, field in _IPROUTE2_FIELDS:
            (val,) = struct.unpack_from("<I", raw, off)
            if not val:
                continue
            what = f" ({_IPROUTE2_PINNING[val]})" if field == "pinning" and (
                val in _IPROUTE2_PINNING) else ""
            hint = (": iproute2 pinning is not supported; declare the map in '.maps' with"
                    " __uint(pinning, LIBBPF_PIN_BY_NAME) and load with a pin_path"
                    if field == "pinning" else ": iproute2 map fields are not supported")
            raise ElfError(f"legacy map {name!r}: iproute2 field {field!r} (struct"
                           f" bpf_elf_map offset {off}) is {val}{what}{hint}")
    first = next(i for i in range(_LEGACY_DEF, def_size) if raw[i])
    raise ElfError(f"legacy map {name!r}: has unrecognized, non-zero options (byte {first}"
                   f" of its {def_size}-byte definition; struct bpf_map_def has"
                   f" {_LEGACY_DEF})")


def internal_map_name(obj_name: str, section: str) -> str:
    """libbpf's kernel-visible name for a data section map: ``<prefix>.rodata`` where the
    prefix is the start of the object name, or the bare section name for ``.rodata.foo``."""
    sfx_len = max(7, len(section))
    if "." in section[1:]:
        name = section[:OBJ_NAME_LEN - 1]
    else:
        pfx_len = max(0, min(OBJ_NAME_LEN - 1 - sfx_len, len(obj_name)))
        name = (obj_name[:pfx_len] + section)[:OBJ_NAME_LEN - 1]
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)


def is_data_section(sec: Section) -> bool:
    return bool(_DATA_RE.match(sec.name)) and sec.type in (SHT_PROGBITS, SHT_NOBITS) and (
        sec.size > 0) and (sec.name.startswith(".bss") == (sec.type == SHT_NOBITS))


def data_maps(reader: ElfReader, obj_name: str, btf: Btf | None
              ) -> tuple[dict[str, MapSpec], dict[int, str], dict[str, VariableSpec]]:
    """Array maps for global data: (maps by section name, section index -> map key,
    variables by name)."""
    maps: dict[str, MapSpec] = {}
    by_index: dict[int, str] = {}
    variables: dict[str, VariableSpec] = {}
    for sec in reader.sections:
        if not is_data_section(sec):
            continue
        if sec.size > _MAX_VALUE:
            raise ElfError(f"section {sec.name!r} is too large for a map ({sec.size} bytes)")
        readonly = sec.name.startswith(".rodata")
        datasec_id = 0
        var_types: dict[str, int] = {}
        if btf is not None:
            ids = btf.find(sec.name, Kind.DATASEC)
            if ids:
                datasec_id = ids[0]
                for v in btf[datasec_id].secinfos:
                    var_types[btf[v.type].name] = btf[v.type].type
        spec = _make_spec(internal_map_name(obj_name, sec.name), type=MapType.ARRAY,
                          key_size=4, value_size=sec.size, max_entries=1,
                          value_type_id=datasec_id)
        spec.freeze = readonly
        if sec.type != SHT_NOBITS:
            spec.contents = [(bytes(4), sec.data)]
        maps[sec.name] = spec
        by_index[sec.index] = sec.name
        for sym in reader.symbols:
            if sym.shndx != sec.index or sym.type != 1 or not sym.name:   # STT_OBJECT
                continue
            if sym.value + sym.size > sec.size:
                raise ElfError(f"variable {sym.name!r} [{sym.value}, +{sym.size}) lies"
                               f" outside {sec.name!r}")
            if sym.name in variables:
                continue   # a static of the same name in another section: first one wins
            variables[sym.name] = VariableSpec(sym.name, sec.name, sym.value, sym.size,
                                               var_types.get(sym.name, 0), readonly)
    return maps, by_index, variables

"""``extern`` symbols an object leaves to the loader: ``.kconfig`` values, ``__ksym``
variables and kfuncs (libbpf's ``bpf_object__collect_externs``).

Pure: this finds the externs, lays out the ``.kconfig`` map as libbpf does (by alignment,
then size, then name) and rewrites the ``.kconfig``/``.ksyms`` DATASECs the way libbpf
does before BPF_BTF_LOAD (the kernel accepts neither extern VARs nor FUNCs in a
DATASEC).  The values come from the running kernel, in the kernel layer.
"""

from __future__ import annotations

from pyxdp.abi import MapType
from pyxdp.btf import Btf, BtfType, Kind, Linkage, Param
from pyxdp.elf._maps import internal_map_name
from pyxdp.elf._reader import SHN_UNDEF, STB_GLOBAL, STB_WEAK, ElfReader
from pyxdp.errors import ElfError
from pyxdp.maps import MapSpec
from pyxdp.spec import ExternSpec

KCONFIG, KSYMS = ".kconfig", ".ksyms"
_DUMMY_KSYM = "dummy_ksym"


def _kcfg_type(btf: Btf, tid: int) -> tuple[str, bool]:
    """libbpf's ``find_kcfg_type``: ('' when the type cannot hold a Kconfig value)."""
    t = btf.resolve(tid)
    if t.kind == Kind.INT:
        if t.encoding & 4:                                   # BTF_INT_BOOL
            return ("bool" if t.size == 1 else ""), False
        signed = bool(t.encoding & 1)
        if t.size == 1:
            return "char", signed
        if t.size not in (2, 4, 8):
            return "", False
        return "int", signed
    if t.kind in (Kind.ENUM, Kind.ENUM64):
        ok = t.name == "libbpf_tristate" and (t.kind == Kind.ENUM64 or t.size == 4)
        return ("tristate" if ok else ""), False
    if t.kind == Kind.ARRAY and t.nelems and _kcfg_type(btf, t.elem_type)[0] == "char":
        return "char_arr", False
    return "", False


def _align_of(btf: Btf, tid: int) -> int:
    t = btf.resolve(tid)
    if t.kind == Kind.ARRAY:
        return _align_of(btf, t.elem_type)
    if t.kind in (Kind.ENUM, Kind.ENUM64, Kind.INT):
        return min(t.size, 8)
    return 8


def collect_externs(reader: ElfReader, btf: Btf | None) -> dict[str, ExternSpec]:
    """The externs of ``.kconfig`` and ``.ksyms``, by name, with the ``.kconfig`` layout.

    An undefined symbol that is in neither section is left for the relocation that uses it
    (it needs linking, and that is what its error says).
    """
    undef = {s.name: s for s in reader.symbols
             if s.shndx == SHN_UNDEF and s.bind in (STB_GLOBAL, STB_WEAK) and s.name}
    if not undef or btf is None:
        return {}
    out: dict[str, ExternSpec] = {}
    for sec_name in (KCONFIG, KSYMS):
        for dsid in btf.find(sec_name, Kind.DATASEC):
            for vsi in btf[dsid].secinfos:
                t = btf[vsi.type]
                sym = undef.get(t.name)
                if sym is None:
                    raise ElfError(f"extern {t.name!r} of {sec_name!r} has no ELF symbol")
                weak = sym.bind == STB_WEAK
                if sec_name == KSYMS and t.kind == Kind.FUNC:
                    out[t.name] = ExternSpec(t.name, "kfunc", weak, t.type)
                elif sec_name == KSYMS:
                    target = btf.skip_modifiers(t.type)
                    typed = btf[target].kind != Kind.UNKN
                    out[t.name] = ExternSpec(t.name, "ksym", weak, target if typed else 0)
                else:
                    kind, signed = _kcfg_type(btf, t.type)
                    if not kind:
                        raise ElfError(f"extern (kcfg) {t.name!r}: type is unsupported")
                    out[t.name] = ExternSpec(t.name, "kconfig", weak, t.type, kind,
                                             btf.size_of(t.type), _align_of(btf, t.type),
                                             signed=signed)
    _layout_kconfig(out)
    return out


def _layout_kconfig(externs: dict[str, ExternSpec]) -> None:
    """Offsets in the ``.kconfig`` map, in libbpf's order (``cmp_externs``)."""
    off = 0
    kcfg = sorted((e for e in externs.values() if e.kind == "kconfig"),
                  key=lambda e: (-e.align, e.size, e.name))
    for e in kcfg:
        e.offset = (off + e.align - 1) // e.align * e.align
        off = e.offset + e.size


def kconfig_size(externs: dict[str, ExternSpec]) -> int:
    return max((e.offset + e.size for e in externs.values() if e.kind == "kconfig"),
               default=0)


def kconfig_map(externs: dict[str, ExternSpec], obj_name: str, btf: Btf) -> MapSpec | None:
    """The ``.kconfig`` map (contents filled at load from the running kernel), or None."""
    size = kconfig_size(externs)
    if not size:
        return None
    ids = btf.find(KCONFIG, Kind.DATASEC)
    spec = MapSpec(name=internal_map_name(obj_name, KCONFIG), type=MapType.ARRAY, key_size=4,
                   value_size=size, max_entries=1, value_type_id=ids[0] if ids else 0)
    spec.freeze = True
    return spec


def fixup_extern_btf(btf: Btf, externs: dict[str, ExternSpec]) -> None:
    """Rewrite ``.kconfig``/``.ksyms`` as libbpf does before loading the BTF: their VARs
    become allocated globals at their map offsets (``.ksyms``: 4-byte ints), and kfunc
    entries a ``dummy_ksym`` VAR (their unnamed parameters get its name)."""
    for dsid in btf.find(KCONFIG, Kind.DATASEC):
        sec = btf[dsid]
        for vsi in sec.secinfos:
            var = btf[vsi.type]
            var.linkage = Linkage.GLOBAL
            vsi.offset = externs[var.name].offset
        sec.secinfos.sort(key=lambda v: v.offset)     # the kernel wants them in order
        sec.size = kconfig_size(externs)
    for dsid in btf.find(KSYMS, Kind.DATASEC):
        sec = btf[dsid]
        int_id = next((i for i, t in enumerate(btf.types)
                       if t.kind == Kind.INT and t.bits == 32), 0)
        dummy = 0
        if any(btf[v.type].kind == Kind.FUNC for v in sec.secinfos):
            dummy = btf.add(BtfType(Kind.VAR, _DUMMY_KSYM, type=int_id,
                                    linkage=Linkage.GLOBAL))
        for i, vsi in enumerate(sec.secinfos):
            t = btf[vsi.type]
            if t.kind == Kind.FUNC:
                proto = btf[t.type]
                proto.params = [Param(p.name or (_DUMMY_KSYM if p.type else ""), p.type)
                                for p in proto.params]
                vsi.type = dummy
                t.linkage = Linkage.GLOBAL
            else:
                t.linkage = Linkage.GLOBAL
                t.type = int_id
            vsi.offset, vsi.size = 4 * i, 4
        sec.size = 4 * len(sec.secinfos)
    btf.invalidate()

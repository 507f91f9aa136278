"""Make BTF acceptable to the kernel: DATASEC/VAR fix-ups from the ELF symbol table, and
rewriting kinds an older kernel does not know into ones it does (as libbpf does).

Sanitizing works on a copy and keeps every type id, so ``.BTF.ext`` and map type ids that
refer to the original BTF stay valid.  When the target kernel understands every kind the
BTF uses (any recent kernel) the original is returned as is: the deep copy of a large BTF
is the costliest step of loading a small object, and paying it to change nothing is waste.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from pyxdp.btf._btf import Btf
from pyxdp.btf._types import BtfType, EnumValue, IntEncoding, Kind, Linkage, Member
from pyxdp.errors import BtfError


@dataclass(frozen=True)
class BtfFeatures:
    """What the target kernel's BTF loader understands (all True on any recent kernel)."""

    func: bool = True           # FUNC / FUNC_PROTO          (4.20)
    datasec: bool = True        # VAR / DATASEC              (5.2)
    func_global: bool = True    # FUNC linkage global        (5.6)
    float: bool = True          # FLOAT                      (5.13)
    decl_tag: bool = True       # DECL_TAG                   (5.16)
    type_tag: bool = True       # TYPE_TAG                   (5.17)
    enum64: bool = True         # ENUM64                     (6.0)

    @classmethod
    def none(cls) -> BtfFeatures:
        """A kernel with bare BTF only: every rewrite applies."""
        return cls(False, False, False, False, False, False, False)


def _dummy_int(t: BtfType, size: int = 1) -> None:
    t.kind, t.name, t.name_off, t.kind_flag = Kind.INT, "", 0, False
    t.size, t.encoding, t.int_offset, t.bits = size, 0, 0, size * 8
    t.members, t.params, t.values, t.secinfos = [], [], [], []


def _unsupported_kinds(features: BtfFeatures) -> frozenset[Kind]:
    """The kinds :func:`sanitize` rewrites for ``features`` (FUNC also for static linkage)."""
    kinds: set[Kind] = set()
    if not features.datasec:
        kinds |= {Kind.VAR, Kind.DATASEC}
    if not features.func:
        kinds |= {Kind.FUNC, Kind.FUNC_PROTO}
    if not features.func_global:
        kinds.add(Kind.FUNC)
    if not features.float:
        kinds.add(Kind.FLOAT)
    if not features.decl_tag:
        kinds.add(Kind.DECL_TAG)
    if not features.type_tag:
        kinds.add(Kind.TYPE_TAG)
    if not features.enum64:
        kinds.add(Kind.ENUM64)
    return frozenset(kinds)


def needs_sanitizing(btf: Btf, features: BtfFeatures) -> bool:
    """Whether :func:`sanitize` would change anything in ``btf`` for ``features``.

    A cheap scan of the kinds: it decides whether the deep copy is needed at all.  A FUNC
    counts only if it would really change (global linkage on a kernel without it, or no
    FUNC support at all), so ordinary objects on older 5.x kernels stay copy-free too.
    """
    bad = _unsupported_kinds(features)
    if not bad:
        return False
    for t in btf.types[btf.start_id:]:
        if t.kind not in bad:
            continue
        if t.kind == Kind.FUNC and features.func and t.linkage != Linkage.GLOBAL:
            continue
        return True
    return False


def sanitize(btf: Btf, features: BtfFeatures) -> Btf:
    """``btf`` using only what ``features`` allows, with the same type ids.

    Returns a modified copy, or ``btf`` itself when nothing needs rewriting: callers must
    treat the result as read-only (they only encode it for BPF_BTF_LOAD).
    """
    if not needs_sanitizing(btf, features):
        return btf
    out = copy.deepcopy(btf)
    placeholders: dict[int, int] = {}
    for tid in range(out.start_id, len(out.types)):
        t = out.types[tid]
        k = t.kind
        if k == Kind.VAR and not features.datasec:
            _dummy_int(t)
        elif k == Kind.DATASEC and not features.datasec:
            # read the VARs from the original: they may already be rewritten in ``out``
            members = [Member(btf.types[v.type].name, btf.types[v.type].type, v.offset * 8)
                       for v in t.secinfos]
            t.kind, t.name = Kind.STRUCT, t.name.replace(".", "_")
            t.members, t.secinfos = members, []
        elif k == Kind.FUNC_PROTO and not features.func:
            t.kind, t.size, t.kind_flag = Kind.ENUM, 4, False
            t.values = [EnumValue(p.name or "_", 0) for p in t.params]
            t.params = []
        elif k == Kind.FUNC and not features.func:
            t.kind, t.linkage = Kind.TYPEDEF, 0
        elif k == Kind.FUNC and not features.func_global and t.linkage == Linkage.GLOBAL:
            t.linkage = Linkage.STATIC
        elif k == Kind.FLOAT and not features.float:
            t.kind, t.name, t.name_off = Kind.STRUCT, "", 0
        elif k == Kind.DECL_TAG and not features.decl_tag:
            _dummy_int(t)
        elif k == Kind.TYPE_TAG and not features.type_tag:
            t.kind, t.name, t.name_off = Kind.CONST, "", 0
        elif k == Kind.ENUM64 and not features.enum64:
            size = t.size
            if size not in placeholders:
                ph = BtfType(Kind.INT, f"enum64_placeholder_{size}", size=size,
                             encoding=IntEncoding.SIGNED if t.kind_flag else 0, bits=size * 8)
                placeholders[size] = out.add(ph)   # appended: existing ids do not move
            t.kind, t.kind_flag = Kind.UNION, False
            t.members = [Member(v.name, placeholders[size], 0) for v in t.values]
            t.values = []
    out.invalidate()
    return out


def fixup_datasecs(btf: Btf, section_size: Callable[[str], int | None],
                   symbol_offset: Callable[[str, str], int | None]) -> None:
    """Fill in DATASEC sizes and VAR offsets that the compiler left as 0, in place.

    ``section_size(name)`` gives the ELF section size (None: no such section) and
    ``symbol_offset(section, name)`` the ``st_value`` of a data symbol, as libbpf uses them.
    """
    for t in btf.types[btf.start_id:]:
        if t.kind != Kind.DATASEC:
            continue
        size = section_size(t.name)
        if size is None:
            if t.name in (".kconfig", ".ksyms") or t.size:
                continue
            raise BtfError(f"DATASEC {t.name!r} has no ELF section to take its size from")
        t.size = size
        for v in t.secinfos:
            var = btf.types[v.type]
            if var.kind != Kind.VAR:
                raise BtfError(f"DATASEC {t.name!r} entry {v.type} is not a VAR")
            off = symbol_offset(t.name, var.name)
            if off is None:
                if var.linkage == Linkage.STATIC:
                    continue
                raise BtfError(f"variable {var.name!r} of {t.name!r} has no ELF symbol")
            v.offset = off
            if v.offset + v.size > size:
                raise BtfError(f"variable {var.name!r} [{v.offset}, +{v.size}) lies outside"
                               f" {t.name!r} ({size} bytes)")
        t.secinfos.sort(key=lambda v: v.offset)

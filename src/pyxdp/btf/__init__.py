"""BPF Type Format: parse, query, re-encode and sanitize BTF; ``.BTF.ext`` records; the
kernel's own BTF; CO-RE relocation.  Pure: only :func:`load_vmlinux` reads a file.

::

    btf = Btf.parse(blob)                  # BtfError on anything malformed
    tid, t = btf.by_name("xdp_md", Kind.STRUCT)
    btf.size_of(tid), btf.member_offset(tid, "data_end")
    blob2 = btf.encode()                   # round-trips: Btf.parse(blob2) has the same types
    safe = sanitize(btf, BtfFeatures(decl_tag=False))
    apply_core_relocations(prog_spec, obj_btf, load_vmlinux())
"""

from pyxdp.btf._btf import Btf
from pyxdp.btf._core import CoreResolver, CoreResult, apply_core_relocations, types_compatible
from pyxdp.btf._ext import BtfExt, CoreRelo, CoreReloKind, FuncRecord, LineRecord
from pyxdp.btf._sanitize import BtfFeatures, fixup_datasecs, sanitize
from pyxdp.btf._strings import StringTable
from pyxdp.btf._types import (
    BtfType,
    EnumValue,
    IntEncoding,
    Kind,
    Linkage,
    Member,
    Param,
    VarSecinfo,
    essential_name,
)
from pyxdp.btf._vmlinux import VMLINUX, load_split, load_vmlinux

__all__ = [
    "VMLINUX", "Btf", "BtfExt", "BtfFeatures", "BtfType", "CoreRelo", "CoreReloKind",
    "CoreResolver", "CoreResult", "EnumValue", "FuncRecord", "IntEncoding", "Kind", "LineRecord",
    "Linkage", "Member", "Param", "StringTable", "VarSecinfo", "apply_core_relocations",
    "essential_name", "fixup_datasecs", "load_split", "load_vmlinux", "sanitize",
    "types_compatible",
]

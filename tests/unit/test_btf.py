"""Pure tests of pyxdp.btf: parsing, lookups, sizes, round trips, sanitizing, .BTF.ext."""

from __future__ import annotations

import copy
import glob
import os
from pathlib import Path

import pytest

from pyxdp.btf import (
    Btf,
    BtfExt,
    BtfFeatures,
    BtfType,
    EnumValue,
    Kind,
    Linkage,
    Member,
    Param,
    VarSecinfo,
    load_vmlinux,
    sanitize,
)
from pyxdp.elf import load_object
from pyxdp.elf._reader import ElfReader
from pyxdp.errors import BtfError

DATA = Path(__file__).parent.parent / "data"
OBJS = sorted(glob.glob(str(DATA / "obj" / "*.o")))
XDP_TOOLS = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/bpf/*.o"))


def _section(path: str, name: str) -> bytes:
    return ElfReader(Path(path).read_bytes()).by_name[name].data


def _shape(btf: Btf) -> list[tuple]:
    """Everything about the types except where their names sit in the string table."""
    out = []
    for t in btf.types:
        d = copy.copy(t.__dict__)
        d.pop("name_off")
        out.append(tuple(sorted(d.items())))
    return out


@pytest.mark.parametrize("path", OBJS + XDP_TOOLS, ids=os.path.basename)
def test_object_btf_round_trips_byte_exact(path: str) -> None:
    raw = _section(path, ".BTF")
    btf = Btf.parse(raw)
    assert btf.encode() == raw
    assert _shape(Btf.parse(btf.encode())) == _shape(btf)


def test_every_kind_round_trips() -> None:
    btf = Btf()
    i32 = btf.add(BtfType(Kind.INT, "int", size=4, encoding=1, bits=32))
    ptr = btf.add(BtfType(Kind.PTR, type=i32))
    arr = btf.add(BtfType(Kind.ARRAY, elem_type=i32, index_type=i32, nelems=3))
    st = btf.add(BtfType(Kind.STRUCT, "s", size=16, kind_flag=True, members=[
        Member("a", i32, 0, 3), Member("b", i32, 3, 5), Member("p", ptr, 64)]))
    btf.add(BtfType(Kind.UNION, "u", size=12, members=[Member("x", arr, 0)]))
    en = btf.add(BtfType(Kind.ENUM, "e", size=4, kind_flag=True,
                         values=[EnumValue("NEG", -1), EnumValue("ONE", 1)]))
    btf.add(BtfType(Kind.ENUM64, "e64", size=8, values=[EnumValue("BIG", 1 << 40)]))
    btf.add(BtfType(Kind.FWD, "fwd", kind_flag=True))
    td = btf.add(BtfType(Kind.TYPEDEF, "myint", type=i32))
    btf.add(BtfType(Kind.VOLATILE, type=td))
    btf.add(BtfType(Kind.CONST, type=td))
    btf.add(BtfType(Kind.RESTRICT, type=ptr))
    proto = btf.add(BtfType(Kind.FUNC_PROTO, type=i32, params=[Param("x", i32), Param("", 0)]))
    fn = btf.add(BtfType(Kind.FUNC, "f", type=proto, linkage=Linkage.GLOBAL))
    var = btf.add(BtfType(Kind.VAR, "v", type=st, linkage=Linkage.GLOBAL))
    btf.add(BtfType(Kind.DATASEC, ".data", size=16, secinfos=[VarSecinfo(var, 0, 16)]))
    btf.add(BtfType(Kind.FLOAT, "double", size=8))
    btf.add(BtfType(Kind.DECL_TAG, "tag", type=fn, component_idx=-1))
    btf.add(BtfType(Kind.TYPE_TAG, "user", type=i32))
    again = Btf.parse(btf.encode())
    assert _shape(again) == _shape(btf)
    assert again.encode() == btf.encode()
    assert again[en].values[0].value == -1
    assert again.size_of(arr) == 12 and again.size_of(td) == 4 and again.size_of(ptr) == 8
    assert again.size_of(var) == 16
    assert again.member_offset(st, "b") == (3, 5)
    assert {t.kind for t in again.types[1:]} == set(Kind) - {Kind.UNKN}


def test_lookups_and_bitfield_offsets() -> None:
    spec = load_object(DATA / "obj" / "btf_map.o")
    btf: Btf = spec.btf
    tid, t = btf.by_name("flow_bits", Kind.STRUCT)
    assert t.kind_flag and btf.size_of(tid) == 16
    assert btf.member_offset(tid, "proto") == (0, 4)
    assert btf.member_offset(tid, "dir") == (4, 1)
    assert btf.member_offset(tid, "port") == (32, 0)
    assert btf.member_offset(tid, "bytes") == (64, 0)
    with pytest.raises(KeyError):
        btf.member_offset(tid, "nope")
    with pytest.raises(KeyError):
        btf.by_name("no_such_type")
    assert btf.find("xdp_md", Kind.STRUCT)
    with pytest.raises(BtfError):
        btf[len(btf)]


def test_datasec_sizes_and_offsets_fixed_up() -> None:
    spec = load_object(DATA / "obj" / "global_data.o")
    btf: Btf = spec.btf
    _, raw = Btf.parse(_section(str(DATA / "obj" / "global_data.o"), ".BTF")).by_name(".bss")
    _, bss = btf.by_name(".bss", Kind.DATASEC)
    assert raw.size == 0          # what clang leaves
    assert bss.size == 16
    offs = {btf[v.type].name: v.offset for v in bss.secinfos}
    assert offs == {"last_len": 0, "seen_magic": 8}
    _, ro = btf.by_name(".rodata", Kind.DATASEC)
    assert {btf[v.type].name: v.offset for v in ro.secinfos} == {"ret_action": 0, "magic": 8}


def test_sanitize_replaces_new_kinds_keeping_ids() -> None:
    btf = Btf()
    i32 = btf.add(BtfType(Kind.INT, "int", size=4, encoding=1, bits=32))
    proto = btf.add(BtfType(Kind.FUNC_PROTO, type=i32, params=[Param("x", i32)]))
    fn = btf.add(BtfType(Kind.FUNC, "f", type=proto, linkage=Linkage.GLOBAL))
    fl = btf.add(BtfType(Kind.FLOAT, "float", size=4))
    dt = btf.add(BtfType(Kind.DECL_TAG, "tag", type=fn, component_idx=-1))
    tt = btf.add(BtfType(Kind.TYPE_TAG, "user", type=i32))
    e64 = btf.add(BtfType(Kind.ENUM64, "e", size=8, values=[EnumValue("A", 1 << 33)]))
    var = btf.add(BtfType(Kind.VAR, "v", type=i32, linkage=Linkage.GLOBAL))
    ds = btf.add(BtfType(Kind.DATASEC, ".data", size=4, secinfos=[VarSecinfo(var, 0, 4)]))

    same = sanitize(btf, BtfFeatures())
    assert same.encode() == btf.encode()

    only_global = sanitize(btf, BtfFeatures(func_global=False))
    assert only_global[fn].linkage == Linkage.STATIC and btf[fn].linkage == Linkage.GLOBAL

    old = sanitize(btf, BtfFeatures(decl_tag=False, type_tag=False, float=False, enum64=False))
    assert old[fl].kind == Kind.STRUCT and old[fl].size == 4 and not old[fl].name
    assert old[dt].kind == Kind.INT
    assert old[tt].kind == Kind.CONST and old[tt].type == i32
    assert old[e64].kind == Kind.UNION and old[e64].size == 8
    assert old.size_of(old[e64].members[0].type) == 8
    assert old[fn].kind == Kind.FUNC
    assert len(old) == len(btf) + 1     # one placeholder INT appended, no id moved

    bare = sanitize(btf, BtfFeatures.none())
    assert bare[var].kind == Kind.INT
    assert bare[ds].kind == Kind.STRUCT and bare[ds].name == "_data"
    assert bare[ds].members[0].name == "v"
    assert bare[proto].kind == Kind.ENUM and bare[fn].kind == Kind.TYPEDEF
    kinds = {t.kind for t in Btf.parse(bare.encode()).types[1:]}
    assert kinds <= {Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.TYPEDEF, Kind.CONST}


def test_line_info_points_at_source() -> None:
    spec = load_object(DATA / "obj" / "callback.o")
    prog = spec.programs["loop_sum"]
    src = (DATA / "c" / "callback.c").read_text().splitlines()
    want = next(i for i, ln in enumerate(src, 1) if "bpf_loop(10" in ln)
    hits = [li for li in prog.line_info if "bpf_loop(10" in li.line_text]
    assert hits and all(li.line == want for li in hits)
    assert all(li.file_name.endswith("callback.c") for li in hits)
    for li in prog.line_info:
        if li.line == 0:          # compiler-generated code has no source line
            continue
        assert li.line_text.strip() == src[li.line - 1].strip()
    assert any(li.column > 0 for li in prog.line_info)
    # the callback appended from .text brings its own func and line info
    assert [f.name for f in prog.func_info] == ["loop_sum", "add_index"]
    cb = prog.func_info[1].insn_off
    assert any(li.insn_off >= cb and "*sum += index" in li.line_text for li in prog.line_info)


def test_btf_ext_records() -> None:
    path = str(DATA / "obj" / "core.o")
    btf = Btf.parse(_section(path, ".BTF"))
    ext = BtfExt.parse(_section(path, ".BTF.ext"), btf)
    assert set(ext.func_info) == {"raw_tp/sys_enter"}
    kinds = [r.kind.name for r in ext.core_relos["raw_tp/sys_enter"]]
    assert kinds == ["FIELD_BYTE_OFFSET", "FIELD_BYTE_OFFSET", "TYPE_SIZE", "FIELD_EXISTS",
                     "ENUMVAL_VALUE"]


@pytest.mark.parametrize("blob, why", [
    (b"", "truncated"),
    (b"\x00\x00\x01\x00" + bytes(20), "magic"),
    (b"\x9f\xeb\x02\x00" + bytes(20), "version"),
    (b"\x9f\xeb\x01\x00\x18\x00\x00\x00" + bytes(4) + (100).to_bytes(4, "little") + bytes(8),
     "exceeds"),
])
def test_bad_btf_raises_btferror(blob: bytes, why: str) -> None:
    with pytest.raises(BtfError, match=why):
        Btf.parse(blob)


def test_dangling_type_reference() -> None:
    btf = Btf()
    btf.add(BtfType(Kind.PTR, type=42))
    with pytest.raises(BtfError, match="references type id 42"):
        Btf.parse(btf.encode())


def test_huge_vlen_is_rejected_without_allocating() -> None:
    btf = Btf()
    btf.add(BtfType(Kind.STRUCT, "s", size=4, members=[Member("a", 0, 0)]))
    raw = bytearray(btf.encode())
    raw[24 + 4:24 + 6] = b"\xff\xff"        # vlen 65535 with one member's bytes present
    with pytest.raises(BtfError, match="vlen 65535"):
        Btf.parse(bytes(raw))


@pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"), reason="no kernel BTF")
def test_vmlinux_and_split_btf() -> None:
    vm = load_vmlinux()
    assert load_vmlinux() is vm            # cached
    tid, _ = vm.by_name("xdp_md", Kind.STRUCT)
    assert vm.size_of(tid) == 24
    assert vm.member_offset(tid, "data_end") == (32, 0)
    assert vm.encode() == Path("/sys/kernel/btf/vmlinux").read_bytes()
    mods = [p for p in glob.glob("/sys/kernel/btf/*") if not p.endswith("vmlinux")]
    if mods:
        from pyxdp.btf import load_split
        mod = load_split(mods[0])
        assert mod.start_id == len(vm.types)
        assert mod.encode() == Path(mods[0]).read_bytes()


def test_member_search_through_self_referencing_anonymous_members_is_linear() -> None:
    """Crafted BTF: a struct whose two anonymous members are the struct itself.  Searching
    it used to branch twice per level (2^64 visits); a type searched without success is
    not searched again, so a miss costs a few visits (counted, not timed)."""
    from pyxdp.btf._types import BtfType, Member

    i = BtfType(Kind.INT, "int", size=4)
    i.bits = 32
    s = BtfType(Kind.STRUCT, "s", size=8)
    b = Btf([i, s])
    s.members = [Member("", 2, 0), Member("", 2, 0), Member("x", 1, 32)]
    calls = []
    real = b._find_member

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    b._find_member = counting       # the recursion goes through the instance attribute
    with pytest.raises(KeyError, match="no member 'y'"):
        b.member_offset(2, "y")
    assert len(calls) <= 4, len(calls)
    assert b.member_offset(2, "x") == (32, 0)


def test_encode_refuses_values_that_do_not_fit_instead_of_truncating() -> None:
    from pyxdp.btf._types import BtfType

    i = BtfType(Kind.INT, "int", size=4)
    i.bits = 32
    s = BtfType(Kind.STRUCT, "huge", size=1 << 40)
    with pytest.raises(BtfError, match="'huge': a value does not fit"):
        Btf([i, s]).encode()

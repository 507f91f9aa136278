"""Pure tests of pyxdp.elf: each committed test object parses to what its C source says."""

from __future__ import annotations

import glob
import os
import struct
from pathlib import Path

import pytest

from pyxdp.abi import AttachType, MapType, ProgType
from pyxdp.elf import classify_section, get_variable, internal_map_name, load_object, set_variable
from pyxdp.errors import ElfError
from pyxdp.isa import LD_IMM64, PseudoSrc
from pyxdp.spec import XDP_FLAGS_HAS_FRAGS, MapRef

DATA = Path(__file__).parent.parent / "data"
XDP_TOOLS = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/bpf/*.o"))


def obj(name: str):
    return load_object(DATA / "obj" / f"{name}.o")


def test_btf_defined_maps() -> None:
    s = obj("btf_map")
    assert list(s.programs) == ["count_packets"]
    p = s.programs["count_packets"]
    assert p.type == ProgType.XDP and p.expected_attach_type == AttachType.XDP
    assert p.license == s.license == "GPL"
    c = s.maps["counters"]
    assert (c.type, c.key_size, c.value_size, c.max_entries, c.flags) == (
        MapType.HASH, 4, 8, 16, 1)   # BPF_F_NO_PREALLOC
    assert s.btf[c.key_type_id].name == "__u32" and s.btf[c.value_type_id].name == "__u64"
    ps = s.maps["pinned_stats"]
    assert (ps.type, ps.key_size, ps.value_size, ps.max_entries, ps.pinning) == (
        MapType.ARRAY, 4, 8, 8, 1)
    assert s.maps["flows"].value_size == 16
    used = {r.map_name for r in p.map_refs.values()}
    assert used == {"counters", "pinned_stats", "flows"}
    for i, ref in p.map_refs.items():
        assert p.instructions[i].opcode == LD_IMM64 and p.instructions[i].src == PseudoSrc.MAP_FD
        assert ref.kind == PseudoSrc.MAP_FD


def test_global_data_maps_and_variables() -> None:
    s = obj("global_data")
    assert {k: v.name for k, v in s.maps.items()} == {
        ".rodata": "global_d.rodata", ".data": "global_d.data", ".bss": "global_d.bss"}
    ro = s.maps[".rodata"]
    assert ro.freeze and ro.type == MapType.ARRAY and ro.max_entries == 1
    assert ro.value_size == 16 and s.btf[ro.value_type_id].name == ".rodata"
    assert ro.contents == [(bytes(4), struct.pack("<IIQ", 2, 0, 0x1122334455667788))]
    assert s.maps[".data"].contents == [(bytes(4), struct.pack("<Q", 5))]
    assert s.maps[".bss"].contents == [] and not s.maps[".data"].freeze
    v = s.variables
    assert (v["ret_action"].map_name, v["ret_action"].offset, v["ret_action"].size) == (
        ".rodata", 0, 4)
    assert v["ret_action"].readonly and not v["packets"].readonly
    assert (v["magic"].offset, v["seen_magic"].map_name, v["seen_magic"].offset) == (
        8, ".bss", 8)
    assert s.btf.size_of(v["magic"].type_id) == 8
    refs = s.programs["global_data"].map_refs.values()
    assert MapRef(".rodata", PseudoSrc.MAP_VALUE, 8) in refs       # magic
    assert MapRef(".bss", PseudoSrc.MAP_VALUE, 8) in refs          # seen_magic

    set_variable(s, "ret_action", 1)
    set_variable(s, "last_len", 99)
    set_variable(s, "magic", b"\xaa" * 8)
    assert get_variable(s, "ret_action") == struct.pack("<I", 1)
    assert ro.contents[0][1] == struct.pack("<I", 1) + bytes(4) + b"\xaa" * 8
    assert s.maps[".bss"].contents == [(bytes(4), struct.pack("<IIQ", 99, 0, 0))]
    with pytest.raises(ValueError):
        set_variable(s, "ret_action", 1 << 40)
    with pytest.raises(ValueError):
        set_variable(s, "magic", b"short")
    with pytest.raises(KeyError):
        set_variable(s, "no_such_var", 0)


def test_internal_map_names_like_libbpf() -> None:
    assert internal_map_name("xdp_dispatcher", ".rodata") == "xdp_disp.rodata"
    assert internal_map_name("a", ".bss") == "a.bss"
    assert internal_map_name("prog", ".rodata.config") == ".rodata.config"
    assert internal_map_name("p", ".data.a_very_long_name") == ".data.a_very_lo"
    assert internal_map_name("", ".data") == ".data"


def test_bpf_to_bpf_calls_append_subprograms() -> None:
    s = obj("subprog")
    x = s.programs["call_twice"]
    assert [f.name for f in x.func_info] == ["call_twice", "twice_add3", "add3"]
    starts = [f.insn_off for f in x.func_info]
    for i, insn in enumerate(x.instructions):
        if insn.is_pseudo_call:
            slot = sum(ins.slots for ins in x.instructions[:i])
            assert slot + insn.imm + 1 in starts[1:]
    t = s.programs["call_add3"]
    assert t.type == ProgType.SCHED_CLS and t.expected_attach_type is None
    assert [f.name for f in t.func_info] == ["call_add3", "add3"]
    call = next(i for i in t.instructions if i.is_pseudo_call)
    idx = t.instructions.index(call)
    assert idx + call.imm + 1 == t.func_info[1].insn_off   # no LD_IMM64 before the call


def test_callback_is_ld_imm64_func() -> None:
    p = obj("callback").programs["loop_sum"]
    ld = [(i, x) for i, x in enumerate(p.instructions) if x.opcode == LD_IMM64 and
          x.src == PseudoSrc.FUNC]
    assert len(ld) == 1
    i, x = ld[0]
    slot = sum(ins.slots for ins in p.instructions[:i])
    assert slot + x.imm + 1 == p.func_info[1].insn_off


def test_prog_array_initial_slots() -> None:
    s = obj("tail_call")
    assert set(s.programs) == {"tail_entry", "tail_target"}
    jt = s.maps["jump_table"]
    assert (jt.type, jt.key_size, jt.value_size, jt.max_entries) == (MapType.PROG_ARRAY, 4, 4, 4)
    assert s.map_slots == {"jump_table": {2: "tail_target"}}


def test_map_in_map() -> None:
    s = obj("map_in_map")
    outer = s.maps["outer"]
    assert outer.type == MapType.ARRAY_OF_MAPS and outer.value_size == 4
    assert outer.inner is not None
    assert (outer.inner.type, outer.inner.key_size, outer.inner.value_size) == (
        MapType.ARRAY, 4, 4)
    assert s.map_slots == {"outer": {0: "inner1"}}


def test_core_relocations_attached() -> None:
    p = obj("core").programs["core_read"]
    assert p.type == ProgType.RAW_TRACEPOINT and p.attach_to == "sys_enter"
    assert len(p.core_relos) == 5
    slots = {sum(i.slots for i in p.instructions[:n]) for n in range(len(p.instructions))}
    assert all(r.insn_off in slots for r in p.core_relos)


def test_frags_and_devmap() -> None:
    s = obj("frags")
    f, d = s.programs["frags_prog"], s.programs["devmap_prog"]
    assert f.flags == XDP_FLAGS_HAS_FRAGS and f.expected_attach_type == AttachType.XDP
    assert d.flags == 0 and d.expected_attach_type == AttachType.XDP_DEVMAP


def test_multiple_programs_in_one_section() -> None:
    s = obj("multi")
    assert list(s.programs) == ["first_pass", "second_drop", "third_tx"]
    assert s.license == "Dual MIT/GPL"
    for name, action in (("first_pass", 2), ("second_drop", 1), ("third_tx", 3)):
        p = s.programs[name]
        assert p.section == "xdp" and len(p.instructions) == 2
        assert p.instructions[0].imm == action
        assert [f.insn_off for f in p.func_info] == [0]
        assert p.line_info[0].insn_off == 0


@pytest.mark.parametrize("sec, ptype, attach, flags, target", [
    ("xdp", ProgType.XDP, AttachType.XDP, 0, ""),
    ("xdp.frags/cpumap", ProgType.XDP, AttachType.XDP_CPUMAP, XDP_FLAGS_HAS_FRAGS, ""),
    ("tcx/ingress", ProgType.SCHED_CLS, 46, 0, ""),
    ("classifier", ProgType.SCHED_CLS, None, 0, ""),
    ("action", ProgType.SCHED_ACT, None, 0, ""),
    ("socket", ProgType.SOCKET_FILTER, None, 0, ""),
    ("kprobe/do_sys_open", ProgType.KPROBE, None, 0, "do_sys_open"),
    ("kretprobe/x", ProgType.KPROBE, None, 0, "x"),
    ("tracepoint/syscalls/sys_enter_read", ProgType.TRACEPOINT, None, 0,
     "syscalls/sys_enter_read"),
    ("tp/a/b", ProgType.TRACEPOINT, None, 0, "a/b"),
    ("raw_tp/sys_enter", ProgType.RAW_TRACEPOINT, None, 0, "sys_enter"),
    ("fentry/func", ProgType.TRACING, AttachType.TRACE_FENTRY, 0, "func"),
    ("fexit/func", ProgType.TRACING, AttachType.TRACE_FEXIT, 0, "func"),
    ("fentry.s/f", ProgType.TRACING, AttachType.TRACE_FENTRY, 1 << 4, "f"),
    ("lsm/file_open", ProgType.LSM, AttachType.LSM_MAC, 0, "file_open"),
    ("cgroup_skb/ingress", ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS, 0, ""),
    ("cgroup/connect4", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT, 0, ""),
    ("xdp_legacy_name", ProgType.UNSPEC, None, 0, ""),      # libbpf 0.x only: legacy=True
    ("what/ever", ProgType.UNSPEC, None, 0, ""),
])
def test_section_table(sec, ptype, attach, flags, target) -> None:
    k = classify_section(sec)
    assert (k.type, k.expected_attach_type, k.flags, k.attach_to) == (ptype, attach, flags,
                                                                       target)


@pytest.mark.skipif(not XDP_TOOLS, reason="xdp-tools (libxdp1) not installed")
@pytest.mark.parametrize("path", XDP_TOOLS, ids=os.path.basename)
def test_xdp_tools_objects_parse(path: str) -> None:
    s = load_object(path)
    assert s.programs and s.license
    for p in s.programs.values():
        assert p.func_info and p.func_info[0].insn_off == 0
        assert p.line_info
        for i, ref in p.map_refs.items():
            assert ref.map_name in s.maps
            assert p.instructions[i].opcode == LD_IMM64


def test_xdp_dispatcher_details() -> None:
    path = "/usr/lib/x86_64-linux-gnu/bpf/xdp-dispatcher.o"
    if not os.path.exists(path):
        pytest.skip("xdp-tools not installed")
    s = load_object(path)
    d = s.programs["xdp_dispatcher"]
    assert [f.name for f in d.func_info][1:] == [f"prog{i}" for i in range(10)] + [
        "compat_test"] or len(d.func_info) == 12
    assert s.maps[".rodata"].name == "xdp_disp.rodata" and "conf" in s.variables


@pytest.mark.parametrize("mutate, why", [
    (lambda b: b[:10], "ELF"),
    (lambda b: b"\x7fELF\x01" + b[5:], "64-bit"),
    (lambda b: b[:18] + struct.pack("<H", 62) + b[20:], "EM_BPF"),
    (lambda b: b[:16] + struct.pack("<H", 2) + b[18:], "ET_REL"),
    (lambda b: b[:0x3C] + struct.pack("<H", 60000) + b[0x3E:], "section header"),
])
def test_bad_headers_raise_elferror(mutate, why) -> None:
    raw = (DATA / "obj" / "multi.o").read_bytes()
    with pytest.raises(ElfError, match=why):
        load_object(mutate(raw))


def test_missing_file() -> None:
    with pytest.raises(ElfError, match="cannot read"):
        load_object("/nonexistent/x.o")

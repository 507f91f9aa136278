"""Pure parts of the kernel layer: attr/info layouts (offsets from uapi linux/bpf.h, as a C
compiler lays them out on x86_64/aarch64), CPU list parsing, log parsing, names."""

from __future__ import annotations

import ctypes

import pytest

from pyxdp.abi import ProgType
from pyxdp.errors import MapError
from pyxdp.isa import Instruction, PseudoSrc
from pyxdp.kernel import _sys as s
from pyxdp.kernel import failing_insn, patch_map_refs
from pyxdp.kernel._testrun import XdpMd
from pyxdp.spec import MapRef, ProgramSpec


@pytest.mark.parametrize(("struct", "size", "field", "offset"), [
    (s.MapCreateAttr, 72, "map_extra", 64),
    (s.MapElemAttr, 32, "flags", 24),
    (s.MapBatchAttr, 56, "flags", 48),
    (s.ProgLoadAttr, 144, "core_relo_rec_size", 136),
    (s.ProgLoadAttr, 144, "prog_name", 48),
    (s.TestRunAttr, 80, "batch_size", 72),
    (s.ObjAttr, 16, "file_flags", 12),
    (s.InfoAttr, 16, "info", 8),
    (s.LinkUpdateAttr, 16, "old_prog_fd", 12),
    (s.ProgInfoStruct, 232, "attach_btf_id", 224),
    (s.ProgInfoStruct, 232, "netns_dev", 88),
    (s.MapInfoStruct, 88, "map_extra", 80),
    (XdpMd, 24, "egress_ifindex", 20),
])
def test_layouts_match_uapi(struct: type, size: int, field: str, offset: int) -> None:
    assert ctypes.sizeof(struct) == size
    assert getattr(struct, field).offset == offset


def test_attr_never_exceeds_the_union() -> None:
    for st in (s.MapCreateAttr, s.MapElemAttr, s.MapBatchAttr, s.ProgLoadAttr, s.TestRunAttr,
               s.ObjAttr, s.GetIdAttr, s.InfoAttr, s.LinkCreateAttr, s.LinkUpdateAttr,
               s.BtfLoadAttr):
        assert ctypes.sizeof(st) <= 144, st


@pytest.mark.parametrize(("text", "n"), [("0", 1), ("0-3", 4), ("0-3,8", 5), ("0,2-5\n", 5)])
def test_parse_cpu_list_counts_cpus_like_for_each_possible_cpu(text: str, n: int) -> None:
    assert s.parse_cpu_list(text) == n


@pytest.mark.parametrize("bad", ["", "3-1", "x"])
def test_parse_cpu_list_refuses_nonsense(bad: str) -> None:
    with pytest.raises(ValueError):
        s.parse_cpu_list(bad)


def test_obj_name_is_sanitised_and_truncated() -> None:
    assert s.obj_name("xdp/filter-prog.v2!!") == b"xdp_filter_prog"
    assert s.obj_name(".rodata") == b".rodata"


def test_failing_insn_from_log() -> None:
    log = ("func#0 @0\n0: R1=ctx() R10=fp0\n0: (b7) r0 = 0\n1: (b7) r1 = 1\n"
           "2: (61) r0 = *(u32 *)(r1 +0)\nR1 invalid mem access 'scalar'\nprocessed 3 insns\n")
    assert failing_insn(log) == 2
    assert failing_insn("jump out of range from insn 1 to 9\n") == 1
    assert failing_insn("last insn is not an exit or jmp\n") is None


def test_patch_map_refs() -> None:
    insns = [Instruction(0x18, dst=1), Instruction(0x18, dst=2), Instruction(0x95)]
    spec = ProgramSpec("p", ProgType.XDP, insns, map_refs={
        0: MapRef("a"), 1: MapRef("b", PseudoSrc.MAP_VALUE, 16)})
    out = patch_map_refs(spec, {"a": 7, "b": 9})
    assert (out[0].src, out[0].imm) == (PseudoSrc.MAP_FD, 7)
    assert (out[1].src, out[1].imm) == (PseudoSrc.MAP_VALUE, 9 | 16 << 32)
    assert out[1].encode()[4:8] == (9).to_bytes(4, "little")
    assert out[1].encode()[12:16] == (16).to_bytes(4, "little")
    with pytest.raises(MapError, match="'b'"):
        patch_map_refs(spec, {"a": 7})

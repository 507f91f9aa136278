"""Library homes of what the CLI used to do itself: picking a program of an object
(``ObjectSpec.program`` / ``only``) and annotating xlated instructions like bpftool."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxdp.abi import ProgType
from pyxdp.elf import load_object
from pyxdp.errors import PyxdpError
from pyxdp.isa import CallSrc, Class, Instruction, JmpOp
from pyxdp.kernel import annotate_xlated

OBJ = Path(__file__).resolve().parents[1] / "data" / "obj"


def test_program_by_name_section_or_the_only_one() -> None:
    multi = load_object(OBJ / "multi.o")
    assert multi.program("second_drop").name == "second_drop"
    sec = multi.programs["third_tx"].section
    assert multi.program(sec).name in {p.name for p in multi.programs.values()
                                       if p.section == sec}
    with pytest.raises(PyxdpError, match=r"has 3 programs \(first_pass, second_drop,"
                                         r" third_tx\): choose one by name"):
        multi.program()
    with pytest.raises(PyxdpError, match="has 3 XDP programs"):
        multi.program(type=ProgType.XDP)
    with pytest.raises(PyxdpError, match=r"no program or section 'nope' \(programs: first"):
        multi.program("nope")
    one = load_object(OBJ / "btf_map.o")
    assert one.program().name == one.program(type=ProgType.XDP).name == "count_packets"


def test_only_keeps_maps_and_drops_slots_of_left_out_programs() -> None:
    tail = load_object(OBJ / "tail_call.o")
    assert tail.map_slots                       # jump_table -> tail_target
    (slotted,) = {what for e in tail.map_slots.values() for what in e.values()}
    other = next(n for n in tail.programs if n != slotted)
    kept = tail.only(other)
    assert list(kept.programs) == [other]
    assert kept.maps == tail.maps
    assert kept.map_slots == {}
    assert tail.only(slotted).map_slots == tail.map_slots
    assert len(tail.programs) == 2                 # the original is left as it was
    with pytest.raises(PyxdpError, match="no program or section 'nope'"):
        tail.only("nope")


def _call(src: int, imm: int, off: int = 0) -> Instruction:
    return Instruction(Class.JMP | JmpOp.CALL, src=src, off=off, imm=imm)


def test_annotate_xlated_names_helpers_and_subprogs(tmp_path: Path) -> None:
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text("ffffffff81000000 T __bpf_call_base\n"
                        "ffffffff81000040 T bpf_map_lookup_elem\n"
                        "ffffffff81000080 t some_static\n"
                        "ffffffff81000100 d not_text\n")
    lddw = Instruction(Class.LD | 0x18, dst=1, imm=5)            # two slots
    insns = [lddw, _call(CallSrc.HELPER, 0x40), _call(CallSrc.HELPER, 0x100),
             _call(CallSrc.PSEUDO, 3, off=2), Instruction(Class.JMP | JmpOp.EXIT)]
    lines = annotate_xlated(insns, kallsyms=str(kallsyms))
    assert [ln.slot for ln in lines] == [0, 2, 3, 4, 5]
    assert [ln.helper for ln in lines] == [None, "bpf_map_lookup_elem", None, None, None]
    assert [ln.subprog for ln in lines] == [None, None, None, 2, None]
    assert lines[-1].text == "exit"


def test_annotate_xlated_without_addresses(tmp_path: Path) -> None:
    hidden = tmp_path / "kallsyms"          # kptr_restrict: every address reads as 0
    hidden.write_text("0000000000000000 T __bpf_call_base\n0000000000000000 T bpf_x\n")
    (line,) = annotate_xlated([_call(CallSrc.HELPER, 1)], kallsyms=str(hidden))
    assert line.helper is None and line.text.startswith("call")
    (line,) = annotate_xlated([_call(CallSrc.HELPER, 1)], kallsyms=str(tmp_path / "none"))
    assert line.helper is None

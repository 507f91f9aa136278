"""CO-RE relocation, pure: the object's own BTF is edited into a fake "kernel" target."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from pyxdp.btf import Btf, Kind, apply_core_relocations, load_vmlinux
from pyxdp.btf._core import POISON_HELPER
from pyxdp.elf import load_object
from pyxdp.errors import BtfError

OBJ = Path(__file__).parent.parent / "data" / "obj" / "core.o"


def _target(local: Btf) -> Btf:
    """A kernel where task_struct.tgid sits at byte 100, xdp_buff has 7 pointers and no
    ``no_such_field``, and XDP_PASS is 2."""
    t = copy.deepcopy(local)
    _, task = t.by_name("task_struct___mini")
    task.name, task.size = "task_struct", 200
    task.members[1].bit_offset = 800
    _, buff = t.by_name("xdp_buff___mini")
    buff.name, buff.size = "xdp_buff", 56
    buff.members = buff.members[:2]
    buff.members[1].bit_offset = 128
    _, act = t.by_name("xdp_action___mini")
    act.name = "xdp_action"
    act.values[0].name, act.values[0].value = "XDP_PASS", 2
    t.invalidate()
    return t


def test_core_relocations_against_edited_target() -> None:
    spec = load_object(OBJ)
    prog = spec.programs["core_read"]
    before = list(prog.instructions)
    res = apply_core_relocations(prog, spec.btf, _target(spec.btf))
    got = {(r.relo.kind.name, spec.btf[r.relo.type_id].name): (r.orig, r.new, r.poison)
           for r in res}
    assert got == {
        ("FIELD_BYTE_OFFSET", "task_struct___mini"): (4, 100, False),   # tgid
        ("FIELD_BYTE_OFFSET", "xdp_buff___mini"): (8, 16, False),       # data_end
        ("TYPE_SIZE", "xdp_buff___mini"): (24, 56, False),
        ("FIELD_EXISTS", "xdp_buff___mini"): (1, 0, False),             # no_such_field
        ("ENUMVAL_VALUE", "xdp_action___mini"): (0, 2, False),
    }
    for r in res:
        assert prog.instructions[r.insn_index].imm == r.new
    assert len(prog.instructions) == len(before)


def test_missing_type_poisons_and_exists_gives_zero() -> None:
    spec = load_object(OBJ)
    prog = spec.programs["core_read"]
    target = _target(spec.btf)
    _, task = target.by_name("task_struct")
    task.name = "not_a_task"
    target.invalidate()
    res = apply_core_relocations(prog, spec.btf, target)
    poisoned = [r for r in res if r.poison]
    assert len(poisoned) == 1 and poisoned[0].relo.type_id == spec.btf.by_name(
        "task_struct___mini")[0]
    insn = prog.instructions[poisoned[0].insn_index]
    assert insn.is_call and insn.imm == POISON_HELPER


def test_ambiguous_candidates_raise() -> None:
    spec = load_object(OBJ)
    target = _target(spec.btf)
    _, task = target.by_name("task_struct")
    dup = copy.deepcopy(task)
    dup.members[1].bit_offset = 64
    target.add(dup)
    with pytest.raises(BtfError, match="ambiguous"):
        apply_core_relocations(spec.programs["core_read"], spec.btf, target)


def test_instruction_mismatch_raises() -> None:
    spec = load_object(OBJ)
    prog = spec.programs["core_read"]
    target = _target(spec.btf)
    idx = next(i for i, ins in enumerate(prog.instructions) if ins.opcode == 0xB7
               and ins.imm == 24)
    prog.instructions[idx] = type(prog.instructions[idx])(0xB7, 1, 0, 0, 23)
    with pytest.raises(BtfError, match="expected 24"):
        apply_core_relocations(prog, spec.btf, target)


@pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"), reason="no kernel BTF")
def test_against_vmlinux() -> None:
    spec = load_object(OBJ)
    vm = load_vmlinux()
    res = apply_core_relocations(spec.programs["core_read"], spec.btf, vm)
    tid, _ = vm.by_name("task_struct", Kind.STRUCT)
    buff, _ = vm.by_name("xdp_buff", Kind.STRUCT)
    want_tgid = vm.member_offset(tid, "tgid")[0] // 8
    news = {(r.relo.kind.name, r.relo.type_id): r.new for r in res}
    assert want_tgid in news.values()
    assert news[("TYPE_SIZE", spec.btf.by_name("xdp_buff___mini")[0])] == vm.size_of(buff)
    assert not any(r.poison for r in res)

"""``Collection.pin`` / ``unpin`` and ``load_pinned``: one naming rule, all or nothing.

Every pin lives in a fresh directory under /sys/fs/bpf that a finalizer removes.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxdp.abi import MapType, ProgType
from pyxdp.elf import load_object
from pyxdp.errors import PyxdpError, VerifierError
from pyxdp.isa import Class, Instruction, JmpOp
from pyxdp.kernel import Link, Map, Program, load_collection, load_pinned, pin_name
from pyxdp.maps import MapSpec
from pyxdp.spec import ObjectSpec, ProgramSpec

pytestmark = pytest.mark.kernel

OBJ = Path(__file__).parent.parent / "data" / "obj"
EXIT = Instruction(Class.JMP | JmpOp.EXIT)
RET2 = Instruction(Class.ALU64 | 0xB0, dst=0, imm=2)        # r0 = 2


@pytest.fixture
def root() -> Iterator[str]:
    """A path under /sys/fs/bpf that does not exist yet."""
    path = f"/sys/fs/bpf/pyxdp-cpin-{secrets.token_hex(4)}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _spec(*, bad: bool = False, by_name: bool = False, prog: str = "p",
          maps: tuple[str, ...] = ("m",)) -> ObjectSpec:
    insns = [EXIT] if bad else [RET2, EXIT]      # bad: r0 never set, the verifier refuses
    return ObjectSpec(
        programs={prog: ProgramSpec(prog, ProgType.XDP, insns)},
        maps={name: MapSpec(name, MapType.ARRAY, 4, 8, 1, pinning=1 if by_name else 0)
              for name in maps})


def test_pin_name_rule() -> None:
    assert pin_name("xdp_prog.rodata") == "xdp_prog_rodata"
    assert pin_name("a/b") == "a_b"
    assert pin_name("counters") == "counters"


def test_pin_follows_the_rule_and_unpin_undoes_it(root: str) -> None:
    with load_collection(load_object(OBJ / "global_data.o")) as coll:
        coll.pin(root)
        names = sorted(os.listdir(root))
        # the program by its name; data maps by their kernel name, dots as underscores
        assert names == sorted(["global_data", "global_d_rodata", "global_d_data",
                                "global_d_bss"])
        assert coll.program_pins == {"global_data": f"{root}/global_data"}
        assert coll.map_pins[".rodata"] == f"{root}/global_d_rodata"
        with Program.from_pin(f"{root}/global_data") as p:
            assert p.id == coll.programs["global_data"].id
        for name, m in coll.maps.items():
            with Map.from_pin(coll.map_pins[name]) as there:
                assert there.id == m.id
        coll.unpin()
        assert not os.path.exists(root)          # pin() created it, unpin() removes it
        assert coll.program_pins == {} and coll.map_pins == {}


def test_pins_outlive_the_collection(root: str) -> None:
    with load_collection(load_object(OBJ / "multi.o")) as coll:
        coll.pin(root)
        ids = {n: p.id for n, p in coll.programs.items()}
    assert sorted(os.listdir(root)) == ["first_pass", "second_drop", "third_tx"]
    with Program.from_pin(f"{root}/second_drop") as p:
        assert p.id == ids["second_drop"]
        assert p.test_run(bytes(64)).retval == 1


def test_taken_name_rolls_back_everything(root: str) -> None:
    os.mkdir(root)
    with Map.create(MapSpec("other", MapType.ARRAY, 4, 4, 1)) as other:
        other.pin(f"{root}/third_tx")        # pinned last by the rule: a late failure
    with load_collection(load_object(OBJ / "multi.o")) as coll:
        with pytest.raises(PyxdpError, match=r"cannot pin program 'third_tx'.*already exists"):
            coll.pin(root)
        assert coll.program_pins == {} and coll.map_pins == {}
    assert os.listdir(root) == ["third_tx"]   # what was there before, and nothing else


def test_created_dirs_are_removed_on_failure(root: str) -> None:
    inner = f"{root}/a/b"
    spec = _spec(prog="dup", maps=("dup",))   # a program and a map with one pin name
    with load_collection(spec) as coll, pytest.raises(PyxdpError,
                                                      match="would both be pinned at"):
        coll.pin(inner)
    assert not os.path.exists(root)
    with load_collection(_spec()) as coll:
        os.makedirs(root)
        coll.maps["m"].pin(f"{root}/a")           # a pin where a directory must go
        with pytest.raises(PyxdpError, match="cannot create pin directory .*/a/b: Not a dir"):
            coll.pin(inner)
        assert coll.program_pins == {}
    assert os.listdir(root) == ["a"]


def test_not_on_bpffs(tmp_path: Path) -> None:
    with load_collection(_spec()) as coll, pytest.raises(PyxdpError,
                                                         match="not on a bpf filesystem"):
        coll.pin(str(tmp_path / "pins"))
    assert not (tmp_path / "pins").exists()


def test_pin_twice_is_refused(root: str) -> None:
    with load_collection(_spec()) as coll:
        coll.pin(root)
        with pytest.raises(PyxdpError, match="pinned already"):
            coll.pin(root + "-2")
        assert not os.path.exists(root + "-2")
        coll.unpin()


def test_link_pin_name_does_not_collide(root: str, veth: tuple[str, int]) -> None:
    """The ``<prog>_link`` part of the rule, as :func:`pyxdp.xdp.attach_pinned` uses it."""
    from pyxdp.kernel import create_xdp_link

    with load_collection(_spec()) as coll:
        coll.pin(root)
        with create_xdp_link(coll.programs["p"], veth[1]) as link:
            link.pin(f"{root}/{pin_name('p')}_link")
        assert sorted(os.listdir(root)) == ["m", "p", "p_link"]
        with Link.from_pin(f"{root}/p_link") as link:
            link.detach()
        coll.unpin()
    assert os.listdir(root) == ["p_link"]     # not the collection's: unpin leaves it


# -- load_pinned -------------------------------------------------------------------------------
def test_load_pinned_records_by_name_maps_once(root: str) -> None:
    with load_pinned(_spec(by_name=True), root) as coll:
        assert sorted(os.listdir(root)) == ["m", "p"]
        assert coll.map_pins == {"m": f"{root}/m"}
        coll.maps["m"][0] = 7
        mid = coll.maps["m"].id
    # the next load reuses the pinned map (its value is still there) and refuses the
    # program pin that exists; the reused map's pin stays, as it was there before
    with pytest.raises(PyxdpError, match="cannot pin program 'p'"):
        load_pinned(_spec(by_name=True), root)
    assert sorted(os.listdir(root)) == ["m", "p"]
    with Map.from_pin(f"{root}/m") as m:
        assert m.id == mid and m[0] == 7


def test_load_pinned_failed_load_leaves_nothing(root: str) -> None:
    with pytest.raises(VerifierError):
        load_pinned(_spec(bad=True, by_name=True), root)
    assert not os.path.exists(root)


def test_load_pinned_failed_pin_removes_new_by_name_pins(root: str) -> None:
    os.mkdir(root)
    Path(f"{root}/p").mkdir()                     # the program's pin name is taken
    with pytest.raises(PyxdpError, match="cannot pin program 'p'"):
        load_pinned(_spec(by_name=True, maps=("m", "n")), root)
    assert os.listdir(root) == ["p"]


def test_load_pinned_unpin_removes_the_directory(root: str) -> None:
    with load_pinned(_spec(by_name=True), root) as coll:
        coll.unpin()
    assert not os.path.exists(root)


def test_the_rule_is_bpftools_loadall_layout(root: str) -> None:
    """``bpftool prog loadall OBJ DIR pinmaps DIR`` (libbpf) pins the same names in DIR."""
    import subprocess

    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed")
    obj = OBJ / "global_data.o"
    theirs = root + "-bpftool"
    try:
        subprocess.run(["bpftool", "prog", "loadall", str(obj), theirs, "pinmaps", theirs],
                       check=True, capture_output=True, timeout=60)
        with load_collection(load_object(obj)) as coll:
            coll.pin(root)
        assert sorted(os.listdir(root)) == sorted(os.listdir(theirs))
    finally:
        shutil.rmtree(theirs, ignore_errors=True)

"""A load that fails removes the pins it made (like libbpf) and keeps the ones it found."""

from __future__ import annotations

import os
import secrets
import shutil

import pytest

from pyxdp.abi import MapType, ProgType
from pyxdp.errors import VerifierError
from pyxdp.isa import Class, Instruction, JmpOp
from pyxdp.kernel import Map, load_collection
from pyxdp.maps import MapSpec
from pyxdp.spec import ObjectSpec, ProgramSpec

pytestmark = pytest.mark.kernel


@pytest.fixture
def pin_dir():
    path = f"/sys/fs/bpf/pyxdp-pins-{secrets.token_hex(4)}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _obj(bad: bool) -> ObjectSpec:
    exit_ = Instruction(Class.JMP | JmpOp.EXIT)
    # exit without setting r0: the verifier says "R0 !read_ok"
    insns = [exit_] if bad else [Instruction(Class.ALU64 | 0xB0, dst=0, imm=2), exit_]
    return ObjectSpec(
        programs={"p": ProgramSpec("p", ProgType.XDP, insns)},
        maps={"kept": MapSpec("kept", MapType.ARRAY, 4, 8, 1, pinning=1),
              "fresh": MapSpec("fresh", MapType.HASH, 4, 8, 8, pinning=1)})


def test_failed_load_unpins_what_it_pinned_only(pin_dir: str) -> None:
    os.makedirs(pin_dir)
    with Map.create(MapSpec("kept", MapType.ARRAY, 4, 8, 1)) as m:
        m.pin(os.path.join(pin_dir, "kept"))
    with pytest.raises(VerifierError):
        load_collection(_obj(bad=True), pin_dir)
    assert sorted(os.listdir(pin_dir)) == ["kept"]      # found before: still there
    with load_collection(_obj(bad=False), pin_dir) as coll:
        assert coll.programs["p"].test_run(bytes(64)).retval == 2
    assert sorted(os.listdir(pin_dir)) == ["fresh", "kept"]  # a good load keeps its pins


def test_variable_writes_touch_only_their_own_bytes() -> None:
    """Setting one .bss variable through the shared mapping leaves its neighbours, which
    the program writes, as the program left them (no read-modify-write of the section)."""
    from pathlib import Path
    from unittest import mock

    from pyxdp.elf import load_object

    obj = Path(__file__).resolve().parents[1] / "data" / "obj" / "global_data.o"
    with load_collection(load_object(obj)) as c:
        c.programs["global_data"].test_run(bytes(64))
        v = c.variables
        assert v["last_len"].value == 64
        # a whole-value update would be the read-modify-write path: it must not be used
        with mock.patch.object(type(c.maps[".bss"]), "_update",
                               side_effect=AssertionError("read-modify-write")):
            v["seen_magic"].value = 7
        assert v["seen_magic"].value == 7 and v["last_len"].value == 64

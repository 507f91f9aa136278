"""``bpf_for_each_map_elem`` (helper 164) on both backends, with
``tests/data/obj/for_each.o``: the callback sees every element (key read-only, value
live), stops on a non-zero return, and the helper returns how many elements it visited.

The kernel walks a hash map in bucket order, the emulator in insertion order, so with an
early stop only the counts are compared for the hash map, never which elements were seen.
"""

from __future__ import annotations

import copy
import errno
from pathlib import Path
from typing import Any

import pytest

from pyxdp.abi import XdpAction
from pyxdp.backend import Backend
from pyxdp.elf import load_object
from pyxdp.spec import ObjectSpec

OBJ = Path(__file__).parent.parent / "data" / "obj"
FRAME = bytes(64)
HASH_KEYS = (3, 9, 12, 40, 41)


def _obj() -> ObjectSpec:
    return copy.deepcopy(load_object(OBJ / "for_each.o"))


def _fill(coll: Any, **variables: int) -> None:
    for name, value in variables.items():
        coll.variables[name].value = value
    for i in range(8):
        coll.maps["arr"][i] = i + 1
    for k in HASH_KEYS:
        coll.maps["hsh"][k] = 2 * k + 1


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def test_walks_every_element_and_writes_values(backend: Backend) -> None:
    with backend.load(_obj().only("walk")) as coll:
        _fill(coll)
        assert coll.programs["walk"].run_packet(FRAME).verdict == XdpAction.PASS
        v = {k: coll.variables[k].value for k in
             ("arr_n", "arr_sum", "arr_seen", "hsh_n", "hsh_sum", "hsh_seen")}
        assert v["arr_n"] == v["arr_seen"] == 8
        assert v["arr_sum"] == sum((i + 1) * 1000 + i for i in range(8))
        assert v["hsh_n"] == v["hsh_seen"] == len(HASH_KEYS)
        assert v["hsh_sum"] == sum((2 * k + 1) * 1000 + k for k in HASH_KEYS)
        # the callback's writes through the value pointer are in the maps
        assert [coll.maps["arr"][i] for i in range(8)] == [i + 2 for i in range(8)]
        assert dict(coll.maps["hsh"].items()) == {k: 2 * k + 2 for k in HASH_KEYS}


def test_callback_returning_one_stops(backend: Backend) -> None:
    with backend.load(_obj().only("walk")) as coll:
        _fill(coll, stop_after=3)
        coll.programs["walk"].run_packet(FRAME)
        got = {k: coll.variables[k].value for k in ("arr_n", "arr_seen", "hsh_n", "hsh_seen")}
        assert got == {"arr_n": 3, "arr_seen": 3, "hsh_n": 3, "hsh_seen": 3}
        assert coll.variables["arr_sum"].value == sum((i + 1) * 1000 + i for i in range(3))
        # exactly the three visited elements were bumped
        assert [coll.maps["arr"][i] for i in range(8)] == [2, 3, 4, 4, 5, 6, 7, 8]
        bumped = [k for k, val in coll.maps["hsh"].items() if val == 2 * k + 2]
        assert len(bumped) == 3


def test_empty_hash_map_and_bad_flags(backend: Backend) -> None:
    with backend.load(_obj().only("walk")) as coll:
        coll.programs["walk"].run_packet(FRAME)
        assert coll.variables["hsh_n"].value == 0
        assert coll.variables["arr_n"].value == 8      # arrays always have every element
    with backend.load(_obj().only("walk")) as coll:
        coll.variables["each_flags"].value = 1
        coll.programs["walk"].run_packet(FRAME)
        assert _signed(coll.variables["arr_n"].value) == -errno.EINVAL
        assert _signed(coll.variables["hsh_n"].value) == -errno.EINVAL
        assert coll.variables["arr_seen"].value == 0


def test_callback_may_delete_from_the_hash_map(backend: Backend) -> None:
    with backend.load(_obj().only("prune_odd")) as coll:
        for k in range(10):
            coll.maps["hsh"][k] = k * 3
        coll.programs["prune_odd"].run_packet(FRAME)
        assert coll.variables["hsh_n"].value == 10
        assert dict(coll.maps["hsh"].items()) == {k: k * 3 for k in range(10) if not k * 3 & 1}


def test_emulator_refuses_other_map_types() -> None:
    from pyxdp.abi import MapType
    from pyxdp.emu import EmuBackend
    from pyxdp.errors import EmulatorError

    obj = _obj().only("walk")
    obj.maps["hsh"] = copy.copy(obj.maps["hsh"])
    obj.maps["hsh"].type = MapType.LPM_TRIE
    obj.maps["hsh"].key_size = 8
    obj.maps["hsh"].flags = 1
    coll = EmuBackend().load(obj)
    with pytest.raises(EmulatorError, match="LPM_TRIE"):
        coll.programs["walk"].run_packet(FRAME)

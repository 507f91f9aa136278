"""Map-in-map (``ARRAY_OF_MAPS``, ``HASH_OF_MAPS``) on both backends: the emulator must
give what the kernel gives.

The object is ``tests/data/obj/map_in_map.o`` (``outer`` holds ``inner1`` in slot 0; the
program looks up ``outer[0]`` and then ``inner[0]``: ABORTED when either is missing, DROP
when the value is non-zero, else PASS).  User space stores maps and reads back ids; the
inner map must match the template (type, sizes, flags; max_entries for array inner maps
unless the template has ``BPF_F_INNER_MAP``), else EINVAL.
"""

from __future__ import annotations

import copy
import errno
from pathlib import Path
from typing import Any

import pytest

from pyxdp.abi import BPF_F_INNER_MAP, MapType, XdpAction
from pyxdp.backend import Backend
from pyxdp.elf import load_object
from pyxdp.errors import PyxdpError
from pyxdp.maps import MapSpec, UpdateFlags

OBJ = Path(__file__).parent.parent / "data" / "obj"
FRAME = bytes(range(64))


def _inner(max_entries: int = 1, **kw: Any) -> MapSpec:
    return MapSpec(kw.pop("name", "inner"), kw.pop("type", MapType.ARRAY), kw.pop("key_size", 4),
                   kw.pop("value_size", 4), max_entries, **kw)


def _outer(mtype: MapType, template: MapSpec, max_entries: int = 4) -> MapSpec:
    return MapSpec("outer", mtype, 4, 4, max_entries, inner=template)


def _errno(e: pytest.ExceptionInfo[BaseException]) -> int:
    assert isinstance(e.value, PyxdpError), e.value
    return e.value.errno  # type: ignore[attr-defined,no-any-return]


def _close(*maps: Any) -> None:
    for m in maps:
        m.close()


def test_program_follows_the_inner_map(backend: Backend) -> None:
    with backend.load(load_object(OBJ / "map_in_map.o")) as coll:
        outer, inner1 = coll.maps["outer"], coll.maps["inner1"]
        prog = coll.programs["outer_lookup"]
        assert outer[0] == inner1.id          # the initial slot, read back as an id
        assert 1 not in outer
        with pytest.raises(KeyError):
            outer[1]
        assert prog.run_packet(FRAME).verdict == XdpAction.PASS
        inner1[0] = 7
        assert prog.run_packet(FRAME).verdict == XdpAction.DROP
        other = backend.create_map(_inner(name="other"))
        try:
            outer[0] = other                     # swap the slot: the program follows
            assert outer[0] == other.id
            assert prog.run_packet(FRAME).verdict == XdpAction.PASS
            other[0] = 1
            assert prog.run_packet(FRAME).verdict == XdpAction.DROP
        finally:
            del outer[0]
            other.close()
        assert prog.run_packet(FRAME).verdict == XdpAction.ABORTED   # empty slot: NULL


def test_hash_of_maps_program(backend: Backend) -> None:
    obj = load_object(OBJ / "map_in_map.o")
    obj.maps["outer"] = copy.copy(obj.maps["outer"])
    obj.maps["outer"].type = MapType.HASH_OF_MAPS
    with backend.load(obj) as coll:
        outer, inner1 = coll.maps["outer"], coll.maps["inner1"]
        prog = coll.programs["outer_lookup"]
        assert dict(outer.items()) == {0: inner1.id}
        inner1[0] = 3
        assert prog.run_packet(FRAME).verdict == XdpAction.DROP
        outer.delete(0)
        assert len(outer) == 0
        assert prog.run_packet(FRAME).verdict == XdpAction.ABORTED


@pytest.mark.parametrize("mtype", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_incompatible_inner_maps_are_refused(backend: Backend, mtype: MapType) -> None:
    outer = backend.create_map(_outer(mtype, _inner(2)))
    bad = [backend.create_map(s) for s in (
        _inner(2, value_size=8), _inner(2, key_size=4, type=MapType.HASH),
        _inner(2, flags=BPF_F_INNER_MAP), _inner(3))]
    good = backend.create_map(_inner(2))
    try:
        for m in bad:
            with pytest.raises(PyxdpError) as e:
                outer[1] = m
            assert _errno(e) == errno.EINVAL, m
            assert 1 not in outer
        outer[1] = good
        assert outer[1] == good.id
    finally:
        _close(outer, good, *bad)


def test_inner_map_flag_lets_array_sizes_differ(backend: Backend) -> None:
    outer = backend.create_map(_outer(MapType.ARRAY_OF_MAPS,
                                      _inner(2, flags=BPF_F_INNER_MAP)))
    small, big = (backend.create_map(_inner(n, flags=BPF_F_INNER_MAP)) for n in (1, 64))
    try:
        outer[0], outer[1] = small, big
        assert [v for _, v in outer.items()] == [small.id, big.id]
    finally:
        _close(outer, small, big)


def test_hash_inner_maps_may_differ_in_size(backend: Backend) -> None:
    template = _inner(8, type=MapType.HASH)
    outer = backend.create_map(_outer(MapType.HASH_OF_MAPS, template))
    other = backend.create_map(_inner(100, type=MapType.HASH))
    try:
        outer[5] = other
        assert outer[5] == other.id
    finally:
        _close(outer, other)


def test_update_flags_and_bounds(backend: Backend) -> None:
    arr = backend.create_map(_outer(MapType.ARRAY_OF_MAPS, _inner(), max_entries=2))
    hsh = backend.create_map(_outer(MapType.HASH_OF_MAPS, _inner(), max_entries=1))
    a, b = backend.create_map(_inner()), backend.create_map(_inner())
    try:
        with pytest.raises(PyxdpError) as e:
            arr[2] = a
        assert _errno(e) == errno.E2BIG
        with pytest.raises(PyxdpError) as e:
            arr.update(0, a, UpdateFlags.NOEXIST)
        assert _errno(e) == errno.EINVAL
        hsh.update(1, a, UpdateFlags.NOEXIST)
        with pytest.raises(PyxdpError) as e:
            hsh.update(1, b, UpdateFlags.NOEXIST)
        assert _errno(e) == errno.EEXIST
        with pytest.raises(PyxdpError) as e:
            hsh[2] = b
        assert _errno(e) == errno.E2BIG
        hsh.update(1, b, UpdateFlags.EXIST)
        assert hsh[1] == b.id
        assert list(arr.keys()) == [0, 1]          # array of maps: every index is a key
        assert list(arr.items()) == []             # ... but empty slots have no value
        with pytest.raises(KeyError):
            del arr[0]
    finally:
        _close(arr, hsh, a, b)


def test_creation_needs_a_template(backend: Backend) -> None:
    with pytest.raises(PyxdpError):
        backend.create_map(MapSpec("outer", MapType.ARRAY_OF_MAPS, 4, 4, 1))
    nested = _outer(MapType.ARRAY_OF_MAPS, _inner())
    with pytest.raises(PyxdpError):
        backend.create_map(_outer(MapType.ARRAY_OF_MAPS, nested))


def test_emulator_refuses_non_maps_and_unknown_ids() -> None:
    from pyxdp.emu import EmuBackend

    outer = EmuBackend().create_map(_outer(MapType.ARRAY_OF_MAPS, _inner()))
    with pytest.raises(PyxdpError, match="not a map id|no emulated map"):
        outer[0] = 1 << 31
    with pytest.raises(PyxdpError, match="emulated map or its id"):
        outer[0] = "inner"


@pytest.mark.parametrize("mtype", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_clear_empties_the_slots(backend: Backend, mtype: MapType) -> None:
    outer = backend.create_map(_outer(mtype, _inner()))
    a, b = backend.create_map(_inner()), backend.create_map(_inner())
    try:
        outer[0], outer[3] = a, b
        outer.clear()
        assert list(outer.items()) == []
        assert 0 not in outer and 3 not in outer
    finally:
        _close(outer, a, b)

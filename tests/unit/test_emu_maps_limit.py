"""An object declaring huge maps: the emulator refuses it up front, naming the map and the
limit, instead of dying with MemoryError (arrays and ring buffers allocate eagerly)."""

from __future__ import annotations

import errno

import pytest

from pyxdp.abi import MapType
from pyxdp.emu.maps import EmuMapError, create_map, eager_bytes
from pyxdp.maps import MapSpec


@pytest.mark.parametrize(("spec", "ncpus"), [
    (MapSpec("big", MapType.ARRAY, 4, 64, 1 << 30), 1),
    (MapSpec("wide", MapType.PERCPU_ARRAY, 4, 8, 1 << 26), 64),
    (MapSpec("ring", MapType.RINGBUF, 0, 0, 1 << 31), 1),
])
def test_huge_maps_are_refused_naming_the_map(spec: MapSpec, ncpus: int) -> None:
    with pytest.raises(EmuMapError, match=f"map '{spec.name}'.*up front") as e:
        create_map(spec, ncpus=ncpus)
    assert e.value.errno == errno.ENOMEM


def test_the_limit_is_per_map_and_settable(monkeypatch) -> None:
    spec = MapSpec("mid", MapType.ARRAY, 4, 8, 1 << 16)
    assert eager_bytes(spec, 1) == 8 << 16
    create_map(spec, ncpus=1)                          # well under the default
    monkeypatch.setenv("PYXDP_EMU_MAP_LIMIT", str(4096))
    with pytest.raises(EmuMapError, match="at most 4,096"):
        create_map(spec, ncpus=1)
    # hash maps grow as they fill: any max_entries is fine
    create_map(MapSpec("h", MapType.HASH, 4, 8, 1 << 30), ncpus=1)

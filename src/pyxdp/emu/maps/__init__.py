"""Userspace implementations of BPF maps for the emulator, behind :func:`create_map`."""

from __future__ import annotations

import errno as _errno
import os
from typing import Any

from pyxdp.abi import MapType
from pyxdp.emu.maps.array import ArrayMap
from pyxdp.emu.maps.base import EmuMap, EmuMapError, is_readonly, readonly_data_name
from pyxdp.emu.maps.hash import HashMap
from pyxdp.emu.maps.lpm import LpmTrie
from pyxdp.emu.maps.mapinmap import MapOfMaps, inner_mismatch
from pyxdp.emu.maps.special import PerfEventArray, ProgArray, RingBuf, SlotMap
from pyxdp.maps import MapSpec

_CLASSES: dict[MapType, type[EmuMap]] = {
    MapType.ARRAY: ArrayMap, MapType.PERCPU_ARRAY: ArrayMap,
    MapType.HASH: HashMap, MapType.PERCPU_HASH: HashMap, MapType.LRU_HASH: HashMap,
    MapType.LRU_PERCPU_HASH: HashMap, MapType.LPM_TRIE: LpmTrie,
    MapType.DEVMAP: SlotMap, MapType.DEVMAP_HASH: SlotMap, MapType.CPUMAP: SlotMap,
    MapType.XSKMAP: SlotMap, MapType.PROG_ARRAY: ProgArray, MapType.RINGBUF: RingBuf,
    MapType.ARRAY_OF_MAPS: MapOfMaps, MapType.HASH_OF_MAPS: MapOfMaps,
    MapType.PERF_EVENT_ARRAY: PerfEventArray,
}


def default_ncpus() -> int:
    """Possible CPUs, like the kernel sizes per-CPU values (so shapes match real maps)."""
    return os.cpu_count() or 1


#: the most memory one emulated map may take up front (arrays and ring buffers allocate
#: all of it at creation; hash maps grow as they fill); ``PYXDP_EMU_MAP_LIMIT`` (bytes)
#: changes it
DEFAULT_MAP_LIMIT = 1 << 30


def eager_bytes(spec: MapSpec, ncpus: int) -> int:
    """Bytes an emulated map allocates when it is created."""
    if spec.type in (MapType.ARRAY, MapType.PERCPU_ARRAY):
        n = ncpus if spec.type == MapType.PERCPU_ARRAY else 1
        return n * ((spec.value_size + 7) & ~7) * spec.max_entries
    if spec.type == MapType.RINGBUF:
        return spec.max_entries
    return 0


def create_map(spec: MapSpec, key_type: Any = None, value_type: Any = None,
               ncpus: int | None = None) -> EmuMap:
    """Create an emulated map described by ``spec`` (initial ``contents`` included)."""
    cls = _CLASSES.get(spec.type)
    if cls is None:
        raise EmuMapError(_errno.EINVAL, f"the emulator has no {spec.type.name} maps")
    width = default_ncpus() if ncpus is None else ncpus
    limit = int(os.environ.get("PYXDP_EMU_MAP_LIMIT", DEFAULT_MAP_LIMIT))
    need = eager_bytes(spec, width)
    if need > limit:
        raise EmuMapError(_errno.ENOMEM, f"map {spec.name!r} ({spec.type.name},"
                          f" max_entries {spec.max_entries:,}) needs {need:,} bytes up front;"
                          f" the emulator allocates at most {limit:,} per map"
                          " (PYXDP_EMU_MAP_LIMIT)")
    if spec.type == MapType.RINGBUF and (spec.max_entries <= 0 or
                                         spec.max_entries & (spec.max_entries - 1)):
        raise EmuMapError(_errno.EINVAL, "ring buffer size must be a power of two")
    return cls(spec, key_type, value_type, width)


__all__ = ["ArrayMap", "EmuMap", "EmuMapError", "HashMap", "LpmTrie", "MapOfMaps",
           "PerfEventArray", "ProgArray",
           "RingBuf", "SlotMap", "create_map", "default_ncpus", "inner_mismatch", "is_readonly",
           "readonly_data_name"]

"""Compile the ILA data plane once per process, load it through a backend, and write its
tables (backend-agnostic: the same calls fill an emulator or a kernel collection).

The mapping table is double-buffered (``mappings0``/``mappings1``; ``active[0]`` names
the one packets use): :func:`install` refills the idle table and switches ``active`` last,
one map update, so a packet sees the old or the new table and never a mix.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from pyxdp.abi import LIBBPF_PIN_BY_NAME
from pyxdp.apps.ila import dataplane as dp
from pyxdp.backend import Backend, LoadedCollection
from pyxdp.compiler import CompiledObject, compile_module
from pyxdp.elf import set_variable
from pyxdp.spec import ObjectSpec

PROGRAM = "xdp_ila"
MAPS = ("stats", "sirs", "locators", "mappings0", "mappings1", "active")
ROLES = {"router": dp.ROLE_ROUTER, "host": dp.ROLE_HOST}
UNKNOWN = {"pass": dp.U_PASS, "drop": dp.U_DROP, "default": dp.U_DEFAULT}
CHECKSUM = {"neutral": dp.CS_NEUTRAL, "adjust": dp.CS_ADJUST, "none": dp.CS_NONE}
DEFAULT_MAX_MAPPINGS = dp.MAX_MAPPINGS
MAX_MAPPINGS_LIMIT = 1 << 22
KEY_SIZE = 16        # IlaKey: sir, ident (raw 8 bytes each)
VALUE_SIZE = 16      # Mapping: locator (raw 8 bytes), flags u32, counter u32
_VALUE_TAIL = bytes(8)


@functools.cache
def compiled() -> CompiledObject:
    """The compiled data plane, cached (compiled on first use, not at import)."""
    return compile_module(Path(dp.__file__))


def ila_spec(role: str = "router", *, max_mappings: int = DEFAULT_MAX_MAPPINGS,
             pin: bool = False) -> ObjectSpec:
    """The object spec for ``role`` (``router``: SIR -> locator, ``host``: locator -> SIR),
    both mapping tables sized to ``max_mappings``; ``pin`` pins the maps by name."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not 0 < max_mappings <= MAX_MAPPINGS_LIMIT:
        raise ValueError(f"max_mappings {max_mappings} out of range 1..{MAX_MAPPINGS_LIMIT}")
    spec = copy.deepcopy(compiled().spec)
    for name in ("mappings0", "mappings1"):
        spec.maps[name].max_entries = max_mappings
    if pin:
        for name in MAPS:
            spec.maps[name].pinning = LIBBPF_PIN_BY_NAME
    set_variable(spec, "ROLE", ROLES[role])
    return spec


def raw64(b: bytes) -> int:
    """A raw 8-byte address half as the u64 the data plane loads (``ctx.load(u64, ..)``)."""
    return int.from_bytes(b, "little")


def pack(entries: list[tuple[bytes, bytes, bytes]]) -> tuple[bytes, bytes]:
    """(sir8, ident8, locator8) triples -> the mapping table's key and value blobs."""
    keys = b"".join(s + i for s, i, _ in entries)
    values = b"".join(loc + _VALUE_TAIL for _, _, loc in entries)
    return keys, values


def write_sirs(maps: dict[str, Any], sirs: list[Any]) -> None:
    """Replace the ``sirs`` table with ``sirs`` (objects with ``prefix8``,
    ``default8`` (or None), ``unknown``, ``checksum``)."""
    m = maps["sirs"]
    want = {raw64(s.prefix8) for s in sirs}
    for s in sirs:
        m[raw64(s.prefix8)] = dp.SirInfo(
            default_locator=raw64(s.default8) if s.default8 else 0,
            has_default=1 if s.default8 else 0, unknown=UNKNOWN[s.unknown],
            csum=CHECKSUM[s.checksum], pad=0)
    for k in list(m.keys()):
        if k not in want:
            m.delete(k)


def active_bank(maps: dict[str, Any]) -> int:
    return 1 if maps["active"][0] == 1 else 0


def _clear(m: Any) -> None:
    if hasattr(m, "dump_raw") and hasattr(m, "delete_batch_raw"):
        keys, _ = m.dump_raw()
        if keys:
            m.delete_batch_raw(keys)
    else:
        m.clear()


def dump(maps: dict[str, Any]) -> list[tuple[bytes, bytes, bytes]]:
    """The active table as (sir8, ident8, locator8) triples."""
    m = maps[f"mappings{active_bank(maps)}"]
    if hasattr(m, "dump_raw"):
        keys, values = m.dump_raw()
    else:
        pairs = [(k, m._lookup(k)) for k in m.raw_keys()]
        keys = b"".join(k for k, _ in pairs)
        values = b"".join(v or bytes(VALUE_SIZE) for _, v in pairs)
    out = []
    for i in range(len(keys) // KEY_SIZE):
        k = keys[i * KEY_SIZE:(i + 1) * KEY_SIZE]
        v = values[i * VALUE_SIZE:(i + 1) * VALUE_SIZE]
        out.append((k[:8], k[8:], v[:8]))
    return out


def write_locators(maps: dict[str, Any], locs: dict[bytes, tuple[bytes, str]],
                   *, remove_others: bool) -> None:
    """Host role: locator8 -> (sir8, checksum mode) entries written; with
    ``remove_others`` every other entry is deleted."""
    m = maps["locators"]
    for loc, (sir, cs) in locs.items():
        m[raw64(loc)] = dp.LocInfo(sir=raw64(sir), csum=CHECKSUM[cs], pad=0)
    if remove_others:
        want = {raw64(x) for x in locs}
        for k in list(m.keys()):
            if k not in want:
                m.delete(k)


def install(maps: dict[str, Any], entries: list[tuple[bytes, bytes, bytes]],
            locs: dict[bytes, tuple[bytes, str]] | None = None) -> int:
    """Replace the whole mapping table atomically: fill the idle table, switch
    ``active`` (one update), return the new active table's number.  Host role (``locs``
    given): new locator entries are written before the switch, stale ones removed after."""
    idle = 1 - active_bank(maps)
    m = maps[f"mappings{idle}"]
    _clear(m)
    keys, values = pack(entries)
    if keys:
        m.update_batch_raw(keys, values)
    if locs is not None:
        write_locators(maps, locs, remove_others=False)
    maps["active"][0] = idle
    if locs is not None:
        write_locators(maps, locs, remove_others=True)
    return idle


def update_one(maps: dict[str, Any], sir8: bytes, ident8: bytes, loc8: bytes | None,
               flags: int = 0) -> None:
    """One update (``loc8``) or delete (None) in the active table, raw keys."""
    m = maps[f"mappings{active_bank(maps)}"]
    key = sir8 + ident8
    if loc8 is None:
        if not m._delete(key):
            raise KeyError(key)
        return
    m._update(key, loc8 + _VALUE_TAIL, flags)


def lookup_one(maps: dict[str, Any], sir8: bytes, ident8: bytes) -> bytes | None:
    raw = maps[f"mappings{active_bank(maps)}"]._lookup(sir8 + ident8)
    return None if raw is None else bytes(raw[:8])


def load_ila(backend: Backend, role: str = "router", sirs: list[Any] | None = None,
             entries: list[tuple[bytes, bytes, bytes]] | None = None,
             locs: dict[bytes, tuple[bytes, str]] | None = None, *,
             max_mappings: int = DEFAULT_MAX_MAPPINGS,
             pin_dir: str | None = None) -> LoadedCollection:
    """Load the translator through ``backend`` (kernel or emulator) with its tables
    filled; nothing is attached.  Closed again on any error."""
    spec = ila_spec(role, max_mappings=max_mappings, pin=pin_dir is not None)
    coll = backend.load(spec, pin_path=pin_dir)
    try:
        maps = compiled().typed_maps(coll)
        maps["active"][0] = 0
        write_sirs(maps, sirs or [])
        install(maps, entries or [], locs if role == "host" else None)
    except BaseException:
        coll.close()
        raise
    return coll


__all__ = ["CHECKSUM", "DEFAULT_MAX_MAPPINGS", "MAPS", "PROGRAM", "ROLES", "UNKNOWN",
           "active_bank", "compiled", "dump", "ila_spec", "install", "load_ila",
           "lookup_one", "pack", "raw64", "update_one", "write_locators", "write_sirs"]

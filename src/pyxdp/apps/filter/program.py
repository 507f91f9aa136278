"""Compile the data plane once per process; load one *generation* of it per rule set.

A generation is a fresh program instance with fresh rule maps, configured (``.rodata``)
for exactly the features its rule set uses.  The maps that must outlive a generation —
counters, rate buckets, top talkers, the test clock — are declared ``pinning = BY_NAME``
here, so the loader reuses the pinned ones instead of creating new ones.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from pyxdp.apps.filter import dataplane
from pyxdp.apps.filter.tables import Sizes, Tables
from pyxdp.elf import set_variable
from pyxdp.kernel.loader import PIN_BY_NAME

PROGRAM = "xdp_filter"
SHARED = ("stats", "buckets", "talkers", "clock")


@functools.cache
def compiled() -> Any:
    """The compiled data plane (a :class:`~pyxdp.compiler.CompiledObject`), cached."""
    from pyxdp.compiler import compile_module

    return compile_module(Path(dataplane.__file__))


def generation_spec(tables: Tables, sizes: Sizes, extra: dict[str, int] | None = None) -> Any:
    """The object spec of one generation: sized, shared maps pinned, features configured."""
    spec = copy.deepcopy(compiled().spec)
    for name, n in sizes.max_entries().items():
        spec.maps[name].max_entries = n
    for name in SHARED:
        spec.maps[name].pinning = PIN_BY_NAME
    for k, v in {**tables.config, **(extra or {})}.items():
        set_variable(spec, k, v)
    return spec


def load_generation(tables: Tables, sizes: Sizes, pin_dir: str | None,
                    extra: dict[str, int] | None = None) -> Any:
    """Load a generation into the kernel (a :class:`~pyxdp.kernel.Collection`) with its
    rule maps filled; nothing of it is attached yet.  Closed again on any error."""
    from pyxdp.kernel import load_collection

    coll = load_collection(generation_spec(tables, sizes, extra), pin_path=pin_dir)
    try:
        tables.write(compiled().typed_maps(coll))
    except BaseException:
        coll.close()
        raise
    return coll


def emulate_generation(tables: Tables, sizes: Sizes, extra: dict[str, int] | None = None,
                       **kw: Any) -> Any:
    """The same generation in :mod:`pyxdp.emu` (typed emulator maps in ``.maps``)."""
    import pyxdp.emu
    from pyxdp.compiler.codecs import apply_codecs
    from pyxdp.emu import create_map

    spec = generation_spec(tables, sizes, extra)
    info = compiled().info
    maps = {}
    for name, mspec in spec.maps.items():
        m = create_map(mspec)
        maps[name] = apply_codecs(m, info.maps[name]) if name in info.maps else m
    tables.write(maps)
    return pyxdp.emu.load(spec.programs[PROGRAM], maps=maps, **kw)


__all__ = ["PROGRAM", "SHARED", "compiled", "emulate_generation", "generation_spec",
           "load_generation"]

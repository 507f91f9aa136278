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

from pyxdp.abi import LIBBPF_PIN_BY_NAME
from pyxdp.apps.filter import dataplane
from pyxdp.apps.filter.tables import Sizes, Tables
from pyxdp.backend import Backend, LoadedCollection
from pyxdp.compiler import CompiledObject, compile_module
from pyxdp.elf import set_variable
from pyxdp.spec import ObjectSpec

PROGRAM = "xdp_filter"
SHARED = ("stats", "buckets", "talkers", "clock", "sketch", "bucket_locks")


@functools.cache
def compiled() -> CompiledObject:
    """The compiled data plane, cached (compiled on first use, not at import)."""
    return compile_module(Path(dataplane.__file__))


def generation_spec(tables: Tables, sizes: Sizes, extra: dict[str, int] | None = None
                    ) -> ObjectSpec:
    """The object spec of one generation: sized, shared maps pinned, features configured."""
    spec = copy.deepcopy(compiled().spec)
    for name, n in sizes.max_entries().items():
        spec.maps[name].max_entries = n
    for name in ("src4", "dst4", "src6", "dst6"):
        # a hash-probed table is sized to its contents (it is this generation's alone):
        # a hash map's bucket array is as long as max_entries, and a lookup into a
        # needlessly long one misses the cache
        spec.maps["h" + name].max_entries = max(1, tables.counts.get(name, 0)
                                                if name in tables.hash_lengths else 1)
    for name in ("s4", "d4"):
        # a DIR-k table's arrays are sized to it; unused ones to one entry
        d = tables.dirs.get("src4" if name == "s4" else "dst4")
        spec.maps[f"dir_{name}_l1"].max_entries = (1 << (d.k - 1)) if d else 1
        spec.maps[f"dir_{name}_bits"].max_entries = max(1, len(d.bits) // 8) if d else 1
        spec.maps[f"dir_{name}_info"].max_entries = max(1, d.chunks) if d else 1
    for name in SHARED:
        spec.maps[name].pinning = LIBBPF_PIN_BY_NAME
    for k, v in {**tables.config, **(extra or {})}.items():
        set_variable(spec, k, v)
    if tables.exprs:
        from pyxdp.cbpf import translate
        from pyxdp.cbpf.libpcap import compile_expression
        from pyxdp.chain.rewrite import replace_function

        prog = spec.programs[PROGRAM]
        for j, expr in tables.exprs.items():
            prog = replace_function(prog, f"expr_{j}", translate(compile_expression(expr)))
        spec.programs[PROGRAM] = prog
    return spec


def load_generation(tables: Tables, sizes: Sizes, backend: Backend,
                    pin_dir: str | None = None,
                    extra: dict[str, int] | None = None) -> LoadedCollection:
    """Load a generation through ``backend`` (kernel or emulator) with its rule maps filled
    and typed; nothing of it is attached.  Closed again on any error.  With ``pin_dir`` the
    shared maps (:data:`SHARED`) are reused from, or pinned at, that directory."""
    coll = backend.load(generation_spec(tables, sizes, extra), pin_path=pin_dir)
    try:
        tables.write(compiled().typed_maps(coll))
    except BaseException:
        coll.close()
        raise
    return coll


__all__ = ["PROGRAM", "SHARED", "compiled", "generation_spec", "load_generation"]

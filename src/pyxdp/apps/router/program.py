"""Compile the router's data plane once per process and load it, sized for its ports."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

from pyxdp.abi import LIBBPF_PIN_BY_NAME
from pyxdp.apps.router import dataplane
from pyxdp.backend import Backend, LoadedCollection
from pyxdp.compiler import CompiledObject, compile_module
from pyxdp.elf import set_variable
from pyxdp.spec import ObjectSpec

PROGRAM = "xdp_router"
MAPS = ("stats", "egress", "ports", "tx_ports")
BPF_FIB_LOOKUP_DIRECT = 1        # include/uapi/linux/bpf.h: skip policy-routing rules
MAX_IFINDEX_LIMIT = 1 << 20      # the per-ifindex maps are arrays: refuse beyond this


@functools.cache
def compiled() -> CompiledObject:
    """The compiled data plane, cached (compiled on first use, not at import)."""
    return compile_module(Path(dataplane.__file__))


def router_spec(max_ifindex: int, *, direct: bool = False, pin: bool = False) -> ObjectSpec:
    """The object spec for ports up to ``max_ifindex``: the per-ifindex maps sized to it,
    ``direct`` sets BPF_FIB_LOOKUP_DIRECT (policy-routing rules skipped), ``pin`` pins the
    maps by name (so a restarted control plane reads the same counters)."""
    if not 0 < max_ifindex < MAX_IFINDEX_LIMIT:
        raise ValueError(f"ifindex {max_ifindex} out of range 1..{MAX_IFINDEX_LIMIT - 1}")
    spec = copy.deepcopy(compiled().spec)
    for name in ("egress", "ports", "tx_ports"):
        spec.maps[name].max_entries = max_ifindex + 1
    if pin:
        for name in MAPS:
            spec.maps[name].pinning = LIBBPF_PIN_BY_NAME
    set_variable(spec, "FIB_FLAGS", BPF_FIB_LOOKUP_DIRECT if direct else 0)
    return spec


def load_router(ports: list[int], backend: Backend, *, direct: bool = False,
                pin_dir: str | None = None) -> LoadedCollection:
    """Load the router through ``backend`` (kernel or emulator) with ``ports`` (ifindexes)
    in its port and devmap tables; nothing is attached.  Closed again on any error."""
    spec = router_spec(max(ports), direct=direct, pin=pin_dir is not None)
    coll = backend.load(spec, pin_path=pin_dir)
    try:
        maps = compiled().typed_maps(coll)
        for i in ports:
            maps["ports"][i] = 1
            maps["tx_ports"][i] = i
    except BaseException:
        coll.close()
        raise
    return coll


__all__ = ["BPF_FIB_LOOKUP_DIRECT", "MAPS", "PROGRAM", "compiled", "load_router",
           "router_spec"]

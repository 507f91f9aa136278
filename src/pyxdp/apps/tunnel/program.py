"""Compile the tunnel data plane once per process and load it, configured and sized."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from pyxdp.abi import LIBBPF_PIN_BY_NAME
from pyxdp.apps.tunnel import dataplane
from pyxdp.backend import Backend, LoadedCollection
from pyxdp.compiler import CompiledObject, compile_module
from pyxdp.elf import set_variable
from pyxdp.spec import ObjectSpec

PROGRAM = "xdp_tunnel"
MAPS = ("decap", "routes4", "routes6", "encaps", "stats", "tunnels", "ports", "tx_ports")
MAX_IFINDEX_LIMIT = 1 << 20


@functools.cache
def compiled() -> CompiledObject:
    """The compiled data plane, cached (compiled on first use, not at import)."""
    return compile_module(Path(dataplane.__file__))


def tunnel_spec(max_ifindex: int, consts: dict[str, int] | None = None, *,
                pin: tuple[str, ...] = ()) -> ObjectSpec:
    """The object spec for ports up to ``max_ifindex`` with the ``.rodata`` settings
    ``consts`` (``GUE_PORT``, ``VXLAN_PORT``, ``GENEVE_PORT``, ``ICMP_SRC4``,
    ``ICMP_SRC6_A``/``_B``); the maps named in ``pin`` are pinned by name."""
    if not 0 < max_ifindex < MAX_IFINDEX_LIMIT:
        raise ValueError(f"ifindex {max_ifindex} out of range 1..{MAX_IFINDEX_LIMIT - 1}")
    spec = copy.deepcopy(compiled().spec)
    for name in ("ports", "tx_ports"):
        spec.maps[name].max_entries = max_ifindex + 1
    for name in pin:
        spec.maps[name].pinning = LIBBPF_PIN_BY_NAME
    for k, v in (consts or {}).items():
        set_variable(spec, k, v)
    return spec


def load_tunnel(ports: list[int], backend: Backend, consts: dict[str, int] | None = None,
                *, pin_dir: str | None = None, shared: tuple[str, ...] = MAPS,
                extra_tx: list[int] | None = None) -> LoadedCollection:
    """Load through ``backend`` with ``ports`` (ifindexes) in the port and devmap tables
    (``extra_tx``: redirect targets that are not ports, e.g. an L2 tunnel's interface);
    nothing attached, nothing configured; with ``pin_dir`` the maps named in ``shared``
    are pinned there (or reused from there).  Closed again on any error."""
    every = list(ports) + [i for i in extra_tx or () if i not in ports]
    spec = tunnel_spec(max(every), consts, pin=shared if pin_dir is not None else ())
    coll = backend.load(spec, pin_path=pin_dir)
    try:
        maps: Any = compiled().typed_maps(coll)
        for i in ports:
            maps["ports"][i] = 1
        for i in every:
            maps["tx_ports"][i] = i
    except BaseException:
        coll.close()
        raise
    return coll


__all__ = ["MAPS", "PROGRAM", "compiled", "load_tunnel", "tunnel_spec"]

"""The router's TOML configuration file.

::

    ports = ["eth1", "eth2", "eth3"]   # required: the interfaces to route between
    mode = "native"                     # optional: native | generic (default: kernel's)
    direct = false                      # optional: skip policy-routing rules
    allow_mtu_mismatch = false          # optional: ports with different MTUs

Unknown keys and wrong types are errors naming the key, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyxdp.apps._config import read_toml
from pyxdp.apps.router.control import RouterError

MODES = ("native", "generic", "drv", "skb")


@dataclass(frozen=True)
class RouterConfig:
    ports: tuple[str, ...]
    mode: str | None = None
    direct: bool = False
    allow_mtu_mismatch: bool = False


def parse_config(d: dict[str, Any], where: str = "config") -> RouterConfig:
    known = {"ports", "mode", "direct", "allow_mtu_mismatch"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise RouterError(f"{where}: unknown key(s) {', '.join(unknown)} (known:"
                          f" {', '.join(sorted(known))})")
    ports = d.get("ports")
    if not isinstance(ports, list) or not ports or not all(isinstance(p, str) for p in ports):
        raise RouterError(f"{where}: 'ports' must be a non-empty list of interface names")
    mode = d.get("mode")
    if mode is not None and mode not in MODES:
        raise RouterError(f"{where}: 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    for k in ("direct", "allow_mtu_mismatch"):
        if k in d and not isinstance(d[k], bool):
            raise RouterError(f"{where}: {k!r} must be true or false, got {d[k]!r}")
    return RouterConfig(tuple(ports), mode, d.get("direct", False),
                        d.get("allow_mtu_mismatch", False))


def load_config(path: str) -> RouterConfig:
    d = read_toml(path, RouterError, "router")
    return parse_config(d, path)


__all__ = ["RouterConfig", "load_config", "parse_config"]

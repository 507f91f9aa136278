"""The ILA translator's TOML configuration file.

::

    ports = ["eth1"]                         # required
    role = "router"                          # router (SIR -> locator) | host (locator -> SIR)
    mode = "native"                          # optional: native | generic
    locator_ranges = ["2001:db8:a::/48"]     # optional: locators must lie in one of these
    max_mappings = 131072                    # optional: capacity of the mapping table
    mapping_file = "mappings.txt"            # optional: compact file, IDENTIFIER LOCATOR [SIR]

    [[sir]]
    prefix = "2001:db8:1::/64"
    default_locator = "2001:db8:a::"         # optional
    unknown = "pass"                         # pass | drop | default
    checksum = "neutral"                     # neutral | adjust | none

    [[mapping]]
    identifier = "::1:0:0:5"
    locator = "2001:db8:a::"
    sir = "2001:db8:1::/64"                  # optional with a single SIR prefix

Unknown keys, wrong types and bad addresses are :class:`IlaError`\\ s naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from pyxdp.apps._config import read_toml
from pyxdp.apps.ila.control import (
    IlaError,
    Sir,
    Table,
    check_sirs,
    parse_mapping_file,
    parse_ranges,
)
from pyxdp.apps.ila.program import DEFAULT_MAX_MAPPINGS, MAX_MAPPINGS_LIMIT, ROLES

MODES = ("native", "generic", "drv", "skb")
KNOWN = {"ports", "role", "mode", "locator_ranges", "max_mappings", "mapping_file", "sir",
         "mapping"}


@dataclass(frozen=True)
class IlaConfig:
    ports: tuple[str, ...]
    role: str = "router"
    mode: str | None = None
    sirs: tuple[Sir, ...] = ()
    locator_ranges: tuple[str, ...] = ()
    max_mappings: int = DEFAULT_MAX_MAPPINGS
    mappings: tuple[Any, ...] = field(default=())


def parse_config(d: dict[str, Any], where: str = "config", base: str = ".") -> IlaConfig:
    unknown = sorted(set(d) - KNOWN)
    if unknown:
        raise IlaError(f"{where}: unknown key(s) {', '.join(unknown)} (known:"
                       f" {', '.join(sorted(KNOWN))})")
    ports = d.get("ports")
    if not isinstance(ports, list) or not ports or not all(isinstance(p, str) for p in ports):
        raise IlaError(f"{where}: 'ports' must be a non-empty list of interface names")
    role = d.get("role", "router")
    if role not in ROLES:
        raise IlaError(f"{where}: 'role' must be one of {', '.join(ROLES)}, got {role!r}")
    mode = d.get("mode")
    if mode is not None and mode not in MODES:
        raise IlaError(f"{where}: 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    ranges = d.get("locator_ranges", [])
    if not isinstance(ranges, list):
        raise IlaError(f"{where}: 'locator_ranges' must be a list of prefixes")
    nets = parse_ranges(ranges)
    mx = d.get("max_mappings", DEFAULT_MAX_MAPPINGS)
    if isinstance(mx, bool) or not isinstance(mx, int) or not 0 < mx <= MAX_MAPPINGS_LIMIT:
        raise IlaError(f"{where}: 'max_mappings' must be an integer 1..{MAX_MAPPINGS_LIMIT},"
                       f" got {mx!r}")
    raw_sirs = d.get("sir", [])
    if not isinstance(raw_sirs, list) or not raw_sirs:
        raise IlaError(f"{where}: give at least one [[sir]] table (prefix = ...)")
    try:
        sirs = check_sirs(raw_sirs, nets)
    except IlaError as e:
        raise IlaError(f"{where}: {e}") from None
    raw_maps = d.get("mapping", [])
    if not isinstance(raw_maps, list):
        raise IlaError(f"{where}: 'mapping' must be [[mapping]] tables")
    maps: list[Any] = list(raw_maps)
    mf = d.get("mapping_file")
    if mf is not None:
        if not isinstance(mf, str):
            raise IlaError(f"{where}: 'mapping_file' must be a path")
        maps += parse_mapping_file(os.path.join(base, mf))
    table = Table(sirs, nets)
    try:
        entries = table.entries(maps)       # validated now: errors before anything loads
        if role == "host":
            table.host_locators(entries)
    except IlaError as e:
        raise IlaError(f"{where}: {e}") from None
    if len(entries) > mx:
        raise IlaError(f"{where}: {len(entries)} mappings do not fit max_mappings {mx}")
    return IlaConfig(tuple(ports), role, mode, tuple(sirs), tuple(str(n) for n in nets), mx,
                     tuple(maps))


def load_config(path: str) -> IlaConfig:
    d = read_toml(path, IlaError, "ILA")
    return parse_config(d, path, os.path.dirname(path) or ".")


__all__ = ["IlaConfig", "load_config", "parse_config"]

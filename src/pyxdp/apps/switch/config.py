"""The switch's TOML configuration file.

::

    ports = ["p0", "p1", "p2"]      # required: the interfaces to switch between
    mode = "native"                 # optional: native | generic (default: kernel's)
    age = 300                       # optional: seconds a learned MAC stays valid
    fdb_size = 4096                 # optional: learning-table entries
    allow_mtu_mismatch = false      # optional: ports with different MTUs

    [vlans.p0]                      # optional: any [vlans.*] table turns 802.1Q on;
    pvid = 10                       #   ports not listed get PVID 1
    [vlans.p1]
    pvid = 0                        #   0: untagged frames are dropped on this port
    tagged = [10, 20]

    [[static]]                      # optional: static fdb entries (never age or move)
    mac = "02:5e:00:00:10:09"
    port = "p2"
    vlan = 20                       #   0 (the default) with VLANs off

Unknown keys and wrong types are errors naming the key, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyxdp.apps._config import read_toml
from pyxdp.apps.switch.control import SwitchError, parse_mac
from pyxdp.apps.switch.program import PortVlans

MODES = ("native", "generic", "drv", "skb")


@dataclass(frozen=True)
class Static:
    mac: str
    port: str
    vlan: int = 0


@dataclass(frozen=True)
class SwitchConfig:
    ports: tuple[str, ...]
    mode: str | None = None
    age: float = 300.0
    fdb_size: int = 4096
    allow_mtu_mismatch: bool = False
    vlans: dict[str, PortVlans] | None = None
    static: tuple[Static, ...] = field(default=())


def _keys(d: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise SwitchError(f"{where}: unknown key(s) {', '.join(unknown)} (known:"
                          f" {', '.join(sorted(known))})")


def _int(v: Any, where: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise SwitchError(f"{where} must be an integer, got {v!r}")
    return v


def parse_config(d: dict[str, Any], where: str = "config") -> SwitchConfig:
    _keys(d, {"ports", "mode", "age", "fdb_size", "allow_mtu_mismatch", "vlans", "static"},
          where)
    ports = d.get("ports")
    if not isinstance(ports, list) or not ports or not all(isinstance(p, str) for p in ports):
        raise SwitchError(f"{where}: 'ports' must be a non-empty list of interface names")
    mode = d.get("mode")
    if mode is not None and mode not in MODES:
        raise SwitchError(f"{where}: 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    age = d.get("age", 300.0)
    if isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 < age <= 1e6:
        raise SwitchError(f"{where}: 'age' must be seconds in (0, 1e6], got {age!r}")
    fdb_size = _int(d.get("fdb_size", 4096), f"{where}: 'fdb_size'")
    allow = d.get("allow_mtu_mismatch", False)
    if not isinstance(allow, bool):
        raise SwitchError(f"{where}: 'allow_mtu_mismatch' must be true or false")
    vlans = None
    if "vlans" in d:
        if not isinstance(d["vlans"], dict):
            raise SwitchError(f"{where}: 'vlans' must be tables [vlans.PORT]")
        vlans = {}
        for port, v in d["vlans"].items():
            w = f"{where}: [vlans.{port}]"
            if port not in ports:
                raise SwitchError(f"{w}: {port!r} is not in 'ports'")
            if not isinstance(v, dict):
                raise SwitchError(f"{w} must be a table (pvid, tagged)")
            _keys(v, {"pvid", "tagged"}, w)
            tagged = v.get("tagged", [])
            if not isinstance(tagged, list):
                raise SwitchError(f"{w}: 'tagged' must be a list of VLAN ids")
            try:
                vlans[port] = PortVlans(_int(v.get("pvid", 1), f"{w}: 'pvid'"),
                                        tuple(_int(t, f"{w}: 'tagged'") for t in tagged))
            except ValueError as e:
                raise SwitchError(f"{w}: {e}") from None
    static = []
    for i, s in enumerate(d.get("static", [])):
        w = f"{where}: [[static]] #{i + 1}"
        if not isinstance(s, dict):
            raise SwitchError(f"{w} must be a table (mac, port, vlan)")
        _keys(s, {"mac", "port", "vlan"}, w)
        if not isinstance(s.get("mac"), str) or not isinstance(s.get("port"), str):
            raise SwitchError(f"{w}: 'mac' and 'port' are required strings")
        parse_mac(s["mac"])
        if s["port"] not in ports:
            raise SwitchError(f"{w}: port {s['port']!r} is not in 'ports'")
        static.append(Static(s["mac"], s["port"], _int(s.get("vlan", 0), f"{w}: 'vlan'")))
    return SwitchConfig(tuple(ports), mode, float(age), fdb_size, allow, vlans,
                        tuple(static))


def load_config(path: str) -> SwitchConfig:
    d = read_toml(path, SwitchError, "switch")
    return parse_config(d, path)


__all__ = ["Static", "SwitchConfig", "load_config", "parse_config"]

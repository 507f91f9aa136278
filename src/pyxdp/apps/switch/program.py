"""Compile the switch's data plane once per process and load it, sized for its ports."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyxdp.abi import LIBBPF_PIN_BY_NAME
from pyxdp.apps.switch import dataplane as dp
from pyxdp.backend import Backend, LoadedCollection
from pyxdp.compiler import CompiledObject, compile_module
from pyxdp.elf import set_variable
from pyxdp.spec import ObjectSpec

PROGRAM = "xdp_switch"
EGRESS = "xdp_switch_egress"
MAPS = ("stats", "port_stats", "ports", "fdb", "vlans", "tx_ports")
MAX_IFINDEX_LIMIT = 1 << 20      # the per-ifindex maps are arrays: refuse beyond this
MAX_VID = 4094


@dataclass(frozen=True)
class PortVlans:
    """A port's VLAN membership: ``pvid`` (the VLAN of untagged frames, 0 for none: they
    are dropped) and the VLANs it carries ``tagged``.  The PVID is an untagged member."""

    pvid: int = 0
    tagged: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for v in (self.pvid, *self.tagged):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_VID:
                raise ValueError(f"VLAN id {v!r} out of range 1..{MAX_VID}")
        if 0 in self.tagged:
            raise ValueError("VLAN 0 cannot be carried tagged (it means 'priority only')")
        if self.pvid and self.pvid in self.tagged:
            raise ValueError(f"VLAN {self.pvid} is the port's PVID (untagged) and tagged")
        if len(set(self.tagged)) != len(self.tagged):
            raise ValueError(f"a VLAN is listed twice in {list(self.tagged)}")


@functools.cache
def compiled() -> CompiledObject:
    """The compiled data plane, cached (compiled on first use, not at import)."""
    return compile_module(Path(dp.__file__))


def switch_spec(max_ifindex: int, *, vlans: bool = False, age_s: float = 300.0,
                fdb_size: int = 4096, pin: bool = False) -> ObjectSpec:
    """The object spec for ports up to ``max_ifindex``: the per-ifindex maps sized to it,
    ``vlans`` turns 802.1Q membership on, ``age_s`` the fdb aging time, ``fdb_size`` the
    learning table's size, ``pin`` pins the maps by name."""
    if not 0 < max_ifindex < MAX_IFINDEX_LIMIT:
        raise ValueError(f"ifindex {max_ifindex} out of range 1..{MAX_IFINDEX_LIMIT - 1}")
    if not 0 < age_s <= 1e6:
        raise ValueError(f"aging time {age_s!r} s out of range (0, 1e6]")
    if not 16 <= fdb_size <= 1 << 24:
        raise ValueError(f"fdb size {fdb_size} out of range 16..{1 << 24}")
    spec = copy.deepcopy(compiled().spec)
    for name in ("port_stats", "ports", "tx_ports"):
        spec.maps[name].max_entries = max_ifindex + 1
    spec.maps["fdb"].max_entries = fdb_size
    if pin:
        for name in MAPS:
            spec.maps[name].pinning = LIBBPF_PIN_BY_NAME
    set_variable(spec, "VLAN_MODE", 1 if vlans else 0)
    set_variable(spec, "AGE_NS", int(age_s * 1e9))
    return spec


def mac_key(mac: bytes) -> int:
    """A MAC as the data plane loads it: the 6 bytes as a little-endian integer."""
    return int.from_bytes(mac, "little")


def fill_ports(coll: LoadedCollection, ports: dict[int, tuple[bytes, PortVlans | None]]
               ) -> None:
    """Write the port table, VLAN membership and devmap (each port with the egress
    program) of a loaded switch; ``ports`` is ifindex -> (own MAC, VLANs or None)."""
    maps = compiled().typed_maps(coll)
    egress: Any = coll.programs[EGRESS]
    fd = int(getattr(egress, "fd", 0) or 0)
    for i, (mac, v) in ports.items():
        maps["ports"][i] = dp.PortConf(mac=mac_key(mac), pvid=v.pvid if v else 0,
                                       member=1)
        if v is not None:
            if v.pvid:
                maps["vlans"][(i << 12) | v.pvid] = dp.UNTAGGED
            for t in v.tagged:
                maps["vlans"][(i << 12) | t] = dp.TAGGED
        maps["tx_ports"][i] = i | (fd << 32)


def load_switch(ports: dict[int, tuple[bytes, PortVlans | None]], backend: Backend, *,
                vlans: bool = False, age_s: float = 300.0, fdb_size: int = 4096,
                pin_dir: str | None = None) -> LoadedCollection:
    """Load the switch through ``backend`` with ``ports`` (ifindex -> (own MAC, VLANs))
    in its tables; nothing is attached.  Closed again on any error."""
    spec = switch_spec(max(ports), vlans=vlans, age_s=age_s, fdb_size=fdb_size,
                       pin=pin_dir is not None)
    coll = backend.load(spec, pin_path=pin_dir)
    try:
        fill_ports(coll, ports)
    except BaseException:
        coll.close()
        raise
    return coll


__all__ = ["EGRESS", "MAPS", "PROGRAM", "PortVlans", "compiled", "fill_ports", "load_switch",
           "mac_key", "switch_spec"]

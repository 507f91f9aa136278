"""The switch's control plane: attach to a set of ports, read counters and the learning
table, add static entries, flush, detach.

One switch per network namespace.  The ingress program runs on every port (each port its
own XDP link); every port's devmap entry carries the egress program.  Maps and links are
pinned and the configuration saved (the lifecycle is :class:`pyxdp.apps._ports.PortApp`'s,
shared with the router), so the switch keeps switching when the control plane exits and a
later process reopens it with :meth:`Switch.open`.

The learning table lives in the kernel (an LRU hash the data plane writes); the control
plane only reads it, flushes it and adds or removes static entries, each one map update
(a frame sees the entry before or after, never half of it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pyxdp.apps._ports import Port, PortApp, hw_address
from pyxdp.apps.switch import dataplane as dp
from pyxdp.apps.switch.program import (
    MAPS,
    PROGRAM,
    PortVlans,
    compiled,
    load_switch,
    mac_key,
)
from pyxdp.backend import LoadedCollection
from pyxdp.compiler import CompiledObject
from pyxdp.errors import PyxdpError
from pyxdp.kernel import KernelBackend

PIN_ROOT = "/sys/fs/bpf/pyxdp-switch"
STATE_ROOT = "/run/pyxdp-switch"
CLOCK_MONOTONIC_COARSE = 6       # what bpf_ktime_get_coarse_ns reads

#: counter name -> index in the data plane's ``stats`` map
REASONS: dict[str, int] = {
    "forwarded": dp.R_FORWARDED,
    "flooded_multicast": dp.R_FLOOD_MULTI,
    "flooded_unknown": dp.R_FLOOD_UNKNOWN,
    "learned": dp.R_LEARNED,
    "moved": dp.R_MOVED,
    "drop_same_port": dp.R_SAME_PORT,
    "drop_vlan_ingress": dp.R_VLAN_IN,
    "drop_malformed": dp.R_MALFORMED,
    "drop_multicast_source": dp.R_BAD_SRC,
    "pass_local": dp.R_LOCAL,
    "pass_link_local": dp.R_LINK_LOCAL,
    "pass_not_a_port": dp.R_NOT_PORT,
    "drop_vlan_egress": dp.R_VLAN_OUT,
}
#: counters that count events, not frames (their byte counts are 0)
EVENTS = ("learned", "moved")


class SwitchError(PyxdpError):
    """The switch cannot do what was asked (bad ports or VLANs, none attached...)."""


@dataclass(frozen=True)
class FdbRow:
    """One learned (or static) MAC: on ``port`` in ``vlan`` (0: VLANs off), last seen
    ``age_s`` seconds ago."""

    mac: str
    vlan: int
    port: str
    age_s: float
    static: bool

    def to_json(self) -> dict[str, Any]:
        return {"mac": self.mac, "vlan": self.vlan, "port": self.port,
                "age_s": round(self.age_s, 3), "static": self.static}


def parse_mac(text: str) -> bytes:
    """``02:00:5e:10:00:01`` -> 6 bytes; a clear error otherwise."""
    parts = text.split(":") if isinstance(text, str) else []
    try:
        if len(parts) != 6 or not all(len(p) == 2 for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise SwitchError(f"not a MAC address: {text!r} (expected six hex pairs like"
                          " 02:00:5e:10:00:01)") from None


def format_mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _coarse_now() -> int:
    return time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)


class Switch(PortApp):
    """The L2 learning switch of one network namespace.  Build with :meth:`attach` or
    :meth:`open`."""

    APP = "switch"
    PIN_ROOT = PIN_ROOT
    STATE_ROOT = STATE_ROOT
    ERROR = SwitchError
    PROGRAM = PROGRAM
    MAPS = MAPS
    WHY_ETHERNET = ("the switch forwards Ethernet frames with XDP redirect, which needs"
                    " an Ethernet device with XDP support")
    MTU_HINT = (", or allow it (--allow-mtu-mismatch: frames larger than a port's MTU are"
                " then dropped on that port)")

    @classmethod
    def attach(cls, ifaces: list[str], mode: str | None = None, *,
               vlans: dict[str, PortVlans] | None = None, age_s: float = 300.0,
               fdb_size: int = 4096, allow_mtu_mismatch: bool = False,
               pin_root: str = PIN_ROOT, state_root: str = STATE_ROOT) -> Switch:
        """Load the switch and attach it to every interface of ``ifaces`` (``mode``: None
        lets the kernel choose, else ``native``/``generic``).

        ``vlans`` (port name -> :class:`PortVlans`) turns 802.1Q on: a port not named
        gets PVID 1 and no tagged VLANs.  ``age_s``: how long a learned MAC stays valid
        without frames from it; ``fdb_size``: the learning table's entries."""
        names = list(ifaces) if not isinstance(ifaces, str) else ifaces
        opts: dict[str, Any] = {"vlans": None, "age_s": float(age_s),
                                "fdb_size": int(fdb_size)}
        if not 0 < opts["age_s"] <= 1e6:
            raise SwitchError(f"aging time {age_s!r} s out of range (0, 1e6]")
        if not 16 <= opts["fdb_size"] <= 1 << 24:
            raise SwitchError(f"fdb size {fdb_size} out of range 16..{1 << 24}")
        if vlans is not None:
            if not isinstance(vlans, dict):
                raise SwitchError("vlans: a dict of port name -> PortVlans")
            unknown = sorted(set(vlans) - set(names if isinstance(names, list) else []))
            if unknown:
                raise SwitchError(f"VLANs given for {', '.join(map(repr, unknown))}, which"
                                  " is not a port of the switch")
            for n, v in vlans.items():
                if not isinstance(v, PortVlans):
                    raise SwitchError(f"port {n!r}: VLANs must be a PortVlans, got {v!r}")
            opts["vlans"] = {n: {"pvid": vlans[n].pvid if n in vlans else 1,
                                 "tagged": list(vlans[n].tagged) if n in vlans else []}
                             for n in names}
        return cls._attach(names, mode, opts, allow_mtu_mismatch=allow_mtu_mismatch,
                           pin_root=pin_root, state_root=state_root)

    @classmethod
    def _compiled(cls) -> CompiledObject:
        return compiled()

    @classmethod
    def _load(cls, ports: list[Port], pin_dir: str, options: dict[str, Any]
              ) -> LoadedCollection:
        v = options["vlans"]
        table: dict[int, tuple[bytes, PortVlans | None]] = {}
        for p in ports:
            try:
                _, mac = hw_address(p.name)
            except OSError as e:
                raise SwitchError(f"port {p.name!r}: cannot read its MAC: {e}") from None
            pv = PortVlans(v[p.name]["pvid"], tuple(v[p.name]["tagged"])) if v else None
            table[p.ifindex] = (mac, pv)
        return load_switch(table, KernelBackend(), vlans=v is not None,
                           age_s=options["age_s"], fdb_size=options["fdb_size"],
                           pin_dir=pin_dir)

    # -- observation -------------------------------------------------------------------------
    @property
    def vlans(self) -> dict[str, PortVlans] | None:
        v = self.options.get("vlans")
        return None if v is None else {n: PortVlans(c["pvid"], tuple(c["tagged"]))
                                       for n, c in v.items()}

    @property
    def age_s(self) -> float:
        return float(self.options.get("age_s", 300.0))

    def stats(self) -> dict[str, tuple[int, int]]:
        """(packets, bytes) per reason, summed over CPUs (``learned``/``moved`` count
        events)."""
        m = self._map("stats")
        out = {}
        for name, idx in REASONS.items():
            per_cpu = m[idx]
            out[name] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    def port_stats(self) -> dict[str, dict[str, int]]:
        """Frames and bytes received and transmitted per port, summed over CPUs."""
        m = self._map("port_stats")
        out = {}
        for p in self.ports:
            per_cpu = m[p.ifindex]
            out[p.name] = {k: sum(getattr(c, k) for c in per_cpu)
                           for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")}
        return out

    def _port_name(self, ifindex: int) -> str:
        for p in self.ports:
            if p.ifindex == ifindex:
                return p.name
        return f"ifindex {ifindex}"

    def fdb(self) -> list[FdbRow]:
        """The learning table: every MAC the switch knows, oldest first."""
        now = _coarse_now()
        rows = []
        for key, e in self._map("fdb").items():
            rows.append(FdbRow(format_mac((key & dp.MAC_MASK).to_bytes(6, "little")),
                               key >> 48, self._port_name(e.ifindex),
                               max(0.0, (now - e.seen) / 1e9), bool(e.flags & dp.F_STATIC)))
        return sorted(rows, key=lambda r: -r.age_s)

    def _check_vlan(self, vlan: int) -> int:
        if not isinstance(vlan, int) or isinstance(vlan, bool) or not 0 <= vlan <= 4094:
            raise SwitchError(f"VLAN id {vlan!r} out of range 0..4094")
        if self.vlans is None and vlan != 0:
            raise SwitchError("this switch has VLANs off: its entries are in VLAN 0")
        if self.vlans is not None and vlan == 0:
            raise SwitchError("this switch has VLANs on: give the entry's VLAN (1..4094)")
        return vlan

    def add_static(self, mac: str, port: str, vlan: int = 0) -> None:
        """A static entry: ``mac`` in ``vlan`` is on ``port``; it never ages and never
        moves (frames from that MAC on other ports do not relearn it)."""
        b = parse_mac(mac)
        if b[0] & 1:
            raise SwitchError(f"{mac} is a multicast address: only unicast MACs are"
                              " learned or static")
        idx = {p.name: p.ifindex for p in self.ports}.get(port)
        if idx is None:
            raise SwitchError(f"{port!r} is not a port of the switch (ports:"
                              f" {', '.join(p.name for p in self.ports)})")
        key = mac_key(b) | (self._check_vlan(vlan) << 48)
        self._map("fdb")[key] = dp.FdbEntry(ifindex=idx, flags=dp.F_STATIC,
                                            seen=_coarse_now())

    def remove(self, mac: str, vlan: int = 0) -> bool:
        """Forget ``mac`` in ``vlan`` (learned or static); False if it was not known."""
        key = mac_key(parse_mac(mac)) | (self._check_vlan(vlan) << 48)
        try:
            del self._map("fdb")[key]
        except KeyError:
            return False
        return True

    def flush(self, *, keep_static: bool = True) -> int:
        """Forget every learned MAC (and the static ones unless ``keep_static``); the
        number removed.  Flooding relearns them at the next frame."""
        m = self._map("fdb")
        n = 0
        for key, e in list(m.items()):
            if keep_static and e.flags & dp.F_STATIC:
                continue
            try:
                del m[key]
                n += 1
            except KeyError:
                pass
        return n

    def __repr__(self) -> str:
        return (f"<Switch ports={[p.name for p in self.ports]}"
                f" vlans={'on' if self.vlans is not None else 'off'}>")


__all__ = ["EVENTS", "PIN_ROOT", "REASONS", "STATE_ROOT", "FdbRow", "Port", "PortVlans",
           "Switch", "SwitchError", "format_mac", "parse_mac"]

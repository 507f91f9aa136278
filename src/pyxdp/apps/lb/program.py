"""Compile the load balancer's data plane once per process, load it through a backend
(kernel or emulator), and write its tables (the same calls fill either).

Atomic changes: a service's Maglev ring has two banks; :func:`write_ring` fills the bank
packets do not use and :func:`set_vip` then flips ``Vip.flags & V_BANK`` in one map
update, so a packet sees the old ring or the new one, never a mix.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import struct
from pathlib import Path
from typing import Any

from pyxdp.abi import LIBBPF_PIN_BY_NAME
from pyxdp.apps.lb import dataplane as dp
from pyxdp.backend import Backend, LoadedCollection
from pyxdp.compiler import CompiledObject, compile_module
from pyxdp.elf import set_variable
from pyxdp.spec import ObjectSpec

PROGRAM = "xdp_lb"
MAPS = ("vips", "ring", "reals", "conns", "stats", "vip_stats", "real_stats", "tx_ports",
        "nh_tick", "quic_ids")
METHODS = {"ipip": dp.M_IPIP, "gue": dp.M_GUE, "dsr": dp.M_DSR}
PROTOS = {"tcp": 6, "udp": 17}
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.cache
def compiled() -> CompiledObject:
    """The compiled data plane, cached (compiled on first use, not at import)."""
    return compile_module(Path(dp.__file__))


def words(addr: IP) -> tuple[int, int]:
    """(a, b) of an address as the data plane holds it: IPv4 host order in ``a``; IPv6
    the two raw 8-byte halves (as ``ctx.load(u64, ..)`` reads them)."""
    if addr.version == 4:
        return int(addr), 0
    p = addr.packed
    return int.from_bytes(p[:8], "little"), int.from_bytes(p[8:], "little")


def _mix(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def flow_hash(src: IP, dst: IP, sport: int, dport: int, proto: int) -> int:
    """The data plane's flow hash (``dataplane.flow_hash``) in Python: which ring entry a
    new flow takes is ``flow_hash(...) % ring_size`` (tests and tools predict flows)."""
    sa, sb = words(src)
    da, db = words(dst)
    m = 0xFFFFFFFF
    h = (sa & m) ^ (sa >> 32) ^ (sb & m) ^ (sb >> 32)
    h = _mix(h ^ 0x9E3779B9)
    h = _mix(h ^ (da & m) ^ (db & m))
    return _mix(h ^ ((sport << 16) | dport) ^ (proto << 8))


def lb_spec(*, ring_size: int, max_vips: int, max_reals: int, max_conns: int,
            config: dict[str, int] | None = None, pin: bool = False) -> ObjectSpec:
    """The object spec: maps sized, ``.rodata`` configured, maps pinned by name (``pin``)."""
    spec = copy.deepcopy(compiled().spec)
    spec.maps["vips"].max_entries = max_vips
    spec.maps["ring"].max_entries = max_vips * 2 * ring_size
    spec.maps["vip_stats"].max_entries = max_vips
    spec.maps["reals"].max_entries = max_reals
    spec.maps["real_stats"].max_entries = max_reals
    spec.maps["conns"].max_entries = max_conns
    if pin:
        for name in MAPS:
            spec.maps[name].pinning = LIBBPF_PIN_BY_NAME
    set_variable(spec, "RING", ring_size)
    for k, v in (config or {}).items():
        set_variable(spec, k, v)
    return spec


def load_lb(backend: Backend, *, ring_size: int, max_vips: int = dp.MAX_VIPS,
            max_reals: int = dp.MAX_REALS, max_conns: int = 65536,
            config: dict[str, int] | None = None, pin_dir: str | None = None,
            ifindexes: list[int] | None = None) -> LoadedCollection:
    """Load the balancer through ``backend`` with empty tables; ``ifindexes`` are the
    devices it may send to (``tx_ports``).  Nothing is attached; closed on any error."""
    spec = lb_spec(ring_size=ring_size, max_vips=max_vips, max_reals=max_reals,
                   max_conns=max_conns, config=config, pin=pin_dir is not None)
    coll = backend.load(spec, pin_path=pin_dir)
    try:
        maps = compiled().typed_maps(coll)
        for i in ifindexes or []:
            maps["tx_ports"][i] = i
    except BaseException:
        coll.close()
        raise
    return coll


def vip_key(addr: IP, port: int, proto: int) -> Any:
    a, b = words(addr)
    return dp.VipKey(a=a, b=b, port=port, proto=proto, fam=addr.version, pad=0)


def write_ring(maps: dict[str, Any], num: int, bank: int, ring: list[int],
               ring_size: int) -> None:
    """Service ``num``'s ring into ``bank`` (not the bank packets use)."""
    if len(ring) != ring_size:
        raise ValueError(f"a ring of {len(ring)} entries for a ring size of {ring_size}")
    maps["ring"].write_array(struct.pack(f"<{ring_size}I", *ring),
                             (num * 2 + bank) * ring_size)


def set_vip(maps: dict[str, Any], key: Any, num: int, method: int, bank: int,
            gue0: bool, prev_until: int, quic: bool = False) -> None:
    """One map update: the service's entry, naming its active bank."""
    flags = (method | (dp.V_BANK if bank else 0) | (dp.V_GUE0 if gue0 else 0)
             | (dp.V_QUIC if quic else 0))
    maps["vips"][key] = dp.Vip(num=num, flags=flags, prev_until=prev_until)


def set_real(maps: dict[str, Any], slot: int, addr: IP | None, epoch: int) -> None:
    """Real slot ``slot`` (``addr`` None: empty, its connections rehashed)."""
    if addr is None:
        maps["reals"][slot] = dp.Real(a=0, b=0, fam=0, epoch=epoch)
        return
    a, b = words(addr)
    # nh_time 0: the data plane resolves the next hop on the real's first packet
    maps["reals"][slot] = dp.Real(a=a, b=b, fam=addr.version, epoch=epoch)


def set_quic_ids(maps: dict[str, Any], num: int, ids: dict[int, int]) -> None:
    """Service ``num``'s QUIC host ids (host id -> real slot): written, then the service's
    other ids removed."""
    m = maps["quic_ids"]
    for hid, slot in ids.items():
        m[(num << 16) | hid] = slot
    for key in list(m.keys()):
        if key >> 16 == num and (key & 0xFFFF) not in ids:
            m.delete(key)


__all__ = ["MAPS", "METHODS", "PROGRAM", "PROTOS", "compiled", "flow_hash", "lb_spec", "load_lb",
           "set_quic_ids", "set_real", "set_vip", "vip_key", "words", "write_ring"]

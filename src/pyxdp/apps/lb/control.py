"""The load balancer's control plane: attach to the LB's ports, add and change services
and reals, drain and restore, health checks, counters, detach.

Lifecycle: :class:`pyxdp.apps._ports.PortApp`'s (maps pinned under
``<pin_root>/netns<inode>/``, links pinned, settings in ``state.json``).  The services and
the data plane's indexes (a number per service, a slot and an epoch per real of a
service, the active ring bank) live in ``<state_dir>/lb.json``, rewritten atomically under
the app's lock after every change: any later process (:meth:`LoadBalancer.open`) carries
on where the last one stopped, and the packets never noticed it was gone.

Every change is validated whole before the first map write, then written in an order
that packets never see half of: new real slots first, then the service's new ring into
the bank packets do not use, then one update of the service's entry flips to it; slots
of removed reals are emptied last.  A service's real slot keeps its epoch while the real
stays, so the connection table keeps established flows on it; a slot given to another
real gets a new epoch, and connections of the old one are rehashed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from pyxdp.apps._ports import Port, PortApp
from pyxdp.apps._state import locked, write_atomic
from pyxdp.apps.lb import dataplane as dp
from pyxdp.apps.lb import maglev
from pyxdp.apps.lb import program as pg
from pyxdp.apps.lb.config import (
    IP,
    LbConfig,
    LbError,
    RealCfg,
    ServiceCfg,
    check_real,
    check_service,
    from_dict,
    load_file,
    parse_service_key,
    service_from_dict,
    service_to_dict,
    with_real,
)
from pyxdp.backend import LoadedCollection
from pyxdp.compiler import CompiledObject
from pyxdp.kernel import KernelBackend

PIN_ROOT = "/sys/fs/bpf/pyxdp-lb"
STATE_ROOT = "/run/pyxdp-lb"

#: counter name -> index in the data plane's ``stats`` map
REASONS: dict[str, int] = {
    "forwarded": dp.R_FORWARDED, "not_vip": dp.R_NOT_VIP, "not_ip": dp.R_NOT_IP,
    "malformed": dp.R_MALFORMED, "fragment": dp.R_FRAGMENT, "options": dp.R_OPTIONS,
    "no_real": dp.R_NO_REAL, "lru_hit": dp.R_LRU_HIT, "lru_miss": dp.R_LRU_MISS,
    "second_hop": dp.R_SECOND_HOP, "icmp_sent": dp.R_ICMP_SENT,
    "too_big_drop": dp.R_TOO_BIG_DROP, "no_route": dp.R_NO_ROUTE, "error": dp.R_ERROR,
    "stale": dp.R_STALE, "quic_routed": dp.R_QUIC_ROUTED, "quic_hashed": dp.R_QUIC_HASHED,
}
SETTINGS = ("ring_size", "source4", "source6", "icmp_source4", "icmp_source6", "gue_port",
            "mtu", "second_hop", "max_conns", "allowed")


def _rodata(o: dict[str, Any]) -> dict[str, int]:
    out = {"GUE_PORT": o["gue_port"], "MTU": o["mtu"], "SECOND_HOP": 1}
    for k, name in (("source4", "SRC4"), ("icmp_source4", "ICMP_SRC4")):
        if o.get(k):
            out[name] = int(ipaddress.IPv4Address(o[k]))
    for k, name in (("source6", "SRC6"), ("icmp_source6", "ICMP_SRC6")):
        if o.get(k):
            a, b = pg.words(ipaddress.IPv6Address(o[k]))
            out[name + "_A"], out[name + "_B"] = a, b
    return out


def _settings(cfg: LbConfig, max_vips: int, max_reals: int) -> dict[str, Any]:
    return {"ring_size": cfg.ring_size, "gue_port": cfg.gue_port, "mtu": cfg.mtu,
            "second_hop": cfg.second_hop, "max_conns": cfg.max_conns,
            "allowed": [str(n) for n in cfg.allowed], "max_vips": max_vips,
            "max_reals": max_reals,
            **{k: (str(getattr(cfg, k)) if getattr(cfg, k) else None)
               for k in ("source4", "source6", "icmp_source4", "icmp_source6")}}


def _coerce(config: Any) -> LbConfig:
    if isinstance(config, LbConfig):
        return config
    if isinstance(config, str | os.PathLike):
        return load_file(os.fspath(config))
    if isinstance(config, dict):
        return from_dict(config)
    raise LbError(f"a configuration is an LbConfig, a dict or a TOML file, not {config!r}")


def route_check(real: IP, method: str, ports: list[Port]) -> None:
    """The real must be reachable out of one of the LB's ports, on-link for DSR (the
    frame keeps the VIP as its destination: only the real's MAC changes)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        try:
            routes = ipr.route("get", dst=str(real))
        except Exception as e:        # NetlinkError: no route
            raise LbError(f"real {real}: no route from the balancer ({e})") from None
    if not routes:
        raise LbError(f"real {real}: no route from the balancer")
    r = routes[0]
    oif, gw = r.get_attr("RTA_OIF"), r.get_attr("RTA_GATEWAY")
    names = {p.ifindex: p.name for p in ports}
    if oif not in names:
        raise LbError(f"real {real}: routed out of interface index {oif}, not a port of the"
                      f" balancer ({', '.join(names.values())})")
    if method == "dsr" and gw:
        raise LbError(f"real {real}: method dsr needs the real on-link of a port (only its"
                      f" MAC is rewritten), but it is routed via {gw}")


class LoadBalancer(PortApp):
    """``pyxdp lb``: an L4 load balancer (Maglev, connection table, IPIP/GUE/DSR)."""

    APP = "lb"
    PIN_ROOT = PIN_ROOT
    STATE_ROOT = STATE_ROOT
    ERROR = LbError
    PROGRAM = pg.PROGRAM
    MAPS = pg.MAPS
    STAGE = None
    WHY_ETHERNET = "the balancer rewrites Ethernet frames, which needs an Ethernet device"

    @classmethod
    def attach(cls, config: Any, *, max_vips: int = dp.MAX_VIPS,
               max_reals: int = dp.MAX_REALS, pin_root: str = PIN_ROOT,
               state_root: str = STATE_ROOT, check_routes: bool = True) -> LoadBalancer:
        """Load the balancer on ``config``'s ports (an :class:`LbConfig`, its dict or a
        TOML file) and install its services; any error leaves nothing behind."""
        cfg = _coerce(config)
        if not cfg.ports:
            raise LbError("give the balancer its ports (ports = [\"eth0\"])")
        for what, n, hi in (("max_vips", max_vips, 4096), ("max_reals", max_reals, 65536)):
            if not isinstance(n, int) or not 1 <= n <= hi:
                raise LbError(f"{what} {n!r}: 1..{hi}")
        lb = cls._attach(list(cfg.ports), cfg.mode, _settings(cfg, max_vips, max_reals),
                         pin_root=pin_root, state_root=state_root, allow_mtu_mismatch=True)
        try:
            with locked(lb.state_dir, create=False):
                lb._save({"services": [], "nums": {}, "banks": {}, "slots": {},
                          "epochs": {}})
            lb.set_services(cfg.services, check_routes=check_routes)
        except BaseException:
            with contextlib.suppress(Exception):
                lb.detach()
            raise
        return lb

    @classmethod
    def _compiled(cls) -> CompiledObject:
        return pg.compiled()

    @classmethod
    def _load(cls, ports: list[Port], pin_dir: str, options: dict[str, Any]
              ) -> LoadedCollection:
        return pg.load_lb(KernelBackend(), ring_size=options["ring_size"],
                          max_vips=options["max_vips"], max_reals=options["max_reals"],
                          max_conns=options["max_conns"], config=_rodata(options),
                          pin_dir=pin_dir, ifindexes=[p.ifindex for p in ports])

    # -- settings and state -------------------------------------------------------------------
    def config(self) -> LbConfig:
        """The balancer's settings and services as an :class:`LbConfig`."""
        o = self.options
        cfg = LbConfig(ports=tuple(p.name for p in self.ports), mode=self.mode,
                       ring_size=o["ring_size"], gue_port=o["gue_port"], mtu=o["mtu"],
                       second_hop=o["second_hop"], max_conns=o["max_conns"],
                       allowed=tuple(ipaddress.ip_network(n) for n in o["allowed"]))
        for k in ("source4", "source6", "icmp_source4", "icmp_source6"):
            if o.get(k):
                setattr(cfg, k, ipaddress.ip_address(o[k]))
        cfg.services = [service_from_dict(d, "state") for d in self._state()["services"]]
        return cfg

    def _state(self) -> dict[str, Any]:
        try:
            with open(os.path.join(self.state_dir, "lb.json")) as f:
                return dict(json.load(f))
        except FileNotFoundError:
            raise LbError(f"the balancer's state ({self.state_dir}/lb.json) is gone: was it"
                          " detached?") from None

    def _save(self, st: dict[str, Any]) -> None:
        write_atomic(os.path.join(self.state_dir, "lb.json"), json.dumps(st, indent=1))

    def services(self) -> list[ServiceCfg]:
        return self.config().services

    # -- changes ------------------------------------------------------------------------------
    def set_services(self, services: Iterable[ServiceCfg | dict[str, Any]], *,
                     check_routes: bool = True) -> None:
        """Replace the whole service set (validated whole first)."""
        def change(cfg: LbConfig) -> list[ServiceCfg]:
            out: list[ServiceCfg] = []
            for i, s in enumerate(services):
                sc = s if isinstance(s, ServiceCfg) else service_from_dict(s, f"service[{i}]")
                out.append(check_service(cfg, sc, out))
            return out
        self._change(change, check_routes)

    def add_service(self, service: str, method: str = "ipip", *, gue_variant: int = 1,
                    health: Any = None, reals: Iterable[Any] = (),
                    quic: bool = False) -> ServiceCfg:
        """Add ``service`` (``VIP:PORT[/tcp|udp]``); a duplicate is an error."""
        vip, port, proto = parse_service_key(service)
        new = service_from_dict({"vip": str(vip), "port": port, "proto": proto,
                                 "method": method, "gue_variant": gue_variant,
                                 "reals": list(reals), "quic": quic,
                                 **({"health": health} if health is not None else {})},
                                f"service {service}")

        def change(cfg: LbConfig) -> list[ServiceCfg]:
            return [*cfg.services, check_service(cfg, new, cfg.services)]
        self._change(change, True)
        return new

    def remove_service(self, service: str) -> None:
        key = self._key(service)

        def change(cfg: LbConfig) -> list[ServiceCfg]:
            cfg.service(key)
            return [s for s in cfg.services if s.key != key]
        self._change(change, False)

    def add_real(self, service: str, address: str, weight: int = 1, *,
                 quic_id: int = 0) -> None:
        key = self._key(service)

        def change(cfg: LbConfig) -> list[ServiceCfg]:
            s = cfg.service(key)
            r = RealCfg(ipaddress.ip_address(address) if isinstance(address, str)
                        else address, weight, quic_id=quic_id)
            if any(x.address == r.address for x in s.reals):
                raise LbError(f"service {key}: real {r.address} exists already")
            check_real(cfg, s, r)
            new = with_real(s, r)
            return [check_service(cfg, new, [x for x in cfg.services if x.key != key])
                    if x.key == key else x for x in cfg.services]
        try:
            self._change(change, True)
        except ValueError as e:
            raise LbError(f"service {key}: real {address!r}: {e}") from None

    def remove_real(self, service: str, address: str) -> None:
        key = self._key(service)

        def change(cfg: LbConfig) -> list[ServiceCfg]:
            s = cfg.service(key)
            gone = s.real(address).address
            return [replace(x, reals=tuple(r for r in x.reals if r.address != gone))
                    if x.key == key else x for x in cfg.services]
        self._change(change, False)

    def _real_change(self, service: str, address: str, **kw: Any) -> None:
        key = self._key(service)

        def change(cfg: LbConfig) -> list[ServiceCfg]:
            s = cfg.service(key)
            r = replace(s.real(address), **kw)
            check_real(cfg, s, r)
            return [with_real(x, r) if x.key == key else x for x in cfg.services]
        self._change(change, False)

    def set_weight(self, service: str, address: str, weight: int) -> None:
        self._real_change(service, address, weight=weight)

    def drain(self, service: str, address: str) -> None:
        """No new flows to the real; its established connections stay on it."""
        self._real_change(service, address, state="draining")

    def restore(self, service: str, address: str) -> None:
        """Back to taking new flows (after drain, or a failed health check)."""
        self._real_change(service, address, state="active")

    def mark(self, service: str, address: str, state: str) -> bool:
        """Health checks: ``down`` or ``active``, unless an operator drained the real
        (a draining real stays draining).  True when something changed."""
        s = self.config().service(self._key(service))
        r = s.real(address)
        if r.state == "draining" or r.state == state:
            return False
        self._real_change(service, address, state=state)
        return True

    @staticmethod
    def _key(service: str) -> str:
        vip, port, proto = parse_service_key(service)
        return ServiceCfg(vip, port, proto).key

    def _change(self, fn: Any, check_routes: bool) -> None:
        with locked(self.state_dir, create=False):
            cfg = self.config()
            new = fn(cfg)
            if check_routes:
                old = {(s.key, r.address) for s in cfg.services for r in s.reals}
                for s in new:
                    for r in s.reals:
                        if (s.key, r.address) not in old:
                            route_check(r.address, s.method, self.ports)
            self._sync(self._state(), cfg, new)

    def _sync(self, st: dict[str, Any], cfg: LbConfig, new: list[ServiceCfg]) -> None:
        """Write the maps from ``st`` (the data plane's current indexes) to ``new``."""
        o = self.options
        m_size, max_vips, max_reals = o["ring_size"], o["max_vips"], o["max_reals"]
        nums: dict[str, int] = dict(st["nums"])
        banks: dict[str, int] = dict(st["banks"])
        slots: dict[str, int] = dict(st["slots"])
        epochs: dict[str, int] = dict(st["epochs"])
        old = {s.key: s for s in cfg.services}
        want = {s.key: s for s in new}
        # -- allocate everything first: nothing is written when something does not fit --
        for key in want:
            if key not in nums:
                free = sorted(set(range(max_vips)) - set(nums.values()) - {
                    nums[k] for k in old if k not in want and k in nums})
                if not free:
                    raise LbError(f"service {key}: the balancer holds {max_vips} services"
                                  " (attach with a larger max_vips)")
                nums[key] = free[0]
        wanted_slots = {f"{s.key}|{r.address}" for s in new for r in s.reals}
        # slots freed by this change are emptied after the flip: not reused until later
        used = set(slots.values())
        fresh: list[str] = []
        for sk in sorted(wanted_slots - set(slots)):
            free_slot = next((i for i in range(max_reals) if i not in used), None)
            if free_slot is None:
                raise LbError(f"real {sk.split('|')[1]} of {sk.split('|')[0]}: the balancer"
                              f" holds {max_reals} reals (attach with a larger max_reals)")
            used.add(free_slot)
            slots[sk] = free_slot
            fresh.append(sk)
        maps = {n: self._map(n) for n in pg.MAPS}
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        window = int(o["second_hop"] * 1e9)
        # -- new real slots, then rings and flips, then freed slots --------------------------
        for sk in fresh:
            slot = slots[sk]
            epochs[str(slot)] = epochs.get(str(slot), 0) + 1
            pg.set_real(maps, slot, ipaddress.ip_address(sk.split("|")[1]),
                        epochs[str(slot)])
        for key, s in want.items():
            ring = maglev.build({str(r.address): (slots[f"{key}|{r.address}"], r.ring_weight)
                                 for r in s.reals}, m_size)
            vk = pg.vip_key(s.vip, s.port, pg.PROTOS[s.proto])
            method = pg.METHODS[s.method]
            num = nums[key]
            quic_ids = {r.quic_id: slots[f"{key}|{r.address}"] for r in s.reals
                        if s.quic and r.quic_id}
            if key in old and key in banks:
                prev = old[key]
                if prev == s:
                    continue
                active = banks[key]
                # the second hop must not read the bank about to be rewritten
                pg.set_vip(maps, vk, num, pg.METHODS[prev.method], active,
                           prev.gue_variant == 0, 0, prev.quic)
                bank = 1 - active
                pg.write_ring(maps, num, bank, ring, m_size)
                pg.set_quic_ids(maps, num, quic_ids)
                pg.set_vip(maps, vk, num, method, bank, s.gue_variant == 0,
                           now + window if window else 0, s.quic)
            else:
                bank = 0
                pg.write_ring(maps, num, bank, ring, m_size)
                pg.set_quic_ids(maps, num, quic_ids)
                pg.set_vip(maps, vk, num, method, bank, s.gue_variant == 0, 0, s.quic)
            banks[key] = bank
        for key, s in old.items():
            if key not in want:
                with contextlib.suppress(KeyError):
                    maps["vips"].delete(pg.vip_key(s.vip, s.port, pg.PROTOS[s.proto]))
                if key in nums:
                    pg.set_quic_ids(maps, nums[key], {})
                nums.pop(key, None)
                banks.pop(key, None)
        for sk in list(slots):
            if sk not in wanted_slots:
                slot = slots.pop(sk)
                epochs[str(slot)] = epochs.get(str(slot), 0) + 1
                pg.set_real(maps, slot, None, epochs[str(slot)])
        self._save({"services": [service_to_dict(s) for s in new], "nums": nums,
                    "banks": banks, "slots": slots, "epochs": epochs})

    # -- observation ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per reason, per service and per real of a service: (packets, bytes), summed
        over CPUs."""
        st = self._state()

        def tot(m: Any, i: int) -> tuple[int, int]:
            v = m[i]
            return sum(c.packets for c in v), sum(c.bytes for c in v)

        stats, vs, rs = self._map("stats"), self._map("vip_stats"), self._map("real_stats")
        services: dict[str, Any] = {}
        for d in st["services"]:
            s = service_from_dict(d, "state")
            services[s.key] = {"total": tot(vs, st["nums"][s.key]), "reals": {
                str(r.address): tot(rs, st["slots"][f"{s.key}|{r.address}"])
                for r in s.reals}}
        return {"reasons": {n: tot(stats, i) for n, i in REASONS.items()},
                "services": services}

    def flush_connections(self) -> int:
        """Empty the connection table (what an LB restart without pinned state would
        lose); returns how many entries there were."""
        m = self._map("conns")
        keys = list(m.raw_keys())
        for k in keys:
            m._delete(k)
        return len(keys)

    def __repr__(self) -> str:
        return f"<LoadBalancer ports={[p.name for p in self.ports]}>"


__all__ = ["PIN_ROOT", "REASONS", "STATE_ROOT", "LbError", "LoadBalancer", "route_check"]

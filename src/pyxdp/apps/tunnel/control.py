"""The tunnel app's control plane: attach to ports, change the tunnel set atomically, read
counters, detach.

One tunnel app per network namespace (the lifecycle of :class:`pyxdp.apps._ports.PortApp`,
shared with the router and the switch).  The counters (``stats``, ``tunnels``) and the port
tables are pinned under ``<pin_root>/netns<inode>/``; the tunnel tables (``decap``,
``routes4``, ``routes6``, ``encaps``) belong to one *generation*: every change loads a new
program with new, fully filled tables and swaps it into every port's link
(``BPF_LINK_UPDATE``), so a packet sees the old set of tunnels or the new one, never a
mix, and a refused change leaves the running one alone.  The tunnel set and each
tunnel's counter slot are saved in the state file, so any later process reopens the app
(:meth:`TunnelApp.open`) and the counters of a tunnel survive changes to the others.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

from pyxdp import xdp
from pyxdp.apps import _ports
from pyxdp.apps._ports import Port, PortApp, netns_inode
from pyxdp.apps._state import locked, write_atomic
from pyxdp.apps.tunnel import dataplane as dp
from pyxdp.apps.tunnel.config import (
    Tunnel,
    TunnelConfig,
    TunnelError,
    check_tunnels,
    words,
)
from pyxdp.apps.tunnel.program import PROGRAM, compiled, load_tunnel, tunnel_spec
from pyxdp.backend import Backend, LoadedCollection
from pyxdp.compiler import CompiledObject
from pyxdp.kernel import KernelBackend, Link
from pyxdp.spec import ObjectSpec

PIN_ROOT = "/sys/fs/bpf/pyxdp-tunnel"
STATE_ROOT = "/run/pyxdp-tunnel"
SHARED = ("stats", "tunnels", "ports", "tx_ports")     # pinned, kept across generations

#: counter name -> index in the data plane's ``stats`` map
REASONS: dict[str, int] = {
    "decapsulated": dp.R_DECAP,
    "encapsulated": dp.R_ENCAP,
    "pass_not_ip": dp.R_NOT_IP,
    "pass_not_tunnel": dp.R_NOT_TUNNEL,
    "pass_unknown_endpoint": dp.R_UNKNOWN_ENDPOINT,
    "pass_malformed": dp.R_MALFORMED,
    "pass_unsupported": dp.R_UNSUPPORTED,
    "pass_fragment": dp.R_FRAGMENT,
    "icmp_too_big_sent": dp.R_ICMP_SENT,
    "drop_too_big": dp.R_TOO_BIG_DROP,
    "pass_no_route": dp.R_NO_ROUTE,
    "pass_no_neighbour": dp.R_NO_NEIGH,
    "pass_egress_not_a_port": dp.R_NOT_PORT,
    "pass_error": dp.R_ERROR,
}

_WHY = ("the tunnel app rewrites Ethernet headers and transmits with XDP redirect, which"
        " needs an Ethernet device with XDP support")


def assign_ids(tunnels: tuple[Tunnel, ...], old: dict[str, int]) -> dict[str, int]:
    """A counter slot per tunnel name: kept for names that stay, the lowest free slots for
    new ones."""
    ids = {t.name: old[t.name] for t in tunnels if t.name in old}
    free = (i for i in range(dp.MAX_TUNNELS) if i not in set(ids.values()))
    for t in tunnels:
        if t.name not in ids:
            ids[t.name] = next(free)
    return ids


def fill(maps: dict[str, Any], cfg: TunnelConfig, ids: dict[str, int],
         ifindex: dict[str, int]) -> None:
    """Write a generation's tunnel tables (fresh maps) for ``cfg``."""
    ports_by_proto = {dp.K_GUE: cfg.gue_port, dp.K_VXLAN: cfg.vxlan_port,
                      dp.K_GENEVE: cfg.geneve_port}
    for t in cfg.tunnels:
        tid = ids[t.name]
        kind = dp.K_GRE_KEY if t.kind == dp.K_GRE and t.vni is not None else t.kind
        srv6 = kind in (dp.K_DX4, dp.K_DX6)
        if t.decap:
            a, b = words(ipaddress.ip_address(t.local if srv6 else t.remote))
            flags = dp.F_REDIRECT if t.redirect else dp.F_FORWARD if t.action == "forward" \
                else 0
            maps["decap"][dp.TunKey(kind=kind, family=t.family, vni=t.vni or 0, a=a, b=b)] = \
                dp.TunVal(id=tid, ifindex=ifindex.get(t.redirect or "", 0), flags=flags)
        sa, sb = words(ipaddress.ip_address(t.source or t.local))
        da, db = words(ipaddress.ip_address(t.remote))
        flags = (dp.E_GUE1 if t.gue_variant else 0) | (dp.E_INNER_DMAC if t.inner_dmac else 0)
        maps["encaps"][tid] = dp.Encap(
            kind=kind, family=t.family, ttl=t.ttl, df={"inherit": dp.DF_INHERIT,
                                                       "set": dp.DF_SET,
                                                       "clear": dp.DF_CLEAR}[t.df],
            vni=t.vni or 0, mtu=t.mtu, dport=ports_by_proto.get(kind, 0), id=tid,
            flags=flags, sa=sa, sb=sb, da=da, db=db,
            imac=bytes.fromhex((t.inner_dmac or "00" * 6).replace(":", "")))
        for r in t.routes:
            net = ipaddress.ip_network(r)
            maps["routes4" if net.version == 4 else "routes6"][net] = tid


def prime_neighbours(tunnels: tuple[Tunnel, ...]) -> None:
    """Have the kernel resolve the next hop towards every remote endpoint (one UDP
    datagram to its discard port, from the calling thread's namespace): the data plane
    takes the outer frame's MACs from the kernel's neighbour table, and a packet whose
    next hop is not resolved yet goes to the stack (counted ``pass_no_neighbour``)."""
    import socket

    for t in tunnels:
        fam = socket.AF_INET6 if ":" in t.remote else socket.AF_INET
        try:
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.sendto(b"", (t.remote, 9))
        except OSError:
            continue           # no route yet: the data plane passes and counts


def check_config(cfg: TunnelConfig, ifindex_of: Any) -> dict[str, int]:
    """Checks that need the namespace: redirect interfaces exist, the UDP kinds' ports are
    on.  Returns interface name -> ifindex for the redirect targets."""
    out = {}
    for t in cfg.tunnels:
        port = {dp.K_GUE: cfg.gue_port, dp.K_VXLAN: cfg.vxlan_port,
                dp.K_GENEVE: cfg.geneve_port}.get(t.kind)
        if port == 0:
            raise TunnelError(f"tunnel {t.name!r}: {t.protocol}_port is 0 (off)")
        if t.redirect:
            try:
                out[t.redirect] = ifindex_of(t.redirect)
            except (OSError, xdp.XdpError) as e:
                raise TunnelError(f"tunnel {t.name!r}: redirect interface {t.redirect!r}:"
                                  f" {e}") from None
    return out


def load_generation(cfg: TunnelConfig, ports: list[int], backend: Backend,
                    ids: dict[str, int], *, pin_dir: str | None = None,
                    ifindex_of: Any = None) -> LoadedCollection:
    """Load a program for ``cfg`` with its tunnel tables filled (the shared maps pinned
    under ``pin_dir`` when given, reused if there).  Nothing attached."""
    redirects = check_config(cfg, ifindex_of or (lambda n: xdp.status(n).ifindex))
    coll = load_tunnel(ports, backend, cfg.consts(), pin_dir=pin_dir, shared=SHARED,
                       extra_tx=list(redirects.values()))
    try:
        fill(compiled().typed_maps(coll), cfg, ids, redirects)
    except BaseException:
        coll.close()
        raise
    return coll


class TunnelApp(PortApp):
    """The tunnel app of one network namespace.  Build with :meth:`attach` or
    :meth:`open`; change with :meth:`set_tunnels`, :meth:`add` and :meth:`remove`."""

    APP = "tunnel"
    PIN_ROOT = PIN_ROOT
    STATE_ROOT = STATE_ROOT
    ERROR = TunnelError
    PROGRAM = PROGRAM
    MAPS = SHARED          # the pinned ones (the tunnel tables live with their program)
    STAGE = None
    WHY_ETHERNET = _WHY

    @property
    def config(self) -> TunnelConfig:
        o = self.options
        return TunnelConfig(tuple(p.name for p in self.ports), self.mode, o["gue_port"],
                            o["vxlan_port"], o["geneve_port"], o["icmp_source4"],
                            o["icmp_source6"], check_tunnels(o["tunnels"]))

    @property
    def tunnels(self) -> tuple[Tunnel, ...]:
        return self.config.tunnels

    @classmethod
    def attach(cls, cfg: TunnelConfig, *, pin_root: str = PIN_ROOT,
               state_root: str = STATE_ROOT) -> TunnelApp:
        """Load the app for ``cfg`` and attach it to every port of ``cfg.ports``."""
        tunnels = check_tunnels(cfg.tunnels)
        ids = assign_ids(tunnels, {})
        options = {**cfg.settings(), "tunnels": [t.to_json() for t in tunnels], "ids": ids,
                   "generation": 1}
        app = cls._attach(list(cfg.ports), cfg.mode, options, allow_mtu_mismatch=True,
                           pin_root=pin_root, state_root=state_root)
        prime_neighbours(tunnels)
        return app

    @classmethod
    def _compiled(cls) -> CompiledObject:
        return compiled()

    @classmethod
    def _cfg(cls, ports: list[Port], options: dict[str, Any]) -> TunnelConfig:
        return TunnelConfig(tuple(p.name for p in ports), None, options["gue_port"],
                            options["vxlan_port"], options["geneve_port"],
                            options["icmp_source4"], options["icmp_source6"],
                            check_tunnels(options["tunnels"]))

    @classmethod
    def _load(cls, ports: list[Port], pin_dir: str, options: dict[str, Any]
              ) -> LoadedCollection:
        return load_generation(cls._cfg(ports, options), [p.ifindex for p in ports],
                               KernelBackend(), options["ids"], pin_dir=pin_dir)

    @classmethod
    def _stage_spec(cls, ports: list[Port], options: dict[str, Any]) -> ObjectSpec:
        return tunnel_spec(max(p.ifindex for p in ports))

    # -- changes -----------------------------------------------------------------------------
    def set_tunnels(self, tunnels: Any) -> int:
        """Replace the whole tunnel set in one step: a new generation is loaded and filled,
        then swapped into every port's link.  On any error (a bad tunnel, a missing
        redirect interface, the verifier) the running generation stays.  Returns the new
        generation number."""
        new = check_tunnels(tunnels)
        ns = netns_inode()
        with locked(self.state_dir, create=True):
            state_path = os.path.join(self.state_dir, "state.json")
            with open(state_path) as f:
                state = json.load(f)
            old_ids = state.get("ids", {})
            ids = assign_ids(new, old_ids)
            options = {**{k: state[k] for k in ("gue_port", "vxlan_port", "geneve_port",
                                                "icmp_source4", "icmp_source6")},
                       "tunnels": [t.to_json() for t in new], "ids": ids,
                       "generation": int(state.get("generation", 1)) + 1}
            cfg = self._cfg(self.ports, options)
            coll = load_generation(cfg, [p.ifindex for p in self.ports], KernelBackend(),
                                   ids, pin_dir=self.pin_dir)
            try:
                # a slot new to this generation starts from zero (it may have been freed)
                fresh = [i for n, i in ids.items() if old_ids.get(n) != i]
                counters = self._map("tunnels")
                zero = dp.Counter(packets=0, bytes=0)
                for i in fresh:
                    counters[i] = [zero] * len(counters[i])
                prog: Any = coll.programs[PROGRAM]
                links = [Link.from_pin(os.path.join(_ports._link_dir(self.pin_root,
                                                                     p.name, ns), "link"))
                         for p in self.ports]
                try:
                    for lk in links:
                        lk.update(prog)
                finally:
                    for lk in links:
                        lk.close()
                state.update(options, prog_id=prog.id)
                write_atomic(state_path, json.dumps(state))
            finally:
                coll.close()
        self.options = {k: v for k, v in state.items()
                        if k not in ("version", "netns", "mode", "ports", "prog_id")}
        prime_neighbours(new)
        return int(options["generation"])

    def add(self, tunnel: Any) -> int:
        """Add one tunnel (a :class:`Tunnel` or a dict as in the TOML file)."""
        return self.set_tunnels([*self.tunnels, tunnel])

    def remove(self, name: str) -> int:
        """Remove the tunnel ``name``."""
        left = [t for t in self.tunnels if t.name != name]
        if len(left) == len(self.tunnels):
            raise TunnelError(f"no tunnel named {name!r} (have: "
                              f"{', '.join(t.name for t in self.tunnels) or 'none'})")
        return self.set_tunnels(left)

    # -- observation -------------------------------------------------------------------------
    def stats(self) -> dict[str, tuple[int, int]]:
        """(packets, bytes) per reason, summed over CPUs."""
        m = self._map("stats")
        out = {}
        for name, idx in REASONS.items():
            per_cpu = m[idx]
            out[name] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    def tunnel_stats(self) -> dict[str, tuple[int, int]]:
        """(packets, bytes) decapsulated plus encapsulated per tunnel, summed over CPUs."""
        m = self._map("tunnels")
        ids = self.options.get("ids", {})
        out = {}
        for t in self.tunnels:
            per_cpu = m[ids[t.name]]
            out[t.name] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    @property
    def generation(self) -> int:
        return int(self.options.get("generation", 1))

    def __repr__(self) -> str:
        return (f"<TunnelApp ports={[p.name for p in self.ports]} tunnels="
                f"{[t.name for t in self.tunnels]} generation={self.generation}>")


__all__ = ["PIN_ROOT", "REASONS", "STATE_ROOT", "TunnelApp", "TunnelError", "assign_ids",
           "fill", "load_generation"]

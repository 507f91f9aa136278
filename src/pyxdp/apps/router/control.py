"""The router's control plane: attach to a set of ports, read counters, detach.

One router per network namespace.  One program instance runs on every port (each port has
its own XDP link, so every port can receive redirected frames and forward what it
receives); its maps and the links are pinned on bpffs, and the port list is saved in
``<state_root>/netns<inode>/state.json``, so the router keeps forwarding when the control
plane exits and any later process reopens it with :meth:`Router.open` (the lifecycle is
:class:`pyxdp.apps._ports.PortApp`'s, shared with the switch).

Pins: ``<pin_root>/netns<inode>/`` holds the maps (``stats``, ``egress``, ``ports``,
``tx_ports``); ``<pin_root>/<iface>@netns<inode>/link`` holds each port's link.

The data plane has no routing table of its own: it asks the kernel's FIB at every packet,
so ``ip route`` and ``ip neigh`` changes take effect at once, without a reload.
"""

from __future__ import annotations

from typing import Any

from pyxdp.apps import _ports
from pyxdp.apps._ports import Port, PortApp
from pyxdp.apps.router import dataplane as dp
from pyxdp.apps.router.program import MAPS, PROGRAM, compiled, load_router, router_spec
from pyxdp.backend import LoadedCollection
from pyxdp.compiler import CompiledObject
from pyxdp.errors import PyxdpError
from pyxdp.kernel import KernelBackend
from pyxdp.spec import ObjectSpec

PIN_ROOT = "/sys/fs/bpf/pyxdp-router"
STATE_ROOT = "/run/pyxdp-router"
STAGE = "router"

#: counter name -> index in the data plane's ``stats`` map
REASONS: dict[str, int] = {
    "forwarded": dp.R_FORWARDED,
    "pass_not_ip": dp.R_NOT_IP,
    "pass_malformed": dp.R_MALFORMED,
    "pass_ttl": dp.R_TTL,
    "pass_ip_options": dp.R_OPTIONS,
    "pass_fragment": dp.R_FRAGMENT,
    "pass_local_or_no_route": dp.R_LOCAL,
    "pass_no_neighbour": dp.R_NO_NEIGH,
    "pass_frag_needed": dp.R_FRAG_NEEDED,
    "pass_unreachable": dp.R_UNREACHABLE,
    "pass_forwarding_disabled": dp.R_FWD_DISABLED,
    "pass_fib_other": dp.R_OTHER,
    "pass_egress_not_a_port": dp.R_NOT_PORT,
}


class RouterError(PyxdpError):
    """The router cannot do what was asked (bad ports, none attached, one already...)."""


_WHY = ("the router rewrites Ethernet headers and transmits with XDP redirect, which"
        " needs an Ethernet device with XDP support")
_MTU_HINT = (", or allow it (--allow-mtu-mismatch: larger packets then go to the stack,"
             " which fragments or sends ICMP)")


def check_ports(ifaces: list[str], *, allow_mtu_mismatch: bool = False,
                chained: frozenset[str] = frozenset(), mode: str | None = None) -> list[Port]:
    """Resolve and validate the port list (clear errors, before anything is loaded)."""
    return _ports.check_ports(ifaces, RouterError, "router", _WHY,
                              allow_mtu_mismatch=allow_mtu_mismatch, chained=chained,
                              mtu_hint=_MTU_HINT, mode=mode)


class Router(PortApp):
    """The router of one network namespace.  Build with :meth:`attach` or :meth:`open`."""

    APP = "router"
    PIN_ROOT = PIN_ROOT
    STATE_ROOT = STATE_ROOT
    ERROR = RouterError
    PROGRAM = PROGRAM
    MAPS = MAPS
    STAGE = STAGE
    WHY_ETHERNET = _WHY
    MTU_HINT = _MTU_HINT

    @property
    def direct(self) -> bool:
        return bool(self.options.get("direct", False))

    @classmethod
    def attach(cls, ifaces: list[str], mode: str | None = None, *, direct: bool = False,
               allow_mtu_mismatch: bool = False, pin_root: str = PIN_ROOT,
               state_root: str = STATE_ROOT, chain_roots: Any = None,
               priority: int = 90) -> Router:
        """Load the router and attach it to every interface of ``ifaces`` (``mode``: None
        lets the kernel choose, else ``native``/``generic``).  ``direct`` skips
        policy-routing rules (BPF_FIB_LOOKUP_DIRECT).

        A port that runs a pyxdp chain (under ``chain_roots``, a dict of ``pin_root`` and
        ``state_root``; None: the chain's defaults; False: never) gets the router as the
        chain's stage ``router`` at ``priority`` (late: after a filter) instead of a link
        of its own; it continues on PASS, what the stack must handle."""
        return cls._attach(ifaces, mode, {"direct": bool(direct)},
                           allow_mtu_mismatch=allow_mtu_mismatch, pin_root=pin_root,
                           state_root=state_root, chain_roots=chain_roots,
                           priority=priority)

    @classmethod
    def _compiled(cls) -> CompiledObject:
        return compiled()

    @classmethod
    def _load(cls, ports: list[Port], pin_dir: str, options: dict[str, Any]
              ) -> LoadedCollection:
        return load_router([p.ifindex for p in ports], KernelBackend(),
                           direct=options["direct"], pin_dir=pin_dir)

    @classmethod
    def _stage_spec(cls, ports: list[Port], options: dict[str, Any]) -> ObjectSpec:
        return router_spec(max(q.ifindex for q in ports), direct=options["direct"])

    # -- observation -------------------------------------------------------------------------
    def stats(self) -> dict[str, tuple[int, int]]:
        """(packets, bytes) per reason (``forwarded`` and every ``pass_*``), summed over
        CPUs."""
        m = self._map("stats")
        out = {}
        for name, idx in REASONS.items():
            per_cpu = m[idx]
            out[name] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    def egress(self) -> dict[str, tuple[int, int]]:
        """(packets, bytes) forwarded out of each port, summed over CPUs."""
        m = self._map("egress")
        out = {}
        for p in self.ports:
            per_cpu = m[p.ifindex]
            out[p.name] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    def __repr__(self) -> str:
        return f"<Router ports={[p.name for p in self.ports]} direct={self.direct}>"


__all__ = ["PIN_ROOT", "REASONS", "STATE_ROOT", "Port", "Router", "RouterError",
           "check_ports"]

"""Setting up a backend (a real) of the load balancer in one call: the VIPs on its loopback
(so the stack accepts what the LB sends and answers from the VIP, straight to the client),
ARP kept off the VIPs (``arp_ignore`` 1, ``arp_announce`` 2: IPVS-DR style), and
``pyxdp tunnel`` on its interface decapsulating IPIP, IPv6-in-IP and GUE from the LB's
source addresses (this kernel has no ipip/fou modules; the decapsulated packet goes on to
the stack).  Run in the backend's network namespace."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from pyxdp.apps.lb.config import LbError

PIN_ROOT = "/sys/fs/bpf/pyxdp-lb-backend"
STATE_ROOT = "/run/pyxdp-lb-backend"


def _sysctl(key: str, value: str) -> None:
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def _local_address(iface: str, version: int) -> str:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=iface)
        if not idx:
            raise LbError(f"backend: no interface {iface!r} in this namespace")
        fam = socket.AF_INET if version == 4 else socket.AF_INET6
        for a in ipr.get_addr(family=fam, index=idx[0]):
            addr = a.get_attr("IFA_ADDRESS")
            if addr and not ipaddress.ip_address(addr).is_link_local:
                return str(addr)
    raise LbError(f"backend: {iface} has no IPv{version} address for the tunnel's local end")


def setup_backend(iface: str, vips: Iterable[str], lb_sources: Iterable[str], *,
                  mode: str | None = "native", pin_root: str = PIN_ROOT,
                  state_root: str = STATE_ROOT) -> Any:
    """VIPs on ``lo``, ARP kept off them, decapsulation from ``lb_sources`` attached to
    ``iface``; returns the :class:`~pyxdp.apps.tunnel.TunnelApp` (detach it, then
    :func:`teardown_backend`, to undo)."""
    from pyroute2 import IPRoute

    from pyxdp.apps.tunnel import TunnelApp, TunnelConfig, check_tunnels

    vip_list = [ipaddress.ip_address(v) for v in vips]
    sources = [ipaddress.ip_address(s) for s in lb_sources]
    if not vip_list or not sources:
        raise LbError("backend: give at least one VIP and one LB source address")
    tunnels = []
    for src in sources:
        local = _local_address(iface, src.version)
        for proto in ("ipip", "ip6ip", "gue"):
            tunnels.append({"name": f"lb-{src}-{proto}".replace(":", "_"), "protocol": proto,
                            "local": local, "remote": str(src), "decap": True,
                            "action": "pass"})
    cfg = TunnelConfig((iface,), mode, tunnels=check_tunnels(tunnels))
    for k, v in (("net.ipv4.conf.all.arp_ignore", "1"), ("net.ipv4.conf.all.arp_announce", "2"),
                 ("net.ipv4.conf.all.rp_filter", "0"), (f"net.ipv4.conf.{iface}.rp_filter", "0")):
        _sysctl(k, v)
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        for vip in vip_list:
            try:
                ipr.addr("add", index=lo, address=str(vip), prefixlen=vip.max_prefixlen)
            except Exception as e:           # NetlinkError(17): there already
                if getattr(e, "code", None) != 17:
                    raise LbError(f"backend: cannot add VIP {vip} to lo: {e}") from None
    return TunnelApp.attach(cfg, pin_root=pin_root, state_root=state_root)


def teardown_backend(vips: Iterable[str]) -> None:
    """The VIPs off ``lo`` again (the tunnel app is detached by its own ``detach``)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        for v in vips:
            a = ipaddress.ip_address(v)
            try:
                ipr.addr("del", index=lo, address=str(a), prefixlen=a.max_prefixlen)
            except Exception:               # not there: nothing to undo
                continue


__all__ = ["setup_backend", "teardown_backend"]

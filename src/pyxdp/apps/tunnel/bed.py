"""The tunnel app's test bed: two sites joined by a tunnel between two XDP endpoints.

Namespaces (a :class:`pyxdp.testbed.Testbed`)::

    a   a0 198.18.10.2/24 2001:db8:10::2/64 -- ta0 .1 ::1  ta  ta1 198.18.20.1/24
                                                                2001:db8:20::1/64
    b   b0 198.18.30.2/24 2001:db8:30::2/64 -- tb0 .1 ::1  tb  tb1 198.18.20.2/24
                                                                2001:db8:20::2/64
    ta ta1 -- tb1 tb  (the "underlay")

``ta`` has no route to B's networks and ``tb`` none to A's: only the tunnel joins the
sites.  Every veth has GRO on (redirected XDP frames need NAPI on the peer) and the end
hosts compute checksums in software (see :mod:`pyxdp.apps.router.bed`).
"""

from __future__ import annotations

from typing import Any

from pyxdp.apps.router.bed import set_tx_checksum
from pyxdp.testbed import Testbed

SITE = {"ta": ("a", "a0", "ta0", 10), "tb": ("b", "b0", "tb0", 30)}
UNDER = {"ta": ("ta1", "198.18.20.1", "2001:db8:20::1"),
         "tb": ("tb1", "198.18.20.2", "2001:db8:20::2")}
MAC = {"a0": "02:aa:00:00:10:02", "ta0": "02:aa:00:00:10:01", "ta1": "02:aa:00:00:20:01",
       "tb1": "02:aa:00:00:20:02", "tb0": "02:aa:00:00:30:01", "b0": "02:aa:00:00:30:02"}


def host4(ep: str) -> str:
    return f"198.18.{SITE[ep][3]}.2"


def host6(ep: str) -> str:
    return f"2001:db8:{SITE[ep][3]}::2"


def build(tb: Testbed) -> None:
    """Build the bed into the empty test bed ``tb``."""
    for ep in ("ta", "tb"):
        tb.namespace(ep)
    tb.veth("ta", "ta1", "tb", "tb1", ipv4=("198.18.20.1/24", "198.18.20.2/24"),
            ipv6=("2001:db8:20::1/64", "2001:db8:20::2/64"), macs=(MAC["ta1"], MAC["tb1"]))
    for ep, (host, hif, eif, n) in SITE.items():
        tb.namespace(host)
        tb.veth(host, hif, ep, eif, ipv4=(f"198.18.{n}.2/24", f"198.18.{n}.1/24"),
                ipv6=(f"2001:db8:{n}::2/64", f"2001:db8:{n}::1/64"),
                macs=(MAC[hif], MAC[eif]))
        tb.exec(host, ["ip", "route", "add", "198.18.0.0/15", "via", f"198.18.{n}.1"])
        tb.exec(host, ["ip", "-6", "route", "add", "2001:db8::/32", "via",
                       f"2001:db8:{n}::1"])
        tb.call(host, set_tx_checksum, hif, False)
        tb.set_gro(host, hif, True)
        tb.set_gro(ep, eif, True)
        tb.sysctl(ep, "net.ipv4.ip_forward", "1")
        tb.sysctl(ep, "net.ipv6.conf.all.forwarding", "1")
    tb.set_gro("ta", "ta1", True)
    tb.set_gro("tb", "tb1", True)
    # the SRv6 SIDs of each endpoint (2001:db8:5a::/64 on ta, 5b on tb) over the underlay
    tb.exec("tb", ["ip", "-6", "route", "add", "2001:db8:5a::/64", "via", "2001:db8:20::1"])
    tb.exec("ta", ["ip", "-6", "route", "add", "2001:db8:5b::/64", "via", "2001:db8:20::2"])


def tunnel_pair(protocol: str, outer: int, **kw: Any) -> dict[str, dict[str, Any]]:
    """The [[tunnel]] table of each endpoint for one tunnel of ``protocol`` with an IPv4
    (``outer`` 4) or IPv6 underlay, carrying the other site's networks (the ones the
    protocol can carry)."""
    from pyxdp.apps.tunnel.config import PROTOCOLS

    kind_l2 = PROTOCOLS[protocol][2]
    out = {}
    for ep, other in (("ta", "tb"), ("tb", "ta")):
        n = SITE[other][3]
        routes = {"ipip": [f"198.18.{n}.0/24"], "end.dx4": [f"198.18.{n}.0/24"],
                  "ip6ip": [f"2001:db8:{n}::/64"], "end.dx6": [f"2001:db8:{n}::/64"]}.get(
            protocol, [f"198.18.{n}.0/24", f"2001:db8:{n}::/64"])
        mine, theirs = UNDER[ep][1 if outer == 4 else 2], UNDER[other][1 if outer == 4 else 2]
        t: dict[str, Any] = {"name": f"{ep}-{other}", "protocol": protocol, "local": mine,
                             "remote": theirs, "routes": routes}
        if protocol.startswith("end."):
            t.update(local=f"2001:db8:5{ep[1]}::d", remote=f"2001:db8:5{other[1]}::d",
                     source=UNDER[ep][2])
        if kind_l2:
            t.update(action=f"redirect:{SITE[ep][2]}", inner_dmac=MAC[SITE[other][1]])
        else:
            t["action"] = "forward"
        if protocol in ("vxlan", "geneve"):
            t["vni"] = 77
        t.update(kw)
        out[ep] = t
    return out


def settings(ep: str) -> dict[str, Any]:
    n = SITE[ep][3]
    return {"icmp_source4": f"198.18.{n}.1", "icmp_source6": f"2001:db8:{n}::1"}


__all__ = ["MAC", "SITE", "UNDER", "build", "host4", "host6", "settings", "tunnel_pair"]

"""The ILA test bed: a client, an ILA router and two locator hosts, IPv6 only.

Namespaces (a :class:`pyxdp.testbed.Testbed`)::

    c  c0 2001:db8:c::2/64 -- r0 2001:db8:c::1   r  (ILA router, role "router" on r0)
    a  a0 2001:db8:fa::2/64 -- ra 2001:db8:fa::1  r   locator 2001:db8:a:1::/64 via a
    b  b0 2001:db8:fb::2/64 -- rb 2001:db8:fb::1  r   locator 2001:db8:a:2::/64 via b

The workloads live behind SIR addresses in ``2001:db8:1::/64``; each host has the SIR
addresses of its workloads on ``lo`` and runs the translator in role "host" on its port,
which turns the locator back into the SIR prefix before the stack sees the packet.  The
router's kernel has no route to the SIR prefix: a packet reaches a host only translated.
Replies go from the SIR address straight to the client through the router's ordinary
forwarding.  The client and the hosts compute checksums in software (a frame through XDP
carries what the sender wrote; see :mod:`pyxdp.apps.router.bed`); GRO is off on the
router's client port (no segment merged before the capture) and on everywhere else.
"""

from __future__ import annotations

import ipaddress

from pyxdp.apps.router.bed import set_tx_checksum
from pyxdp.testbed import Testbed

SIR = "2001:db8:1::/64"
RANGES = ["2001:db8:a::/48"]
LOCATOR = {"a": "2001:db8:a:1::", "b": "2001:db8:a:2::"}
LINK = {"a": ("a0", "ra", "fa"), "b": ("b0", "rb", "fb")}
CLIENT = "2001:db8:c::2"


def sir_address(ident: str) -> str:
    """The SIR address of identifier ``ident`` (``::1:0:0:5`` -> ``2001:db8:1::1:0:0:5``)."""
    hi = ipaddress.IPv6Network(SIR).network_address.packed[:8]
    return str(ipaddress.IPv6Address(hi + ipaddress.IPv6Address(ident).packed[8:]))


def build(tb: Testbed) -> None:
    """Build the bed into the empty test bed ``tb``."""
    for ns in ("c", "r", "a", "b"):
        tb.namespace(ns)
    tb.veth("c", "c0", "r", "r0", ipv6=(f"{CLIENT}/64", "2001:db8:c::1/64"))
    tb.exec("c", ["ip", "-6", "route", "add", "2001:db8::/32", "via", "2001:db8:c::1"])
    tb.call("c", set_tx_checksum, "c0", False)
    tb.set_gro("c", "c0", True)
    tb.set_gro("r", "r0", False)     # segments forwarded as they came: captures on ra show
                                     # each one with the checksum it carries
    tb.sysctl("r", "net.ipv6.conf.all.forwarding", "1")
    for host, (hif, rif, net) in LINK.items():
        tb.veth(host, hif, "r", rif, ipv6=(f"2001:db8:{net}::2/64", f"2001:db8:{net}::1/64"))
        tb.exec(host, ["ip", "-6", "route", "add", "2001:db8::/32", "via",
                       f"2001:db8:{net}::1"])
        tb.exec("r", ["ip", "-6", "route", "add", f"{LOCATOR[host]}/64", "via",
                      f"2001:db8:{net}::2"])
        tb.call(host, set_tx_checksum, hif, False)
        tb.set_gro(host, hif, True)
        tb.set_gro("r", rif, True)


def add_workload(tb: Testbed, host: str, ident: str) -> str:
    """Give ``host`` the SIR address of ``ident`` (on ``lo``); returns the address."""
    addr = sir_address(ident)
    tb.exec(host, ["ip", "-6", "addr", "add", f"{addr}/128", "dev", "lo", "nodad"])
    return addr


def remove_workload(tb: Testbed, host: str, ident: str) -> None:
    tb.exec(host, ["ip", "-6", "addr", "del", f"{sir_address(ident)}/128", "dev", "lo"])


__all__ = ["CLIENT", "LINK", "LOCATOR", "RANGES", "SIR", "add_workload", "build",
           "remove_workload", "sir_address"]

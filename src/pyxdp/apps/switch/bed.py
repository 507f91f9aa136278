"""The switch's test bed: three hosts on one switch.

Namespaces ``h0``, ``h1``, ``h2`` (hosts) and ``sw`` (the switch), a
:class:`pyxdp.testbed.Testbed`::

    h0 e0 198.18.10.1/24 2001:db8:10::1/64 -- p0  sw
    h1 e1 198.18.10.2/24 2001:db8:10::2/64 -- p1  sw
    h2 e2 198.18.10.3/24 2001:db8:10::3/64 -- p2  sw

The switch ports have no addresses.  As on the router's bed, every host's veth has GRO on
(veth delivers redirected XDP frames only to a peer that runs NAPI) and computes checksums
in software (a redirected frame leaves as it is).  With ``ipv6=False`` the hosts have
IPv6 off: no router solicitations or MLD reports, so tests can count frames exactly.
"""

from __future__ import annotations

import select
import socket
import struct
import time

from pyxdp.apps.router.bed import set_tx_checksum
from pyxdp.testbed import Testbed

SWITCH_NS = "sw"
HOSTS = {"h0": ("e0", "p0", 1), "h1": ("e1", "p1", 2), "h2": ("e2", "p2", 3)}
PORTS = ["p0", "p1", "p2"]
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 1 << 4
PACKET_OUTGOING = 4


def v4(host: int) -> str:
    return f"198.18.10.{host}"


def v6(host: int) -> str:
    return f"2001:db8:10::{host}"


def mac(host: int) -> str:
    return f"02:5e:00:00:10:{host:02x}"


def build(tb: Testbed, *, ipv6: bool = True, mtu: int | None = None) -> None:
    """Build the bed into the empty test bed ``tb``."""
    tb.namespace(SWITCH_NS)
    for ns, (host_if, port, n) in HOSTS.items():
        tb.namespace(ns)
        tb.veth(ns, host_if, SWITCH_NS, port,
                macs=(mac(n), f"02:5f:00:00:10:{n:02x}"), mtu=mtu)
        if not ipv6:
            tb.sysctl(ns, f"net.ipv6.conf.{host_if}.disable_ipv6", "1")
        tb.exec(ns, ["ip", "addr", "add", f"{v4(n)}/24", "dev", host_if])
        if ipv6:
            tb.exec(ns, ["ip", "addr", "add", f"{v6(n)}/64", "dev", host_if, "nodad"])
        tb.set_gro(ns, host_if, True)
        tb.call(ns, set_tx_checksum, host_if, False)


def send_frame(ifname: str, frame: bytes) -> None:
    """Send one raw Ethernet frame out of ``ifname`` (calling thread's namespace)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.bind((ifname, 0))
        s.send(frame)


class Capture:
    """Frames received on ``ifname`` (not the ones it sends), with any 802.1Q tag the
    stack moved into metadata put back in place.  Open it before the traffic, in the
    host's namespace; :meth:`frames` drains for ``timeout`` seconds."""

    def __init__(self, ifname: str) -> None:
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.s.bind((ifname, 0))

    def frames(self, timeout: float = 0.5, match: bytes | None = None) -> list[bytes]:
        """Received frames (those containing ``match``, if given)."""
        out = []
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                break
            data, anc, _, addr = self.s.recvmsg(65535, socket.CMSG_SPACE(64))
            if addr[2] == PACKET_OUTGOING:
                continue
            for level, typ, cdata in anc:
                if level == SOL_PACKET and typ == PACKET_AUXDATA:
                    status = struct.unpack_from("I", cdata, 0)[0]
                    tci, tpid = struct.unpack_from("HH", cdata, 16)
                    if status & TP_STATUS_VLAN_VALID:
                        data = (data[:12] + struct.pack("!HH", tpid or 0x8100, tci)
                                + data[12:])
            if match is None or match in data:
                out.append(data)
        return out

    def close(self) -> None:
        self.s.close()


__all__ = ["HOSTS", "PORTS", "SWITCH_NS", "Capture", "build", "mac", "send_frame", "v4", "v6"]

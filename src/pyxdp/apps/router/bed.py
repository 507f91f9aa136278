"""The router's test bed: sender - router - receiver, plus a second egress.

Namespaces ``snd``, ``rtr``, ``rcv``, ``rcv2`` (a :class:`pyxdp.testbed.Testbed`)::

    snd s0 198.18.1.2/24 2001:db8:1::2/64 -- r0 198.18.1.1 2001:db8:1::1  rtr
    rcv c0 198.18.2.2/24 2001:db8:2::2/64 -- r1 198.18.2.1 2001:db8:2::1  rtr
    rcv2 d0 198.18.3.2/24 2001:db8:3::2/64 -- r2 198.18.3.1 2001:db8:3::1 rtr

The end hosts route everything through the router; the router forwards (sysctls on).
Veth delivers redirected XDP frames only to a peer that runs NAPI, so every end host's
veth has GRO on (see :meth:`pyxdp.testbed.Testbed.set_gro`).  And a frame XDP redirects
is sent as it is: a TCP segment whose checksum the sender left to the "hardware"
(CHECKSUM_PARTIAL, veth's default) would arrive with a wrong checksum, so the end hosts
compute checksums in software (tx checksum offload off, which also turns TSO off).  On
real NICs that is the NIC's job and nothing needs changing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

from pyxdp.testbed import Testbed

HOSTS = {  # ns: (host iface, router iface, subnet number)
    "snd": ("s0", "r0", 1),
    "rcv": ("c0", "r1", 2),
    "rcv2": ("d0", "r2", 3),
}
ROUTER_NS = "rtr"
PORTS = ["r0", "r1", "r2"]


def v4(net: int, host: int) -> str:
    return f"198.18.{net}.{host}"


def v6(net: int, host: int) -> str:
    return f"2001:db8:{net}::{host}"


ETHTOOL_STXCSUM = 0x17
SIOCETHTOOL = 0x8946


def set_tx_checksum(ifname: str, on: bool) -> None:
    """tx checksum offload on/off (``ethtool -K IF tx on|off``) in the calling thread's
    namespace."""
    import ctypes
    import fcntl

    val = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, int(on)))
    ifr = bytearray(struct.pack("16sQ", ifname.encode(), ctypes.addressof(val)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)


def build(tb: Testbed, *, mtu: int | None = None) -> None:
    """Build the bed into the empty test bed ``tb``."""
    tb.namespace(ROUTER_NS)
    for ns, (host_if, rtr_if, n) in HOSTS.items():
        tb.namespace(ns)
        tb.veth(ns, host_if, ROUTER_NS, rtr_if, ipv4=(f"{v4(n, 2)}/24", f"{v4(n, 1)}/24"),
                ipv6=(f"{v6(n, 2)}/64", f"{v6(n, 1)}/64"), mtu=mtu)
        tb.exec(ns, ["ip", "route", "add", "198.18.0.0/15", "via", v4(n, 1)])
        tb.exec(ns, ["ip", "-6", "route", "add", "2001:db8::/32", "via", v6(n, 1)])
        tb.set_gro(ns, host_if, True)
        tb.call(ns, set_tx_checksum, host_if, False)
    tb.sysctl(ROUTER_NS, "net.ipv4.ip_forward", "1")
    tb.sysctl(ROUTER_NS, "net.ipv6.conf.all.forwarding", "1")


@dataclass(frozen=True)
class Icmp:
    """One ICMP/ICMPv6 message received in answer to :func:`ping`."""

    type: int
    code: int
    src: str

    @property
    def is_reply(self) -> bool:
        return self.type in (0, 129)

    @property
    def is_time_exceeded(self) -> bool:
        return self.type in (11, 3) and self.code == 0


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ping(dst: str, *, ttl: int = 64, count: int = 1, timeout: float = 2.0,
         size: int = 56) -> list[Icmp]:
    """Echo requests to ``dst`` from the calling thread's namespace (raw socket; run it
    with ``tb.call(ns, ping, ...)``); returns the answers that belong to them: echo replies
    and errors (time exceeded...) quoting our identifier."""
    v6 = ipaddress.ip_address(dst).version == 6
    fam, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET,
                                                                       socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF ^ (time.monotonic_ns() & 0xFFFF)
    out: list[Icmp] = []
    with socket.socket(fam, socket.SOCK_RAW, proto) as s:
        if v6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        else:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        for seq in range(count):
            body = bytes(range(size % 256)) * (size // 256) + bytes(range(size % 256))
            hdr = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq)
            msg = hdr + body[:size]
            if not v6:                       # the kernel fills ICMPv6 checksums
                msg = msg[:2] + struct.pack("!H", _csum(msg)) + msg[4:]
            s.sendto(msg, (dst, 0))
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                r, _, _ = select.select([s], [], [], max(0.0, end - time.monotonic()))
                if not r:
                    break
                data, addr = s.recvfrom(65535)
                icmp = data if v6 else data[(data[0] & 0xF) * 4:]
                typ, code = icmp[0], icmp[1]
                if typ in (0, 129):
                    rid, rseq = struct.unpack_from("!HH", icmp, 4)
                    if rid == ident and rseq == seq:
                        out.append(Icmp(typ, code, addr[0]))
                        break
                elif typ in (3, 11, 1, 2):
                    # error: our request is quoted after the 8-byte ICMP header
                    inner = icmp[8:]
                    off = 40 if v6 else (inner[0] & 0xF) * 4 if inner else 0
                    quoted = (struct.unpack_from("!H", inner, off + 4)[0]
                              if len(inner) >= off + 8 else None)
                    if quoted == ident:
                        out.append(Icmp(typ, code, addr[0]))
                        break
    return out


def tcp_server(addr: str, port: int) -> socket.socket:
    """A listening socket in the calling thread's namespace."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(20)
    return s


def tcp_receive(listener: socket.socket) -> tuple[int, str]:
    """Accept one connection, read to EOF: (bytes, sha256 hex)."""
    with listener:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(20)
            h = hashlib.sha256()
            n = 0
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
    return n, h.hexdigest()


def tcp_send(addr: str, port: int, data: bytes) -> None:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect((addr, port))
        s.sendall(data)


__all__ = ["HOSTS", "PORTS", "ROUTER_NS", "Icmp", "build", "ping", "set_tx_checksum", "tcp_receive",
           "tcp_send", "tcp_server", "v4", "v6"]

"""The load balancer's packet corpus: frames in, and the frames that must come out, built
with scapy by the layouts the RFCs give (RFC 2003 IPIP, RFC 2473 IPv6-in-IPv6, RFC 4213
4in6/6in4, draft-ietf-intarea-gue variant 0 and 1, IPVS-DR style direct return), never by
running the balancer.  ``tests/kernel/test_lb_dataplane.py`` runs every case through the
emulator and the kernel and compares both with the expected frame.

The bed the corpus assumes: the LB's port ``l0`` (MAC ``LB_MAC``, 198.18.10.1 and
2001:db8:10::1), reals on-link at 198.18.10.11-13 and 2001:db8:10::11-13, clients behind
198.18.10.2 / 2001:db8:10::2.  Services (one real each, so the expected real is known;
the Maglev spread has tests of its own): see ``SERVICES``.
"""

from __future__ import annotations

from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

LB_MAC = "02:1b:00:00:00:01"
CLIENT_MAC = "02:1c:00:00:00:02"
REAL_MAC = {f"198.18.10.1{i}": f"02:1e:00:00:00:1{i}" for i in (1, 2, 3)} | {
    f"2001:db8:10::1{i}": f"02:1e:00:00:00:1{i}" for i in (1, 2, 3)}
SRC4, SRC6 = "198.18.10.1", "2001:db8:10::1"
GUE_PORT = 6080

# (vip, port, proto, method, real, gue variant)
SERVICES = [
    ("198.18.100.1", 80, "tcp", "ipip", "198.18.10.11", 1),
    ("198.18.100.2", 80, "tcp", "gue", "198.18.10.12", 1),
    ("198.18.100.3", 80, "tcp", "dsr", "198.18.10.13", 1),
    ("198.18.100.4", 0, "udp", "ipip", "198.18.10.11", 1),       # all ports
    ("198.18.100.5", 53, "udp", "ipip", "2001:db8:10::11", 1),   # 4in6
    ("198.18.100.6", 443, "tcp", "gue", "198.18.10.12", 0),      # GUE variant 0
    ("2001:db8:100::1", 80, "tcp", "ipip", "2001:db8:10::11", 1),
    ("2001:db8:100::2", 80, "tcp", "gue", "2001:db8:10::12", 1),
    ("2001:db8:100::3", 80, "tcp", "dsr", "2001:db8:10::13", 1),
    ("2001:db8:100::4", 53, "udp", "ipip", "198.18.10.11", 1),     # 6in4
]


def client4(dst: str, dport: int, proto: str = "tcp", size: int = 32, **ip: Any) -> Any:
    l4 = TCP(sport=40000, dport=dport, flags="S", seq=1) if proto == "tcp" else UDP(
        sport=40000, dport=dport)
    return IP(src="198.19.7.7", dst=dst, ttl=60, id=99, flags="DF", **ip) / l4 / Raw(
        b"c" * size)


def client6(dst: str, dport: int, proto: str = "tcp", size: int = 32) -> Any:
    l4 = TCP(sport=40000, dport=dport, flags="S", seq=1) if proto == "tcp" else UDP(
        sport=40000, dport=dport)
    return IPv6(src="2001:db8:77::7", dst=dst, hlim=60) / l4 / Raw(b"c" * size)


def frame(inner: Any) -> Any:
    return Ether(src=CLIENT_MAC, dst=LB_MAC) / inner


def encap(inner: Any, real: str, method: str, h: int, variant: int) -> Any:
    """What the LB sends to ``real`` for ``inner`` (``h``: the flow hash)."""
    e = Ether(src=LB_MAC, dst=REAL_MAC[real])
    if method == "dsr":
        return e / inner
    v6_in = inner.version == 6
    ttl = inner.hlim if v6_in else inner.ttl
    if ":" in real:
        outer = IPv6(src=SRC6, dst=real, hlim=ttl, tc=0, fl=h & 0xFFFFF)
        outer.nh = 17 if method == "gue" else (41 if v6_in else 4)
    else:
        outer = IP(src=SRC4, dst=real, ttl=ttl, id=0, flags="DF", tos=0)
        outer.proto = 17 if method == "gue" else (41 if v6_in else 4)
    if method == "gue":
        u = UDP(sport=0xC000 | (h & 0x3FFF), dport=GUE_PORT, chksum=0)
        if variant == 0:
            return e / outer / u / Raw(bytes([0, 41 if v6_in else 4, 0, 0])) / inner
        return e / outer / u / inner
    return e / outer / inner


def forward_cases() -> list[tuple[str, Any, int, str]]:
    """(case, inner packet from a client, service index, real): forwarded."""
    out = []
    for i, (vip, port, proto, method, real, _) in enumerate(SERVICES):
        mk = client6 if ":" in vip else client4
        dport = port or 5353
        out.append((f"{method} {vip}:{port}/{proto} -> {real}", mk(vip, dport, proto), i, real))
    return out


def pass_cases() -> list[tuple[str, Any, str]]:
    """(case, frame, the reason it is left to the stack)."""
    return [
        ("not a VIP", frame(client4("198.18.10.1", 80)), "not_vip"),
        ("VIP, other port", frame(client4("198.18.100.1", 81)), "not_vip"),
        ("VIP, other protocol", frame(client4("198.18.100.1", 80, "udp")), "not_vip"),
        ("IPv4 fragment", frame(IP(src="198.19.7.7", dst="198.18.100.1", flags="MF", id=5)
                                / TCP(sport=40000, dport=80) / Raw(b"x" * 16)), "fragment"),
        ("later fragment", frame(IP(src="198.19.7.7", dst="198.18.100.1", frag=4, proto=6)
                                 / Raw(b"x" * 16)), "fragment"),
        ("IPv4 options", frame(client4("198.18.100.1", 80, options=b"\x01\x01\x01\x00")),
         "options"),
        ("IPv6 extension header", frame(IPv6(src="2001:db8:77::7", dst="2001:db8:100::1",
                                             nh=0) / Raw(b"\x06\x00" + b"\x01\x04" + bytes(4)
                                                         + bytes(TCP(sport=1, dport=80)))),
         "options"),
        ("ARP", Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff", type=0x0806) / Raw(b"a" * 28),
         "not_ip"),
        ("truncated TCP", frame(IP(src="198.19.7.7", dst="198.18.100.1", proto=6)
                                / Raw(b"\x00" * 6)), "malformed"),
    ]


__all__ = ["CLIENT_MAC", "GUE_PORT", "LB_MAC", "REAL_MAC", "SERVICES", "SRC4", "SRC6",
           "client4", "client6", "encap", "forward_cases", "frame", "pass_cases"]

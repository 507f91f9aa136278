"""Template frames for the generator: UDP, TCP SYN and ICMP over IPv4 or IPv6, any size."""

from __future__ import annotations

from pyxdp.packets import build
from pyxdp.trafficgen._program import TemplateError

PROTOS = ("udp", "tcp-syn", "icmp")
MIN_FRAME = 60   # 64 bytes on the wire with the FCS the NIC adds
MAX_FRAME = 3818  # one page minus the live-frames headroom and skb_shared_info


def template(proto: str = "udp", *, family: int = 4, src: str | None = None,
             dst: str | None = None, smac: str = "02:00:00:00:00:01",
             dmac: str = "02:00:00:00:00:02", sport: int = 1024, dport: int = 9,
             size: int = MIN_FRAME) -> bytes:
    """One frame of exactly ``size`` bytes (padded with zero payload), checksums filled."""
    if proto not in PROTOS:
        raise TemplateError(f"unknown protocol {proto!r}: use one of {', '.join(PROTOS)}")
    if family not in (4, 6):
        raise TemplateError(f"family must be 4 or 6, not {family}")
    src = src or ("198.18.0.1" if family == 4 else "2001:db8::1")
    dst = dst or ("198.18.0.2" if family == 4 else "2001:db8::2")
    l3 = 20 if family == 4 else 40
    l4 = {"udp": 8, "tcp-syn": 20, "icmp": 8}[proto]
    pad = size - 14 - l3 - l4
    if pad < 0 or size > MAX_FRAME:
        raise TemplateError(f"a {proto} over IPv{family} frame needs {14 + l3 + l4}.."
                            f"{MAX_FRAME} bytes, not {size}")
    payload = bytes(pad)
    if proto == "udp":
        seg = build.udp(payload, sport=sport, dport=dport)
    elif proto == "tcp-syn":
        seg = build.tcp(payload, sport=sport, dport=dport, flags="S")
    else:
        seg = build.icmp(payload, v6=family == 6)
    ip = build.ipv4(seg, src=src, dst=dst) if family == 4 else build.ipv6(seg, src=src, dst=dst)
    return build.ethernet(ip, src=smac, dst=dmac)

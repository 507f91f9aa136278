"""Tiny builders for test frames with correct checksums, using ``struct`` only.

Builders nest from the inside out: ``ethernet(ipv4(udp(payload, dport=53)))``.  A transport
builder returns a :class:`Segment` (header + payload without a checksum yet); the IP
builder that wraps it knows the addresses, so it fills the pseudo-header checksum then.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58


def checksum(data: bytes, start: int = 0) -> int:
    """The Internet checksum (RFC 1071) of ``data``, folded and complemented."""
    if len(data) % 2:
        data += b"\0"
    total = start + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return bytes(int(x, 16) for x in value.split(":"))


@dataclass(frozen=True)
class Segment:
    """A transport header + payload whose checksum needs the IP pseudo-header."""

    proto: int
    data: bytes
    csum_offset: int | None   # where the checksum goes, None for none

    def finish(self, pseudo: bytes) -> bytes:
        if self.csum_offset is None:
            return self.data
        csum = checksum(pseudo + self.data)
        if self.proto == IPPROTO_UDP and csum == 0:
            csum = 0xFFFF
        o = self.csum_offset
        return self.data[:o] + struct.pack("!H", csum) + self.data[o + 2:]


def udp(payload: bytes = b"", sport: int = 1024, dport: int = 53) -> Segment:
    hdr = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return Segment(IPPROTO_UDP, hdr + payload, 6)


def tcp(payload: bytes = b"", sport: int = 1024, dport: int = 80, seq: int = 0, ack: int = 0,
        flags: str = "S", window: int = 65535) -> Segment:
    bits = sum(1 << i for i, f in enumerate("FSRPAUEC") if f in flags)
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, bits, window, 0, 0)
    return Segment(IPPROTO_TCP, hdr + payload, 16)


def icmp(payload: bytes = b"", type: int = 8, code: int = 0, ident: int = 0, seq: int = 0,
         v6: bool = False) -> Segment:
    """ICMP echo (request by default); ``v6=True`` makes ICMPv6 (pseudo-header checksum)."""
    hdr = struct.pack("!BBHHH", type, code, 0, ident, seq)
    if v6:
        return Segment(IPPROTO_ICMPV6, hdr + payload, 2)
    data = hdr + payload
    csum = checksum(data)
    return Segment(IPPROTO_ICMP, data[:2] + struct.pack("!H", csum) + data[4:], None)


def ipv4(inner: Segment | bytes, src: str = "192.0.2.1", dst: str = "192.0.2.2",
         ttl: int = 64, proto: int | None = None, ident: int = 0, tos: int = 0,
         flags_frag: int = 0x4000) -> bytes:
    """An IPv4 packet (no options) with header and transport checksums filled in."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    if isinstance(inner, Segment):
        proto = inner.proto if proto is None else proto
        body = inner.finish(s + d + struct.pack("!BBH", 0, inner.proto, len(inner.data)))
    else:
        body = inner
        proto = proto or 0
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(body), ident, flags_frag, ttl,
                      proto, 0, s, d)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + body


def ipv6(inner: Segment | bytes, src: str = "2001:db8::1", dst: str = "2001:db8::2",
         hop_limit: int = 64, next_header: int | None = None) -> bytes:
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    if isinstance(inner, Segment):
        nh = inner.proto if next_header is None else next_header
        body = inner.finish(s + d + struct.pack("!I3xB", len(inner.data), inner.proto))
    else:
        body = inner
        nh = 59 if next_header is None else next_header
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(body), nh, hop_limit, s, d)
    return hdr + body


def ethernet(payload: bytes, src: str | bytes = "02:00:00:00:00:01",
             dst: str | bytes = "02:00:00:00:00:02", ethertype: int | None = None,
             vlan: int | None = None) -> bytes:
    """An Ethernet II frame; the ethertype is guessed from the IP version when omitted."""
    if ethertype is None:
        ethertype = ETH_P_IPV6 if payload[:1] and payload[0] >> 4 == 6 else ETH_P_IP
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return _mac(dst) + _mac(src) + tag + struct.pack("!H", ethertype) + payload

"""Test-packet builders and the classic pcap reader/writer."""

from __future__ import annotations

import io
import struct

import pytest

from pyxdp.packets import PcapError, PcapPacket, checksum, read_pcap, write_pcap
from pyxdp.packets.build import ethernet, icmp, ipv4, ipv6, tcp, udp


def test_ipv4_udp_checksums_verify() -> None:
    frame = ethernet(ipv4(udp(b"data", sport=1, dport=2), src="10.0.0.1", dst="10.0.0.2"))
    assert frame[12:14] == b"\x08\x00"
    ip = frame[14:34]
    assert checksum(ip) == 0
    seg = frame[34:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(seg))
    assert checksum(pseudo + seg) == 0
    assert struct.unpack("!HH", seg[:4]) == (1, 2)


def test_tcp_and_icmp_checksums_verify() -> None:
    pkt = ipv4(tcp(b"x", flags="SA"))
    pseudo = pkt[12:20] + struct.pack("!BBH", 0, 6, len(pkt) - 20)
    assert checksum(pseudo + pkt[20:]) == 0
    assert pkt[20 + 13] == 0x12
    echo = ipv4(icmp(b"ping"))
    assert checksum(echo[20:]) == 0


def test_ipv6_udp_and_ethertype() -> None:
    frame = ethernet(ipv6(udp(b"q")))
    assert frame[12:14] == b"\x86\xdd"
    ip = frame[14:54]
    seg = frame[54:]
    pseudo = ip[8:40] + struct.pack("!I3xB", len(seg), 17)
    assert checksum(pseudo + seg) == 0


@pytest.mark.parametrize("nsec", [False, True])
def test_pcap_round_trip(nsec: bool) -> None:
    buf = io.BytesIO()
    pkts = [PcapPacket(b"abc", 1_500_000_000_123_456_000), PcapPacket(b"\x00" * 60, 5)]
    assert write_pcap(buf, pkts, nanoseconds=nsec) == 2
    got = list(read_pcap(buf.getvalue()))
    assert [p.data for p in got] == [b"abc", b"\x00" * 60]
    assert got[0].timestamp_ns == 1_500_000_000_123_456_000
    assert got[1].timestamp_ns == (5 if nsec else 0)


def test_pcap_big_endian_is_read() -> None:
    hdr = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack(">IIII", 1, 2, 3, 3) + b"xyz"
    (pkt,) = read_pcap(hdr + rec)
    assert pkt.data == b"xyz" and pkt.timestamp_ns == 1_000_002_000


@pytest.mark.parametrize("blob", [b"", b"\x00" * 24, struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"\x01\x02",
                                  struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 100, 100)])
def test_malformed_pcap_raises_pcap_error(blob: bytes) -> None:
    with pytest.raises(PcapError):
        list(read_pcap(blob))
    assert issubclass(PcapError, ValueError)

"""A pcapng writer (and the small reader its tests need): section header, one interface
description per interface, enhanced packet blocks with a comment and flags.

What ``pyxdp dump`` writes: each packet carries its XDP verdict in the packet's comment
(``verdict=DROP ifindex=3``, shown by Wireshark/tshark as ``frame.comment``) and its
direction in ``epb_flags`` (inbound).  Little-endian, microsecond timestamps (the
default ``if_tsresol``).  Block layout per the pcapng specification (IETF draft
draft-ietf-opsawg-pcapng).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET = 1
OPT_END, OPT_COMMENT = 0, 1
IF_NAME = 2
EPB_FLAGS = 2
EPB_INBOUND = 0x1


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Writes to a binary stream; interfaces get ids in the order first seen."""

    def __init__(self, out: BinaryIO, snaplen: int = 65535) -> None:
        self.out = out
        self.snaplen = snaplen
        self.ifaces: dict[int, int] = {}
        shb = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _opt(OPT_END, b"")
        self.out.write(_block(SHB, shb))

    def _iface(self, ifindex: int, name: str | None) -> int:
        if ifindex not in self.ifaces:
            opts = _opt(IF_NAME, (name or f"ifindex{ifindex}").encode()) + _opt(OPT_END, b"")
            self.out.write(_block(IDB, struct.pack("<HHI", LINKTYPE_ETHERNET, 0,
                                                   self.snaplen) + opts))
            self.ifaces[ifindex] = len(self.ifaces)
        return self.ifaces[ifindex]

    def write(self, data: bytes, *, time_us: int, orig_len: int, ifindex: int = 0,
              ifname: str | None = None, comment: str = "", inbound: bool = True) -> None:
        iid = self._iface(ifindex, ifname)
        opts = b""
        if comment:
            opts += _opt(OPT_COMMENT, comment.encode())
        if inbound:
            opts += _opt(EPB_FLAGS, struct.pack("<I", EPB_INBOUND))
        if opts:
            opts += _opt(OPT_END, b"")
        body = struct.pack("<IIIII", iid, time_us >> 32, time_us & 0xFFFFFFFF, len(data),
                           orig_len) + _pad(data) + opts
        self.out.write(_block(EPB, body))

    def flush(self) -> None:
        self.out.flush()


@dataclass(frozen=True)
class PcapngPacket:
    interface: int
    time_us: int
    data: bytes
    orig_len: int
    comment: str


def read_pcapng(data: bytes) -> Iterator[PcapngPacket]:
    """The enhanced packet blocks of a little-endian pcapng file written as above."""
    pos = 0
    while pos + 12 <= len(data):
        btype, total = struct.unpack_from("<II", data, pos)
        if total < 12 or pos + total > len(data):
            raise ValueError(f"pcapng block at {pos}: bad length {total}")
        if btype == EPB:
            iid, hi, lo, cap, orig = struct.unpack_from("<IIIII", data, pos + 8)
            start = pos + 28
            pkt = data[start:start + cap]
            opt = start + cap + (-cap % 4)
            comment = ""
            while opt + 4 <= pos + total - 4:
                code, length = struct.unpack_from("<HH", data, opt)
                if code == OPT_END:
                    break
                if code == OPT_COMMENT:
                    comment = data[opt + 4:opt + 4 + length].decode()
                opt += 4 + length + (-length % 4)
            yield PcapngPacket(iid, hi << 32 | lo, pkt, orig, comment)
        pos += total


__all__ = ["PcapngPacket", "PcapngWriter", "read_pcapng"]

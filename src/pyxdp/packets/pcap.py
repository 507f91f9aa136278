"""Classic pcap files (not pcapng): read either byte order and either timestamp unit,
write little-endian microsecond or nanosecond files.

Malformed input raises :class:`PcapError` (a ``ValueError``) saying what and where, never a
bare ``struct.error``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pyxdp.errors import PyxdpError

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
_GLOBAL = "IHHiIII"
_RECORD = "IIII"


class PcapError(PyxdpError, ValueError):
    """A file that is not a valid classic pcap file."""


@dataclass(frozen=True)
class PcapPacket:
    data: bytes
    timestamp_ns: int = 0
    orig_len: int | None = None   # on-wire length when the capture was truncated


def _open(src: str | Path | bytes | BinaryIO) -> bytes:
    if isinstance(src, bytes | bytearray):
        return bytes(src)
    if isinstance(src, str | Path):
        return Path(src).read_bytes()
    return src.read()


def read_pcap(src: str | Path | bytes | BinaryIO) -> Iterator[PcapPacket]:
    """Packets of a classic pcap file (path, bytes or binary file object)."""
    data = _open(src)
    if len(data) < 24:
        raise PcapError(f"file too short for a pcap header ({len(data)} bytes)")
    for order in "<>":
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (MAGIC_USEC, MAGIC_NSEC):
            break
    else:
        raise PcapError(f"bad pcap magic {data[:4].hex()} (pcapng is not supported)")
    scale = 1 if magic == MAGIC_NSEC else 1000
    _, major, _minor, _tz, _sig, snaplen, _link = struct.unpack_from(order + _GLOBAL, data)
    if major != 2:
        raise PcapError(f"unsupported pcap version {major}")
    pos = 24
    rec = struct.Struct(order + _RECORD)
    while pos < len(data):
        if pos + rec.size > len(data):
            raise PcapError(f"truncated record header at byte {pos}")
        sec, frac, incl, orig = rec.unpack_from(data, pos)
        pos += rec.size
        if incl > max(snaplen, 262144) or pos + incl > len(data):
            raise PcapError(f"record at byte {pos - rec.size} claims {incl} bytes, "
                            f"{len(data) - pos} remain")
        yield PcapPacket(data[pos:pos + incl], sec * 1_000_000_000 + frac * scale,
                         orig if orig != incl else None)
        pos += incl


def write_pcap(dst: str | Path | BinaryIO, packets: Iterable[bytes | PcapPacket],
               nanoseconds: bool = False, snaplen: int = 262144,
               linktype: int = LINKTYPE_ETHERNET) -> int:
    """Write ``packets`` as a little-endian pcap file; returns how many were written."""
    magic = MAGIC_NSEC if nanoseconds else MAGIC_USEC
    out = [struct.pack("<" + _GLOBAL, magic, 2, 4, 0, 0, snaplen, linktype)]
    n = 0
    for p in packets:
        pkt = p if isinstance(p, PcapPacket) else PcapPacket(bytes(p))
        sec, ns = divmod(pkt.timestamp_ns, 1_000_000_000)
        frac = ns if nanoseconds else ns // 1000
        body = pkt.data[:snaplen]
        orig = pkt.orig_len if pkt.orig_len is not None else len(pkt.data)
        out.append(struct.pack("<" + _RECORD, sec, frac, len(body), orig) + body)
        n += 1
    blob = b"".join(out)
    if isinstance(dst, str | Path):
        Path(dst).write_bytes(blob)
    else:
        dst.write(blob)
    return n

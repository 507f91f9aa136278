"""Reading a BPF ring buffer (``BPF_MAP_TYPE_RINGBUF``) from user space, libbpf's way.

The map is mmap()ed twice: the consumer position page read-write at offset 0, and the
producer position page followed by the data area *mapped twice in a row* read-only at
offset ``PAGE_SIZE`` (so a record that wraps around the end is still contiguous).  A
record is an 8-byte header (u32 length with the BUSY and DISCARD bits, u32 page offset)
and the data, padded to 8 bytes.  The consumer reads the producer position, walks the
records until one is still BUSY, then publishes its new position.

Ordering: the kernel writes a record before clearing BUSY (with release semantics) and
the producer position after; we read the producer position before the headers.  On x86
(TSO) plain loads keep that order; Python gives no acquire loads, so on weaker memory
models (arm64) a record could in principle be seen before its data: pyxdp's users here run
x86_64, and the length check below refuses a torn header rather than returning garbage.
"""

from __future__ import annotations

import mmap
import struct

from pyxdp.abi import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ
from pyxdp.errors import MapError

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class RingBufReader:
    """Consumes the records of one ring buffer map (owns two mappings; ``close()``)."""

    def __init__(self, fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise MapError(f"ring buffer size {size} is not a power-of-two number of pages")
        page = mmap.PAGESIZE
        self.size = size
        self.mask = size - 1
        self._cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                               offset=0)
        try:
            self._prod = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=page)
        except BaseException:
            self._cons.close()
            raise
        self._data = memoryview(self._prod)[page:]

    def drain(self, limit: int | None = None) -> list[bytes]:
        """Every submitted record (at most ``limit``), oldest first; discarded records are
        skipped, and a record still being written ends the walk (it is read next time)."""
        out: list[bytes] = []
        cons = _U64.unpack_from(self._cons, 0)[0]
        prod = _U64.unpack_from(self._prod, 0)[0]
        while cons < prod and (limit is None or len(out) < limit):
            off = cons & self.mask
            head = _U32.unpack_from(self._data, off)[0]
            if head & BPF_RINGBUF_BUSY_BIT:
                break
            length = head & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
            if length > self.size - BPF_RINGBUF_HDR_SZ:
                raise MapError(f"ring buffer record at {cons} claims {length} bytes")
            if not head & BPF_RINGBUF_DISCARD_BIT:
                start = off + BPF_RINGBUF_HDR_SZ
                out.append(bytes(self._data[start:start + length]))
            cons += (length + BPF_RINGBUF_HDR_SZ + 7) & ~7
            _U64.pack_into(self._cons, 0, cons)
        return out

    def close(self) -> None:
        self._data.release()
        self._prod.close()
        self._cons.close()


__all__ = ["RingBufReader"]

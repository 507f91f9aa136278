"""The four AF_XDP rings, mmap'd from the socket and driven through memoryviews.

Each ring is a power-of-two array of slots with a free-running 32-bit producer and consumer
index (``index & mask`` is the slot).  The side that produces writes slots, then stores the
producer index; the side that consumes loads the producer index, reads the slots, then
stores the consumer index.  The kernel pairs those with ``smp_load_acquire`` /
``smp_store_release`` on its side (net/xdp/xsk_queue.h).

Memory ordering from Python: every index load/store here is one aligned 32-bit access
through a memoryview (a plain C load/store in CPython).  On x86-64 the hardware is TSO:
stores are not reordered with older stores and loads not with older loads, so "write slots,
then store producer" and "load producer, then read slots" keep their order without a fence,
and a compiler cannot move those accesses across the interpreter's opaque calls between two
Python statements.  On arm64 (or any weakly ordered CPU) the user side needs acquire/release
(``ldar``/``stlr`` or ``dmb``), which Python cannot express; rather than risk reading a
half-written descriptor, :func:`check_platform` refuses to run anywhere but x86-64.
"""

from __future__ import annotations

import mmap
import platform

from pyxdp.errors import PyxdpError

MASK32 = 0xFFFFFFFF
ORDERED_MACHINES = ("x86_64", "amd64", "AMD64")


class XskError(PyxdpError, OSError):
    """An AF_XDP operation that cannot be done, with the reason spelled out."""

    def __init__(self, message: str, err: int = 22) -> None:
        OSError.__init__(self, err, message)

    def __str__(self) -> str:
        return str(self.strerror)


def check_platform() -> None:
    m = platform.machine()
    if m not in ORDERED_MACHINES:
        raise XskError(f"pyxdp.afxdp drives the rings with plain loads and stores, which is"
                       f" only correct on x86-64 (TSO); this machine is {m!r}, where the ring"
                       " protocol needs acquire/release barriers that Python cannot issue")


class Ring:
    """One mmap'd ring: ``entry`` is 8 (fill/completion: u64 addr) or 16 (rx/tx: xdp_desc).

    ``words`` is the slot area as unsigned 64-bit words (an rx/tx slot is two words: addr,
    then ``len | options << 32``); ``producer``/``consumer``/``flags`` are one-element u32
    views of the shared indexes.
    """

    def __init__(self, fd: int, pgoff: int, offsets: tuple[int, ...], size: int,
                 entry: int, name: str) -> None:
        prod, cons, desc, flags = offsets
        self.name = name
        self.size = size
        self.mask = size - 1
        self.entry = entry
        self.map = mmap.mmap(fd, desc + size * entry, mmap.MAP_SHARED | mmap.MAP_POPULATE,
                             mmap.PROT_READ | mmap.PROT_WRITE, offset=pgoff)
        mv = memoryview(self.map)
        self.producer = mv[prod:prod + 4].cast("I")
        self.consumer = mv[cons:cons + 4].cast("I")
        self.flags = mv[flags:flags + 4].cast("I")
        self.raw = mv[desc:desc + size * entry]
        self.words = self.raw.cast("Q")
        self._views: tuple[memoryview, ...] = (mv, self.producer, self.consumer, self.flags,
                                                self.raw, self.words)

    @property
    def need_wakeup(self) -> bool:
        return bool(self.flags[0] & 1)

    def pending(self) -> int:
        """Entries produced and not consumed yet."""
        return (self.producer[0] - self.consumer[0]) & MASK32

    def free(self) -> int:
        """Slots a producer may fill now."""
        return self.size - self.pending()

    def close(self) -> None:
        for v in reversed(self._views):
            v.release()
        self._views = ()
        self.map.close()

    def __repr__(self) -> str:
        return (f"<Ring {self.name} size={self.size} producer={self.producer[0]}"
                f" consumer={self.consumer[0]}>")


def spans(start: int, n: int, mask: int) -> list[tuple[int, int]]:
    """The one or two contiguous slot ranges ``[a, b)`` covering ``n`` slots from ``start``."""
    a = start & mask
    size = mask + 1
    if a + n <= size:
        return [(a, a + n)]
    return [(a, size), (0, n - (size - a))]


def copy_slots(dst: Ring, dst_start: int, dst_stride: int, src: Ring, src_start: int,
               src_stride: int, n: int) -> None:
    """Copy ``n`` u64 words (addresses) from ``src`` slots to ``dst`` slots, wrap-aware.

    A stride of 2 addresses the ``addr`` word of a 16-byte descriptor, 1 a u64 slot.  Done
    with memoryview slice assignments: at most four C-level copies, no per-frame object.
    """
    done = 0
    while done < n:
        sa = (src_start + done) & src.mask
        da = (dst_start + done) & dst.mask
        k = min(n - done, src.size - sa, dst.size - da)
        dw, sw = dst.words, src.words
        if dst_stride == 1 and src_stride == 1:
            dw[da:da + k] = sw[sa:sa + k]
        else:
            dw[da * dst_stride:(da + k) * dst_stride:dst_stride] = \
                sw[sa * src_stride:(sa + k) * src_stride:src_stride]
        done += k


def copy_descs(dst: Ring, dst_start: int, src: Ring, src_start: int, n: int) -> None:
    """Copy ``n`` whole 16-byte descriptors (rx -> tx: forward unchanged), wrap-aware."""
    done = 0
    while done < n:
        sa = (src_start + done) & src.mask
        da = (dst_start + done) & dst.mask
        k = min(n - done, src.size - sa, dst.size - da)
        dst.raw[da * 16:(da + k) * 16] = src.raw[sa * 16:(sa + k) * 16]
        done += k

"""UMEM and AF_XDP sockets: registration, rings, bind, statistics, batch and per-packet I/O."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import select
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pyxdp.abi import (
    AF_XDP,
    SOCKADDR_XDP_FMT,
    SOL_XDP,
    XDP_COPY,
    XDP_MMAP_OFFSETS,
    XDP_OPTIONS,
    XDP_OPTIONS_ZEROCOPY,
    XDP_PACKET_HEADROOM,
    XDP_PGOFF_RX_RING,
    XDP_PGOFF_TX_RING,
    XDP_RX_RING,
    XDP_SHARED_UMEM,
    XDP_STATISTICS,
    XDP_STATISTICS_FIELDS,
    XDP_TX_RING,
    XDP_UMEM_COMPLETION_RING,
    XDP_UMEM_FILL_RING,
    XDP_UMEM_MIN_CHUNK_SIZE,
    XDP_UMEM_PGOFF_COMPLETION_RING,
    XDP_UMEM_PGOFF_FILL_RING,
    XDP_UMEM_REG,
    XDP_UMEM_REG_FMT,
    XDP_USE_NEED_WAKEUP,
    XDP_ZEROCOPY,
)
from pyxdp.afxdp._ring import MASK32, Ring, XskError, check_platform, copy_descs, copy_slots

PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_KICK_OK = (errno.EAGAIN, errno.EBUSY, errno.ENOBUFS, errno.ENETDOWN)
MODES = ("auto", "copy", "zerocopy")
BUSY_RETRY_SECONDS = 1.0


def _pow2(n: int, what: str, lo: int = 1, hi: int = 1 << 20) -> int:
    if not isinstance(n, int) or n < lo or n > hi or n & (n - 1):
        raise XskError(f"{what} must be a power of two in {lo}..{hi}, not {n!r}")
    return n


@dataclass(frozen=True)
class XskStats:
    """``XDP_STATISTICS``: frames the kernel could not deliver, and why."""

    rx_dropped: int = 0
    rx_invalid_descs: int = 0
    tx_invalid_descs: int = 0
    rx_ring_full: int = 0
    rx_fill_ring_empty_descs: int = 0
    tx_ring_empty_descs: int = 0

    @property
    def rx_lost(self) -> int:
        """Frames redirected to the socket that never reached the rx ring."""
        return self.rx_dropped + self.rx_ring_full + self.rx_invalid_descs


def _new_socket() -> socket.socket:
    check_platform()
    try:
        return socket.socket(AF_XDP, socket.SOCK_RAW, 0)
    except OSError as e:
        raise XskError(f"cannot create an AF_XDP socket: {e.strerror} (kernel without"
                       " CONFIG_XDP_SOCKETS, or no CAP_NET_RAW)", e.errno or errno.EPERM
                       ) from e


def _offsets(sock: socket.socket) -> dict[str, tuple[int, ...]]:
    raw = sock.getsockopt(SOL_XDP, XDP_MMAP_OFFSETS, 128)
    if len(raw) < 128:
        raise XskError(f"XDP_MMAP_OFFSETS returned {len(raw)} bytes: kernel too old (< 5.4,"
                       " no flags word)")
    w = struct.unpack("=16Q", raw)
    return {"rx": w[0:4], "tx": w[4:8], "fill": w[8:12], "comp": w[12:16]}


def _ring_size(sock: socket.socket, opt: int, size: int, name: str) -> None:
    try:
        sock.setsockopt(SOL_XDP, opt, struct.pack("=I", size))
    except OSError as e:
        raise XskError(f"cannot size the {name} ring to {size}: {e.strerror}",
                       e.errno or errno.EINVAL) from e


class Umem:
    """A packet area of ``frame_count`` chunks of ``frame_size`` bytes, shared with the kernel.

    The area is an anonymous mmap (page aligned); it is registered (``XDP_UMEM_REG``) on the
    socket that :class:`XskSocket` later binds first, together with its fill and completion
    rings.  ``free`` holds the chunk addresses owned by userspace and in no ring.
    """

    def __init__(self, frame_count: int = 4096, frame_size: int = 4096, *, headroom: int = 0,
                 fill_size: int = 2048, comp_size: int = 2048) -> None:
        check_platform()
        if not isinstance(frame_size, int) or frame_size & (frame_size - 1) \
                or not XDP_UMEM_MIN_CHUNK_SIZE <= frame_size <= PAGE:
            raise XskError(f"UMEM chunk size {frame_size!r} is not aligned: chunks must be a"
                           f" power of two from {XDP_UMEM_MIN_CHUNK_SIZE} to the page size"
                           f" {PAGE} (aligned mode)")
        if not isinstance(frame_count, int) or frame_count < 1:
            raise XskError(f"UMEM too small: {frame_count!r} frames (need at least one)")
        self.fill_size = _pow2(fill_size, "fill ring size")
        self.comp_size = _pow2(comp_size, "completion ring size")
        if frame_count < 2:
            raise XskError(f"UMEM too small: {frame_count} frame of {frame_size} bytes; a"
                           " socket needs frames for the fill ring and for transmit")
        if not 0 <= headroom <= frame_size - XDP_PACKET_HEADROOM - 64:
            raise XskError(f"UMEM headroom {headroom} leaves no room in a {frame_size}-byte"
                           f" chunk (at most {frame_size - XDP_PACKET_HEADROOM - 64})")
        self.frame_count = frame_count
        self.frame_size = frame_size
        self.headroom = headroom
        self.size = frame_count * frame_size
        self.area = mmap.mmap(-1, self.size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                              | getattr(mmap, "MAP_POPULATE", 0))
        self.buf = memoryview(self.area)
        self._anchor = ctypes.c_char.from_buffer(self.area)
        self.addr = ctypes.addressof(self._anchor)
        self.free: list[int] = list(range(0, self.size, frame_size))
        self.sock: socket.socket | None = _new_socket()
        try:
            reg = struct.pack(XDP_UMEM_REG_FMT, self.addr, self.size, frame_size, headroom, 0, 0)
            try:
                self.sock.setsockopt(SOL_XDP, XDP_UMEM_REG, reg)
            except OSError as e:
                raise XskError(f"XDP_UMEM_REG of {self.size} bytes in {frame_size}-byte chunks"
                               f" refused: {e.strerror}", e.errno or errno.EINVAL) from e
            self.fill, self.comp = _umem_rings(self.sock, fill_size, comp_size)
        except BaseException:
            self.sock.close()
            self._release_area()
            raise
        self.owner: XskSocket | None = None
        self.broken = ""
        self.sockets: list[XskSocket] = []
        self.closed = False

    @property
    def fd(self) -> int:
        if self.owner is not None:
            return self.owner.fd
        if self.sock is None:
            raise XskError("UMEM is closed", errno.EBADF)
        return self.sock.fileno()

    def frame(self, addr: int, length: int) -> memoryview:
        """The bytes of one frame: a slice of the area, no copy."""
        return self.buf[addr:addr + length]

    def chunk_of(self, addr: int) -> int:
        return addr - addr % self.frame_size

    def take(self, n: int) -> list[int]:
        if n > len(self.free):
            raise XskError(f"UMEM has {len(self.free)} free frames, {n} wanted: make the UMEM"
                           " larger or the rings smaller", errno.ENOMEM)
        got, self.free[:] = self.free[:n], self.free[n:]
        return got

    def _release_area(self) -> None:
        # Frames (memoryview slices, numpy views) may outlive the UMEM in user code: then
        # the mapping goes when the last of them does, instead of failing the close.
        del self._anchor
        try:
            self.buf.release()
            self.area.close()
        except BufferError:
            pass

    def close(self) -> None:
        """Close every socket on this UMEM, then the area."""
        if self.closed:
            return
        self.closed = True
        for s in reversed(self.sockets):
            s.close()
        self.fill.close()
        self.comp.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._release_area()

    def __enter__(self) -> Umem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _umem_rings(sock: socket.socket, fill_size: int, comp_size: int) -> tuple[Ring, Ring]:
    _ring_size(sock, XDP_UMEM_FILL_RING, fill_size, "fill")
    _ring_size(sock, XDP_UMEM_COMPLETION_RING, comp_size, "completion")
    off = _offsets(sock)
    fill = Ring(sock.fileno(), XDP_UMEM_PGOFF_FILL_RING, off["fill"], fill_size, 8, "fill")
    comp = Ring(sock.fileno(), XDP_UMEM_PGOFF_COMPLETION_RING, off["comp"], comp_size, 8,
                "completion")
    return fill, comp


def _rx_queues(ifindex: int) -> int | None:
    """Number of rx queues (ETHTOOL_GCHANNELS), None when the driver does not say."""
    try:
        name = socket.if_indextoname(ifindex)
    except OSError:
        return None
    buf = ctypes.create_string_buffer(struct.pack("=9I", 0x3C, *([0] * 8)))
    ifr = bytearray(struct.pack("16sQ", name.encode(), ctypes.addressof(buf)))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), 0x8946, ifr)  # SIOCETHTOOL
    except OSError:
        return None
    ch = struct.unpack("=9I", buf.raw[:36])
    return max(ch[5], ch[8]) or None  # rx_count, combined_count


class XskSocket:
    """One AF_XDP socket bound to ``(iface, queue)``, with its rings mapped.

    ``mode``: ``"copy"`` (``XDP_COPY``), ``"zerocopy"`` (``XDP_ZEROCOPY``, an error when the
    driver cannot) or ``"auto"`` (the kernel chooses); :attr:`zerocopy` is what is in effect,
    read back with ``XDP_OPTIONS``.  ``umem`` None makes a private one.  Several sockets may
    share a UMEM: on the same ``(iface, queue)`` they share its fill/completion rings, on
    another device or queue each gets its own pair (``XDP_SHARED_UMEM``).
    """

    def __init__(self, iface: str | int, queue: int = 0, *, umem: Umem | None = None,
                 mode: str = "auto", need_wakeup: bool = True, rx_size: int = 2048,
                 tx_size: int = 2048, fill_frames: int | None = None) -> None:
        from pyxdp.xdp import XdpError, ifindex_of

        if mode not in MODES:
            raise XskError(f"unknown AF_XDP mode {mode!r}: use one of {', '.join(MODES)}")
        if not isinstance(queue, int) or queue < 0:
            raise XskError(f"queue must be a non-negative integer, not {queue!r}")
        _pow2(rx_size, "rx ring size")
        _pow2(tx_size, "tx ring size")
        try:
            self.ifindex = ifindex_of(iface)
        except XdpError as e:
            raise XskError(str(e), errno.ENODEV) from e
        self.iface = iface if isinstance(iface, str) else str(self.ifindex)
        nq = _rx_queues(self.ifindex)
        if nq is not None and queue >= nq:
            raise XskError(f"{self.iface} has no queue {queue}: it has {nq} rx queue"
                           f"{'s' if nq != 1 else ''} (0..{nq - 1})", errno.EINVAL)
        self.queue = queue
        self.closed = True
        own_umem = umem is None
        self.umem = umem or Umem()
        self.need_wakeup_bound = need_wakeup
        flags = {"auto": 0, "copy": XDP_COPY, "zerocopy": XDP_ZEROCOPY}[mode]
        if need_wakeup:
            flags |= XDP_USE_NEED_WAKEUP
        u = self.umem
        if u.closed or u.broken:
            raise XskError(f"this UMEM cannot take a socket: {u.broken or 'it is closed'}",
                           errno.EBADF)
        first = u.owner is None
        same_queue = first or (u.owner is not None and u.owner.ifindex == self.ifindex
                               and u.owner.queue == queue)
        # frames for the fill ring, checked before anything is bound
        n_fill = 0
        if first or not same_queue:
            size = u.fill_size
            n_fill = fill_frames if fill_frames is not None else min(size, len(u.free) // 2)
            if not 0 <= n_fill <= size:
                raise XskError(f"fill_frames {n_fill} must be 0..{size} (the fill ring size)")
            if n_fill > len(u.free):
                raise XskError(f"UMEM has {len(u.free)} free frames, {n_fill} wanted for the"
                               " fill ring: make the UMEM larger or fill_frames smaller",
                               errno.ENOMEM)
        shared_fd = 0
        if first:
            assert u.sock is not None
            sock = u.sock
        else:
            # a socket sharing a UMEM takes mode and need_wakeup from the UMEM's first
            # socket: the kernel refuses XDP_COPY/ZEROCOPY/USE_NEED_WAKEUP with SHARED_UMEM
            assert u.owner is not None
            if mode != "auto" and mode != u.owner.mode:
                raise XskError(f"this UMEM is in {u.owner.mode} mode (its first socket,"
                               f" {u.owner.iface} queue {u.owner.queue}); a socket sharing it"
                               f" cannot be {mode}")
            self.need_wakeup_bound = u.owner.need_wakeup_bound
            sock = _new_socket()
            flags = XDP_SHARED_UMEM
            shared_fd = u.fd
        self.sock = sock
        self._own_fill = False
        try:
            _ring_size(sock, XDP_RX_RING, rx_size, "rx")
            _ring_size(sock, XDP_TX_RING, tx_size, "tx")
            if same_queue:
                self.fill, self.comp = u.fill, u.comp
            else:
                self.fill, self.comp = _umem_rings(sock, u.fill_size, u.comp_size)
                self._own_fill = True
            off = _offsets(sock)
            self.rx = Ring(sock.fileno(), XDP_PGOFF_RX_RING, off["rx"], rx_size, 16, "rx")
            self.tx = Ring(sock.fileno(), XDP_PGOFF_TX_RING, off["tx"], tx_size, 16, "tx")
            self._bind(flags, shared_fd, mode)
            opts = struct.unpack("=I", sock.getsockopt(SOL_XDP, XDP_OPTIONS, 4)[:4])[0]
            self.zerocopy = bool(opts & XDP_OPTIONS_ZEROCOPY)
        except BaseException:
            for r in ("rx", "tx"):
                if hasattr(self, r):
                    getattr(self, r).close()
            if self._own_fill:
                self.fill.close()
                self.comp.close()
            if not first:
                sock.close()
            elif not own_umem:
                # its registration socket now has rings set: it cannot be bound again
                u.broken = "its first socket failed to bind; make a new Umem"
            if own_umem:
                u.close()
            raise
        self.closed = False
        self._own_umem = own_umem
        if first:
            u.owner = self
            u.sock = None  # the socket owns the fd now
        u.sockets.append(self)
        self._tx_len_template = -1
        self._tx_frames: list[int] = []
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        if n_fill:
            self.fill_frames(u.take(n_fill))

    def _bind(self, flags: int, shared_fd: int, mode: str) -> None:
        addr = struct.pack(SOCKADDR_XDP_FMT, AF_XDP, flags, self.ifindex, self.queue, shared_fd)
        # A closed socket's UMEM leaves its queue from a kernel work item (xp_release_deferred),
        # so a bind right after a close may see EBUSY for a moment: retry for up to a second.
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        while True:
            if _libc.bind(self.sock.fileno(), addr, len(addr)) == 0:
                return
            err = ctypes.get_errno()
            if err != errno.EBUSY or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        where = f"{self.iface} queue {self.queue}"
        if err == errno.EOPNOTSUPP and mode == "zerocopy":
            msg = (f"zero-copy AF_XDP is not supported on {where}: the driver has no zero-copy"
                   " support (veth never has); use mode='copy'")
        elif err == errno.EOPNOTSUPP:
            msg = f"{where} cannot host an AF_XDP socket (driver without XDP support)"
        elif err == errno.EBUSY:
            msg = (f"{where} already has an AF_XDP UMEM bound (another socket); share its UMEM"
                   " (umem=...) or use another queue")
        elif err == errno.ENODEV:
            msg = f"no interface {self.iface} in this network namespace"
        elif err == errno.EINVAL:
            msg = (f"bind to {where} refused (EINVAL): the queue does not exist, or a shared"
                   " UMEM is bound elsewhere in an incompatible mode")
        else:
            msg = f"bind to {where} failed: {os.strerror(err)}"
        raise XskError(msg, err)

    # -- basics ---------------------------------------------------------------------------
    @property
    def fd(self) -> int:
        return self.sock.fileno()

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def mode(self) -> str:
        return "zerocopy" if self.zerocopy else "copy"

    def stats(self) -> XskStats:
        raw = self.sock.getsockopt(SOL_XDP, XDP_STATISTICS, 48)
        vals = list(struct.unpack(f"={len(raw) // 8}Q", raw[: len(raw) // 8 * 8]))
        vals += [0] * (6 - len(vals))
        return XskStats(**dict(zip(XDP_STATISTICS_FIELDS, vals)))

    def close(self) -> None:
        """Unmap the rings and close the socket (the kernel unbinds it and drops it from any
        XSKMAP).  Closing the socket that registered the UMEM closes its other sockets too."""
        if self.closed:
            return
        u = self.umem
        if u.owner is self:
            for s in reversed(u.sockets):
                if s is not self:
                    s.close()
        self.closed = True
        self.rx.close()
        self.tx.close()
        if self._own_fill:
            self.fill.close()
            self.comp.close()
        self._poll.unregister(self.sock.fileno())
        self.sock.close()
        if self in u.sockets:
            u.sockets.remove(self)
        if u.owner is self or self._own_umem:
            u.close()

    def __enter__(self) -> XskSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<XskSocket {self.iface} queue {self.queue} {self.mode} fd={self.fd}>"

    # -- waking the kernel ----------------------------------------------------------------
    def kick_tx(self) -> None:
        """sendto() until the kernel has taken what the tx ring holds: in copy mode each call
        transmits at most 32 frames (TX_BATCH_SIZE in net/xdp/xsk.c)."""
        tx = self.tx
        for _ in range(tx.pending() // 32 + 1):
            try:
                self.sock.send(b"", socket.MSG_DONTWAIT)
            except OSError as e:
                if e.errno not in _KICK_OK:
                    raise XskError(f"TX kick on {self.iface} queue {self.queue}: {e.strerror}",
                                   e.errno or errno.EIO) from e
                if e.errno not in (errno.EAGAIN, errno.EBUSY):  # EAGAIN: 32 sent, go on
                    return
            if not tx.pending():
                return

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for received frames (None: forever)."""
        if self.rx.pending():
            return True
        ms = None if timeout is None else max(0, int(timeout * 1000))
        return bool(self._poll.poll(ms)) or bool(self.rx.pending())

    def _wake_fill(self) -> None:
        if self.need_wakeup_bound and self.fill.need_wakeup:
            try:
                self.sock.recv(0, socket.MSG_DONTWAIT)
            except OSError as e:
                if e.errno not in _KICK_OK:
                    raise

    # -- ring primitives ------------------------------------------------------------------
    def fill_frames(self, addrs: Iterable[int]) -> int:
        """Give frames to the kernel for receiving (fill ring); returns how many went."""
        f = self.fill
        prod = f.producer[0]
        n = 0
        for a in addrs:
            if (prod - f.consumer[0]) & MASK32 >= f.size:
                raise XskError("fill ring full", errno.ENOSPC)
            f.words[prod & f.mask] = a
            prod = (prod + 1) & MASK32
            n += 1
        f.producer[0] = prod
        return n

    def reap(self) -> list[int]:
        """Completed TX frames (their addresses), back to userspace."""
        c = self.comp
        cons = c.consumer[0]
        n = (c.producer[0] - cons) & MASK32
        out = [c.words[(cons + i) & c.mask] for i in range(n)]
        c.consumer[0] = (cons + n) & MASK32
        return out

    # -- batch API: no Python object per frame --------------------------------------------
    def drop(self, max_frames: int = 64) -> int:
        """Receive up to ``max_frames`` and hand them straight back to the fill ring (RX drop).
        Returns the number of frames received."""
        rx, f = self.rx, self.fill
        cons = rx.consumer[0]
        n = min((rx.producer[0] - cons) & MASK32, max_frames)
        if n:
            fprod = f.producer[0]
            n = min(n, f.size - ((fprod - f.consumer[0]) & MASK32))
            copy_slots(f, fprod, 1, rx, cons, 2, n)
            f.producer[0] = (fprod + n) & MASK32
            rx.consumer[0] = (cons + n) & MASK32
        self._wake_fill()
        return n

    def forward(self, max_frames: int = 64, out: XskSocket | None = None) -> int:
        """Received frames go out of ``out`` (default: this socket) unchanged, completions
        return to this socket's fill ring.  ``out`` must share this socket's UMEM.  Returns
        the number of frames forwarded."""
        out = out or self
        if out.umem is not self.umem:
            raise XskError("forward() needs both sockets on one UMEM (umem=...)")
        c, f = out.comp, self.fill
        ccons = c.consumer[0]
        k = (c.producer[0] - ccons) & MASK32
        if k:
            fprod = f.producer[0]
            k = min(k, f.size - ((fprod - f.consumer[0]) & MASK32))
            copy_slots(f, fprod, 1, c, ccons, 1, k)
            f.producer[0] = (fprod + k) & MASK32
            c.consumer[0] = (ccons + k) & MASK32
        rx, tx = self.rx, out.tx
        cons = rx.consumer[0]
        n = min((rx.producer[0] - cons) & MASK32, max_frames)
        if n:
            tprod = tx.producer[0]
            n = min(n, tx.size - ((tprod - tx.consumer[0]) & MASK32))
            copy_descs(tx, tprod, rx, cons, n)
            tx.producer[0] = (tprod + n) & MASK32
            rx.consumer[0] = (cons + n) & MASK32
        if (n or tx.pending()) and (not out.need_wakeup_bound or tx.need_wakeup):
            out.kick_tx()
        self._wake_fill()
        return n

    def rx_batch(self, max_frames: int = 64, timeout: float | None = 0) -> RxBatch:
        """Up to ``max_frames`` received frames, still in the rx ring until the batch is
        released (:meth:`RxBatch.recycle` or :meth:`RxBatch.forward`)."""
        if timeout != 0 and not self.rx.pending():
            self._wake_fill()
            self.wait(timeout)
        rx = self.rx
        cons = rx.consumer[0]
        n = min((rx.producer[0] - cons) & MASK32, max_frames)
        return RxBatch(self, cons, n)

    def tx_setup(self, frame: bytes, frames: int | None = None) -> int:
        """Prepare TX-only blasting of one frame: copy it into ``frames`` free UMEM frames
        (default: the tx ring size) and preset every tx slot's length.  Returns the count."""
        u = self.umem
        if not 14 <= len(frame) <= u.frame_size - u.headroom:
            raise XskError(f"a {len(frame)}-byte frame does not fit a {u.frame_size}-byte"
                           f" chunk (headroom {u.headroom})")
        n = frames if frames is not None else min(self.tx.size, len(u.free))
        addrs = u.take(n)
        for a in addrs:
            u.buf[a:a + len(frame)] = frame
        w = self.tx.words
        w[1::2] = memoryview(bytes(struct.pack("=Q", len(frame)) * self.tx.size)).cast("Q")
        self._tx_len_template = len(frame)
        self._tx_frames = addrs
        return n

    def tx_burst(self, max_frames: int = 64) -> int:
        """Send up to ``max_frames`` of the frame set up by :meth:`tx_setup`: fresh frames
        first, then those the completion ring returns.  Returns the number queued."""
        if self._tx_len_template < 0:
            raise XskError("tx_burst() needs tx_setup() first")
        tx, c = self.tx, self.comp
        tprod = tx.producer[0]
        room = min(max_frames, tx.size - ((tprod - tx.consumer[0]) & MASK32))
        n = 0
        if self._tx_frames and room:
            k = min(room, len(self._tx_frames))
            for i in range(k):
                tx.words[((tprod + i) & tx.mask) * 2] = self._tx_frames[i]
            del self._tx_frames[:k]
            n = k
        ccons = c.consumer[0]
        k = min(room - n, (c.producer[0] - ccons) & MASK32)
        if k:
            copy_slots(tx, tprod + n, 2, c, ccons, 1, k)
            c.consumer[0] = (ccons + k) & MASK32
            n += k
        tx.producer[0] = (tprod + n) & MASK32
        if not self.need_wakeup_bound or tx.need_wakeup:
            self.kick_tx()
        return n

    # -- simple per-packet API ------------------------------------------------------------
    def recv(self, max_frames: int = 64, timeout: float | None = 0) -> list[bytes]:
        """Up to ``max_frames`` received frames as bytes (copied out; frames recycled)."""
        b = self.rx_batch(max_frames, timeout)
        out = [bytes(m) for m in b]
        b.recycle()
        return out

    def send(self, frames: Iterable[bytes | bytearray | memoryview]) -> int:
        """Copy ``frames`` into free UMEM frames and transmit them; returns how many were
        queued (fewer when the tx ring or the free frames run out)."""
        u = self.umem
        u.free.extend(u.chunk_of(a) for a in self.reap())
        tx = self.tx
        tprod = tx.producer[0]
        room = tx.size - ((tprod - tx.consumer[0]) & MASK32)
        n = 0
        for fr in frames:
            if n >= room or not u.free:
                break
            if len(fr) > u.frame_size - u.headroom:
                raise XskError(f"a {len(fr)}-byte frame does not fit a {u.frame_size}-byte"
                               " chunk")
            a = u.free.pop()
            u.buf[a:a + len(fr)] = fr
            slot = ((tprod + n) & tx.mask) * 2
            tx.words[slot] = a
            tx.words[slot + 1] = len(fr)
            n += 1
        tx.producer[0] = (tprod + n) & MASK32
        if tx.pending():
            self.kick_tx()
        return n


class RxBatch:
    """``n`` received descriptors starting at rx index ``start``; frames are memoryview
    slices of the UMEM (valid until the batch is released)."""

    __slots__ = ("done", "n", "sock", "start")

    def __init__(self, sock: XskSocket, start: int, n: int) -> None:
        self.sock, self.start, self.n, self.done = sock, start, n, False

    def __len__(self) -> int:
        return self.n

    def addr(self, i: int) -> int:
        r = self.sock.rx
        return int(r.words[((self.start + i) & r.mask) * 2])

    def length(self, i: int) -> int:
        r = self.sock.rx
        return int(r.words[((self.start + i) & r.mask) * 2 + 1]) & MASK32

    def frame(self, i: int) -> memoryview:
        if not 0 <= i < self.n:
            raise IndexError(f"frame {i} of a batch of {self.n}")
        return self.sock.umem.frame(self.addr(i), self.length(i))

    def __iter__(self) -> Iterator[memoryview]:
        for i in range(self.n):
            yield self.frame(i)

    def descriptors(self) -> list[memoryview]:
        """The raw 16-byte ``xdp_desc`` records (one or two spans of the ring)."""
        r = self.sock.rx
        out = []
        done = 0
        while done < self.n:
            a = (self.start + done) & r.mask
            k = min(self.n - done, r.size - a)
            out.append(r.raw[a * 16:(a + k) * 16])
            done += k
        return out

    def numpy(self) -> tuple[Any, Any, Any]:
        """(addrs, lengths, area) as numpy arrays (numpy must be installed): addresses and
        lengths copied out of the ring, ``area`` a zero-copy uint8 view of the UMEM."""
        try:
            import numpy as np
        except ImportError as e:
            raise XskError("RxBatch.numpy() needs numpy, which is not installed") from e
        parts = [np.frombuffer(d, dtype=np.uint64).reshape(-1, 2) for d in self.descriptors()]
        d = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.uint64)
        area = np.frombuffer(self.sock.umem.buf, dtype=np.uint8)
        return d[:, 0].copy(), (d[:, 1] & MASK32).astype(np.uint32), area

    def _check(self) -> None:
        if self.done:
            raise XskError("this batch was released already")
        self.done = True

    def recycle(self) -> None:
        """Give the frames back to the kernel (fill ring) and release the rx slots."""
        self._check()
        s = self.sock
        if self.n:
            f = s.fill
            fprod = f.producer[0]
            if f.size - ((fprod - f.consumer[0]) & MASK32) < self.n:
                raise XskError("fill ring has no room for the batch (frames held elsewhere)",
                               errno.ENOSPC)
            copy_slots(f, fprod, 1, s.rx, self.start, 2, self.n)
            f.producer[0] = (fprod + self.n) & MASK32
            s.rx.consumer[0] = (self.start + self.n) & MASK32
        s._wake_fill()

    def forward(self, out: XskSocket | None = None) -> int:
        """Transmit the frames (possibly modified in place) out of ``out`` (default the
        receiving socket, same UMEM); returns how many went (the rest are recycled)."""
        self._check()
        s = self.sock
        out = out or s
        if out.umem is not s.umem:
            raise XskError("forward() needs both sockets on one UMEM (umem=...)")
        u = s.umem
        u.free.extend(u.chunk_of(a) for a in out.reap())
        tx = out.tx
        tprod = tx.producer[0]
        n = min(self.n, tx.size - ((tprod - tx.consumer[0]) & MASK32))
        copy_descs(tx, tprod, s.rx, self.start, n)
        tx.producer[0] = (tprod + n) & MASK32
        rest = self.n - n
        if rest:
            f = s.fill
            fprod = f.producer[0]
            copy_slots(f, fprod, 1, s.rx, self.start + n, 2, rest)
            f.producer[0] = (fprod + rest) & MASK32
        s.rx.consumer[0] = (self.start + self.n) & MASK32
        if free := u.free[: s.fill.free()]:
            del u.free[: len(free)]
            s.fill_frames(free)
        if n:
            out.kick_tx()
        s._wake_fill()
        return n

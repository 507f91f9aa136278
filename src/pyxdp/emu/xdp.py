"""The XDP packet buffer and ``struct xdp_md`` as the emulator presents them.

A fresh buffer is used for every packet (see :meth:`XdpState.reset`).  It is laid out
like a driver's frame: ``data_hard_start``, reserved room for the
``struct xdp_frame`` (40 bytes), headroom up to ``XDP_PACKET_HEADROOM`` (256), the packet,
and tailroom up to a 4 KiB frame minus ``skb_shared_info``.  The region the VM sees spans
``[data_hard_start, data_end)`` and is resized in place by ``bpf_xdp_adjust_tail``, so a
read past ``data_end`` faults exactly where the verifier's packet bounds would.

A frame longer than ``LINEAR_MAX`` (3520) bytes is split the way the kernel's
``BPF_PROG_TEST_RUN`` splits it: the linear part ends at 3520 bytes (``data_end``), the
rest goes into page-sized frags (at most 17) that only ``bpf_xdp_get_buff_len``,
``bpf_xdp_load_bytes``/``store_bytes`` and ``bpf_xdp_adjust_tail`` reach.  On 6.18 the test
run does this for every XDP program, with or without ``BPF_F_XDP_HAS_FRAGS``.
"""

from __future__ import annotations

import errno as _errno
import struct
from dataclasses import dataclass, field

from pyxdp.abi import XDP_PACKET_HEADROOM
from pyxdp.emu.memory import PACKET, base_of
from pyxdp.isa import XdpAction

HEADROOM = XDP_PACKET_HEADROOM
XDP_FRAME_SIZE = 40
FRAME_SIZE = 4096
SHINFO_SIZE = 320
ETH_HLEN = 14
META_MAX = 32
# what BPF_PROG_TEST_RUN gives a program: at most LINEAR_MAX bytes in the linear part (a
# page minus headroom and skb_shared_info), the rest in page-sized frags, at most MAX_FRAGS
# of them; frags programs or not (measured on 6.18: the test run does not check the flag)
LINEAR_MAX = FRAME_SIZE - HEADROOM - SHINFO_SIZE
LINEAR_END = HEADROOM + LINEAR_MAX
FRAG_SIZE = 4096
MAX_FRAGS = 17
MAX_FRAME = LINEAR_MAX + MAX_FRAGS * FRAG_SIZE
# longest frame buffer: translated code relies on packet offsets staying far below 2**31
# (see pyxdp.emu.codegen.P_LIMIT)
MAX_BUFFER = 1 << 24
_CTX = struct.Struct("<6I")
PACKET_BASE = base_of(PACKET)
_HEAD = bytes(HEADROOM)
_HEAD_BUF = bytearray(_HEAD)   # ``_HEAD_BUF + packet`` is a fresh frame in one allocation
_VERDICTS = tuple(XdpAction)
_NVERDICTS = len(_VERDICTS)


@dataclass(frozen=True)
class Redirect:
    """Where ``XDP_REDIRECT`` sends the packet: an ifindex, or a map entry."""

    ifindex: int | None = None
    map: str | None = None
    map_type: str | None = None
    key: int | bytes | None = None
    value: int | None = None          # ifindex (devmap), queue size (cpumap), socket (xsk)
    broadcast: bool = False
    exclude_ingress: bool = False


@dataclass
class XdpResult:
    """Outcome of one XDP run."""

    verdict: XdpAction
    packet: bytes
    r0: int
    redirect: Redirect | None = None
    trace: list[str] = field(default_factory=list)
    meta: bytes = b""


class LazyXdpResult(XdpResult):
    """What ``run_xdp`` returns: an :class:`XdpResult` whose verdict, packet, metadata and
    trace are computed on first access.

    Most callers look at the verdict only, so copying the packet out of the frame buffer on
    every run would be wasted work; the frame buffer is fresh for every run, so keeping a
    reference to it is safe.  Assigning a field replaces the lazy value.
    """

    # defaults for the common case; run_xdp sets only what differs (it builds the object
    # with object.__new__ and two attribute stores: this is on every packet's path)
    _data = HEADROOM
    _meta = HEADROOM
    _redirect: Redirect | None = None
    _trace: list[str] | None = None

    def __init__(self, r0: int, buf: bytearray, data: int = HEADROOM, meta: int = HEADROOM,
                 redirect: Redirect | None = None, trace: list[str] | None = None) -> None:
        self.r0 = r0
        self._buf = buf
        self._data = data
        self._meta = meta
        self._redirect = redirect
        self._trace = trace

    @property
    def verdict(self) -> XdpAction:
        r0 = self.r0
        return _VERDICTS[r0] if r0 < _NVERDICTS else XdpAction.ABORTED

    @verdict.setter
    def verdict(self, value: XdpAction) -> None:
        self.r0 = int(value)

    @property
    def packet(self) -> bytes:
        return bytes(self._buf[self._data:])

    @packet.setter
    def packet(self, value: bytes) -> None:
        self._buf, self._data = bytearray(value), 0

    @property
    def meta(self) -> bytes:
        return bytes(self._buf[self._meta:self._data]) if self._meta != self._data else b""

    @meta.setter
    def meta(self, value: bytes) -> None:
        self._buf = bytearray(value) + self._buf[self._data:]
        self._meta, self._data = 0, len(value)

    @property
    def redirect(self) -> Redirect | None:
        return self._redirect if self.r0 == XdpAction.REDIRECT else None

    @redirect.setter
    def redirect(self, value: Redirect | None) -> None:
        self._redirect = value

    @property
    def trace(self) -> list[str]:
        if self._trace is None:
            self._trace = []
        return self._trace

    @trace.setter
    def trace(self, value: list[str]) -> None:
        self._trace = value


class XdpRunResult(LazyXdpResult):
    """The :class:`LazyXdpResult` ``run_xdp`` builds: created without arguments (the C
    ``object.__init__`` is the cheapest constructor there is) and then given ``r0`` and the
    frame buffer, with slots for both; everything else keeps the class defaults."""

    __slots__ = ("_buf", "r0")
    # not LazyXdpResult's signature, on purpose (older mypy releases flag the override)
    __init__ = object.__init__  # type: ignore[assignment, unused-ignore]


class XdpState:
    """One packet in flight: buffer plus the ``data``/``data_meta`` offsets."""

    __slots__ = (
        "_ctx_cache",
        "buf",
        "data",
        "frags",
        "fresh_ctx",
        "ingress_ifindex",
        "meta",
        "rx_queue_index",
    )

    def __init__(self, packet: bytes = b"", ingress_ifindex: int = 1,
                 rx_queue_index: int = 0) -> None:
        self._ctx_cache: dict[tuple[int, int, int], bytes] = {}
        # ctx of an untouched frame by buffer length: the common case, one dict lookup
        self.fresh_ctx: dict[int, bytes] = {}
        self.ingress_ifindex = ingress_ifindex
        self.rx_queue_index = rx_queue_index
        self.frags: list[bytearray] = []   # the non-linear part (multi-buffer frames)
        self.reset(packet, ingress_ifindex, rx_queue_index)

    def reset(self, packet: bytes, ingress_ifindex: int = 1, rx_queue_index: int = 0
              ) -> bytearray:
        """Start the next packet in a fresh frame buffer.

        A fresh buffer (not a reused one) is what lets results keep a reference to the
        frame instead of copying the packet out after every run.
        """
        buf = self.buf = bytearray(_HEAD)
        buf += packet[:LINEAR_MAX]
        self.frags = split_frags(packet)
        self.data = self.meta = HEADROOM
        if (ingress_ifindex != self.ingress_ifindex
                or rx_queue_index != self.rx_queue_index):
            self.set_rx(ingress_ifindex, rx_queue_index)
        return buf

    def set_rx(self, ingress_ifindex: int, rx_queue_index: int) -> None:
        self._ctx_cache.clear()
        self.fresh_ctx.clear()
        self.ingress_ifindex = ingress_ifindex
        self.rx_queue_index = rx_queue_index

    def ctx_bytes(self) -> bytes:
        key = (self.data, self.meta, len(self.buf))
        ctx = self._ctx_cache.get(key)
        if ctx is None:
            if len(self.buf) > MAX_BUFFER:
                raise ValueError(f"packet of {len(self.buf) - HEADROOM} bytes is longer than"
                                 f" the emulator's {MAX_BUFFER - HEADROOM}-byte limit")
            if len(self._ctx_cache) > 256:
                self._ctx_cache.clear()
                self.fresh_ctx.clear()
            ctx = self._ctx_cache[key] = _CTX.pack(
                PACKET_BASE + self.data, PACKET_BASE + len(self.buf),
                PACKET_BASE + self.meta, self.ingress_ifindex, self.rx_queue_index, 0)
            if self.data == self.meta == HEADROOM:
                self.fresh_ctx[key[2]] = ctx
        return ctx

    @property
    def packet(self) -> bytes:
        if self.frags:
            return bytes(self.buf[self.data:]) + b"".join(self.frags)
        return bytes(self.buf[self.data:])

    # -- the whole frame, linear part and frags (bpf_xdp_get_buff_len/load/store_bytes) --
    def buff_len(self) -> int:
        return len(self.buf) - self.data + sum(len(f) for f in self.frags)

    def _pieces(self) -> list[tuple[bytearray, int]]:
        """(buffer, start) of the frame's parts in order."""
        return [(self.buf, self.data)] + [(f, 0) for f in self.frags]

    def copy_out(self, off: int, length: int) -> bytes | int:
        """``length`` bytes at frame offset ``off``, or -errno like ``bpf_xdp_load_bytes``."""
        if off > 0xFFFF or length > 0xFFFF:
            return -_errno.EFAULT
        if length == 0 or off + length > self.buff_len():
            return -_errno.EINVAL
        out = bytearray()
        for buf, start in self._pieces():
            size = len(buf) - start
            if off < size:
                take = min(size - off, length - len(out))
                out += buf[start + off:start + off + take]
                off = 0
                if len(out) == length:
                    break
            else:
                off -= size
        return bytes(out)

    def copy_in(self, off: int, data: bytes) -> int:
        """Write ``data`` at frame offset ``off`` (``bpf_xdp_store_bytes``): 0 or -errno."""
        length = len(data)
        if off > 0xFFFF or length > 0xFFFF:
            return -_errno.EFAULT
        if length == 0 or off + length > self.buff_len():
            return -_errno.EINVAL
        done = 0
        for buf, start in self._pieces():
            size = len(buf) - start
            if off < size:
                take = min(size - off, length - done)
                buf[start + off:start + off + take] = data[done:done + take]
                done += take
                off = 0
                if done == length:
                    break
            else:
                off -= size
        return 0

    @property
    def metadata(self) -> bytes:
        return bytes(self.buf[self.meta:self.data]) if self.meta != self.data else b""

    # -- the adjust helpers (return 0 or -errno, like the kernel) ------------------------
    def adjust_head(self, delta: int) -> int:
        data = self.data + delta
        metalen = self.data - self.meta
        if data - metalen < XDP_FRAME_SIZE or data > len(self.buf) - ETH_HLEN:
            return -_errno.EINVAL
        if metalen:
            self.buf[self.meta + delta:data] = self.buf[self.meta:self.data]
        self.meta += delta
        self.data = data
        return 0

    def adjust_meta(self, delta: int) -> int:
        meta = self.meta + delta
        metalen = self.data - meta
        if meta < XDP_FRAME_SIZE or meta > self.data:
            return -_errno.EINVAL
        if metalen & 3 or metalen > META_MAX:
            return -_errno.EACCES
        self.meta = meta
        return 0

    def adjust_tail(self, delta: int) -> int:
        if self.frags:
            return self._adjust_frags_tail(delta)
        end = len(self.buf) + delta
        if end > FRAME_SIZE - SHINFO_SIZE and delta > 0:
            return -_errno.EINVAL
        if end < self.data + ETH_HLEN:
            return -_errno.EINVAL
        if delta > 0:
            self.buf.extend(bytes(delta))
        elif delta < 0:
            del self.buf[end:]
        return 0

    def _adjust_frags_tail(self, delta: int) -> int:
        """The kernel's ``bpf_xdp_frags_increase_tail``/``_shrink_tail``: growing uses the
        last frag's room (its page), shrinking frees frags from the end and, once none is
        left, cuts the linear part; the frame keeps at least an Ethernet header."""
        frags = self.frags
        if delta > 0:
            last = frags[-1]
            if delta > FRAG_SIZE - len(last):
                return -_errno.EINVAL
            last.extend(bytes(delta))
            return 0
        offset = -delta
        if offset > self.buff_len() - ETH_HLEN:
            return -_errno.EINVAL
        while frags and offset > 0:
            last = frags[-1]
            shrink = min(offset, len(last))
            del last[len(last) - shrink:]
            offset -= shrink
            if not last:
                frags.pop()
        if not frags and offset:
            del self.buf[len(self.buf) - offset:]
        return 0


def split_frags(packet: bytes) -> list[bytearray]:
    """The frags of a frame the way the kernel's test run builds them: everything past
    the linear part in page-sized pieces.  Longer frames than that allows are refused
    with ``ValueError`` (the kernel's ``ENOMEM``)."""
    if len(packet) <= LINEAR_MAX:
        return []
    if len(packet) > MAX_FRAME:
        raise ValueError(f"a frame of {len(packet)} bytes needs more than {MAX_FRAGS} frags:"
                         f" BPF_PROG_TEST_RUN takes at most {MAX_FRAME} bytes (ENOMEM)")
    return [bytearray(packet[i:i + FRAG_SIZE])
            for i in range(LINEAR_MAX, len(packet), FRAG_SIZE)]




def verdict_of(r0: int) -> XdpAction:
    """Unknown return codes are treated as ``XDP_ABORTED``, as the kernel does."""
    return _VERDICTS[r0] if r0 < _NVERDICTS else XdpAction.ABORTED

"""The XDP packet buffer and ``struct xdp_md`` as the emulator presents them.

A fresh buffer is used for every packet (see :meth:`XdpState.reset`).  It is laid out
like a driver's frame: ``data_hard_start``, reserved room for the
``struct xdp_frame`` (40 bytes), headroom up to ``XDP_PACKET_HEADROOM`` (256), the packet,
and tailroom up to a 4 KiB frame minus ``skb_shared_info``.  The region the VM sees spans
``[data_hard_start, data_end)`` and is resized in place by ``bpf_xdp_adjust_tail``, so a
read past ``data_end`` faults exactly where the verifier's packet bounds would.
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
        self.reset(packet, ingress_ifindex, rx_queue_index)

    def reset(self, packet: bytes, ingress_ifindex: int = 1, rx_queue_index: int = 0
              ) -> bytearray:
        """Start the next packet in a fresh frame buffer.

        A fresh buffer (not a reused one) is what lets results keep a reference to the
        frame instead of copying the packet out after every run.
        """
        buf = self.buf = bytearray(_HEAD)
        buf += packet
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
        return bytes(self.buf[self.data:])

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




def verdict_of(r0: int) -> XdpAction:
    """Unknown return codes are treated as ``XDP_ABORTED``, as the kernel does."""
    return _VERDICTS[r0] if r0 < _NVERDICTS else XdpAction.ABORTED

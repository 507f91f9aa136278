"""The redirect program, its XSKMAP, the attachment and the sockets, owned by one object."""

from __future__ import annotations

from typing import Any

from pyxdp.afxdp._program import XSKS, redirect_spec, xskmap_spec
from pyxdp.afxdp._ring import XskError
from pyxdp.afxdp._xsk import Umem, XskSocket
from pyxdp.isa import XdpAction


class XskRedirect:
    """``bpf_redirect_map(&xsks, rx_queue_index, fallback)`` attached to ``iface``, plus the
    sockets registered in its map.  :meth:`close` (or leaving the ``with``) closes the
    sockets, detaches the program and closes the map: nothing stays behind.

    Create it in the network namespace of ``iface`` (e.g. through
    :meth:`pyxdp.testbed.Testbed.call`); the sockets work from any thread afterwards.
    """

    def __init__(self, iface: str | int, *, attach_mode: str | None = "native",
                 fallback: XdpAction = XdpAction.PASS, max_queues: int = 64) -> None:
        from pyxdp import xdp
        from pyxdp.kernel import Map, Program

        self.iface = iface
        self.sockets: dict[int, XskSocket] = {}
        self.map = Map.create(xskmap_spec(max_queues))
        try:
            self.prog = Program.load(redirect_spec(fallback), maps={XSKS: self.map})
            try:
                self.attachment = xdp.attach(iface, self.prog, attach_mode)
            except BaseException:
                self.prog.close()
                raise
        except BaseException:
            self.map.close()
            raise
        self.attach_mode = self.attachment.mode
        self.max_queues = max_queues
        self.closed = False

    def socket(self, queue: int = 0, *, umem: Umem | None = None, **kw: Any) -> XskSocket:
        """Bind a socket to ``queue`` of the interface and register it in the map."""
        if queue in self.sockets:
            raise XskError(f"queue {queue} already has a socket in this redirect")
        if not 0 <= queue < self.max_queues:
            raise XskError(f"queue {queue} is beyond the XSKMAP's {self.max_queues} entries")
        s = XskSocket(self.iface, queue, umem=umem, **kw)
        try:
            self.map[queue] = s.fd
        except BaseException:
            s.close()
            raise
        self.sockets[queue] = s
        return s

    def remove(self, queue: int) -> None:
        s = self.sockets.pop(queue)
        del self.map[queue]
        s.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            for q in sorted(self.sockets, reverse=True):
                self.sockets[q].close()
            self.sockets.clear()
            self.attachment.detach()
        finally:
            self.prog.close()
            self.map.close()

    def __enter__(self) -> XskRedirect:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

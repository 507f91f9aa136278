"""AF_XDP sockets in pure Python: UMEM, rings, bind, statistics, batch and per-packet I/O.

* :class:`Umem` — the packet area shared with the kernel, with its fill/completion rings.
* :class:`XskSocket` — one socket bound to ``(interface, queue)``: copy, zero-copy or
  auto mode (the mode in effect is :attr:`XskSocket.mode`, never a silent fallback),
  need_wakeup, shared UMEM, ``XDP_STATISTICS``.
* :class:`XskRedirect` — the XSKMAP redirect program attached to an interface, owning its
  sockets; one ``with`` sets everything up and tears it down.
* Batch API: :meth:`XskSocket.drop`, :meth:`XskSocket.forward`, :meth:`XskSocket.tx_burst`
  and :class:`RxBatch` (frames as memoryview slices of the UMEM, optional numpy views); the
  per-packet API :meth:`XskSocket.recv` / :meth:`XskSocket.send` sits on top.

Rings are driven with plain loads/stores through memoryviews, which is correct on x86-64
only (see :mod:`pyxdp.afxdp._ring`); other machines are refused.  A socket is not
thread-safe: drive each one (and the sockets sharing its fill ring) from one thread.

On veth (what the test beds use), found on kernel 6.18:

* there is no zero-copy: ``mode="zerocopy"`` is refused (EOPNOTSUPP, named in the error),
  ``"auto"`` reports ``copy``;
* native mode: frames that reach ``veth1`` as XDP frames (``XDP_TX``/redirect or the
  live-frames generator on the peer) need an XDP program on ``veth1`` itself, which the
  redirect program is; the peer needs none.  Generic mode: such frames reach ``veth1`` only
  when it runs NAPI, i.e. with GRO on (:meth:`pyxdp.testbed.Testbed.set_gro`); ordinary skb
  traffic (the stack, AF_PACKET) needs nothing;
* AF_XDP TX in copy mode builds an skb per frame and sends at most 32 per ``sendto``
  (:meth:`XskSocket.kick_tx` repeats it); the peer needs no XDP program to receive them;
* with several queues, native veth picks the rx queue by the *sending* CPU;
* a closed socket's UMEM leaves its queue from a kernel work item, so binding the same
  queue right after a close can see EBUSY for a moment (bind retries for a second).
"""

from pyxdp.afxdp._program import redirect_spec, xskmap_spec
from pyxdp.afxdp._redirect import XskRedirect
from pyxdp.afxdp._ring import Ring, XskError
from pyxdp.afxdp._xsk import RxBatch, Umem, XskSocket, XskStats

__all__ = ["RxBatch", "Ring", "Umem", "XskError", "XskRedirect", "XskSocket", "XskStats",
           "redirect_spec", "xskmap_spec"]

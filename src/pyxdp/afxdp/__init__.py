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
only (see :mod:`pyxdp.afxdp._ring`); other machines are refused.
"""

from pyxdp.afxdp._program import redirect_spec, xskmap_spec
from pyxdp.afxdp._redirect import XskRedirect
from pyxdp.afxdp._ring import Ring, XskError
from pyxdp.afxdp._xsk import RxBatch, Umem, XskSocket, XskStats

__all__ = ["RxBatch", "Ring", "Umem", "XskError", "XskRedirect", "XskSocket", "XskStats",
           "redirect_spec", "xskmap_spec"]

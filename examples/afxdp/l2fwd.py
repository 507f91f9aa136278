"""AF_XDP L2 forwarder: every frame received on IN (one queue) leaves through OUT, unchanged.

Two sockets on one UMEM (``XDP_SHARED_UMEM``; OUT gets its own fill/completion rings), so a
frame is never copied in userspace: the rx descriptor goes straight into OUT's tx ring, and
OUT's completions refill IN's fill ring (the batch API, no Python object per frame).

    python3 examples/afxdp/l2fwd.py IN OUT [--queue Q] [--attach native|generic] [--seconds S]

Run as root.  OUT needs no XDP program of its own for this: AF_XDP TX in copy mode sends
skbs.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from pyxdp.afxdp import Umem, XskRedirect, XskSocket


def open_forwarder(in_if: str, out_if: str, queue: int = 0, attach: str = "native"
                   ) -> tuple[XskRedirect, XskSocket, XskSocket]:
    """The redirect on ``in_if`` with its socket, and a TX socket on ``out_if`` sharing the
    UMEM.  Close the redirect (it owns the UMEM's sockets) when done."""
    r = XskRedirect(in_if, attach_mode=attach)
    try:
        umem = Umem(4096)
        rx = r.socket(queue, umem=umem, mode="copy", fill_frames=2048)
        tx = XskSocket(out_if, 0, umem=umem, fill_frames=0)
    except BaseException:
        r.close()
        raise
    return r, rx, tx


def forward_loop(rx: XskSocket, tx: XskSocket, stop: threading.Event, batch: int = 64) -> int:
    """Forward until ``stop`` is set; returns the number of frames forwarded."""
    n = 0
    fwd = rx.forward
    while not stop.is_set():
        k = fwd(batch, tx)
        n += k
        if not k:
            rx.wait(0.01)
    return n + fwd(batch, tx)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("in_if")
    ap.add_argument("out_if")
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--attach", default="native", choices=["native", "generic"])
    ap.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    a = ap.parse_args(argv)
    r, rx, tx = open_forwarder(a.in_if, a.out_if, a.queue, a.attach)
    stop = threading.Event()
    if a.seconds:
        threading.Timer(a.seconds, stop.set).start()
    t0 = time.monotonic()
    try:
        n = forward_loop(rx, tx, stop)
    except KeyboardInterrupt:
        n = -1
    finally:
        st = rx.stats()
        r.close()
    secs = time.monotonic() - t0
    print(f"forwarded {n} frames in {secs:.1f} s; rx stats {st}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

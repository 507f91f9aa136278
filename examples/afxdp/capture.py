"""Capture frames from one queue of an interface to a pcap file, through AF_XDP.

The frames are taken from the wire before the stack sees them (the redirect program sends
the whole queue to the socket, so the stack sees nothing while the capture runs).

    python3 examples/afxdp/capture.py IFACE OUT.pcap [--count N] [--queue Q] [--seconds S]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from typing import BinaryIO

from pyxdp.afxdp import XskRedirect, XskSocket

PCAP_HEADER = struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET


def capture(sock: XskSocket, out: BinaryIO, count: int, seconds: float) -> int:
    """Write up to ``count`` frames (within ``seconds``) as pcap records; returns how many."""
    out.write(PCAP_HEADER)
    n = 0
    end = time.monotonic() + seconds
    while n < count and time.monotonic() < end:
        batch = sock.rx_batch(min(64, count - n), timeout=0.05)
        t = time.time()
        sec, usec = int(t), int((t % 1) * 1e6)
        for f in batch:
            out.write(struct.pack("=IIII", sec, usec, len(f), len(f)))
            out.write(f)
        n += len(batch)
        batch.recycle()
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("iface")
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args(argv)
    with XskRedirect(a.iface) as r, open(a.out, "wb") as f:
        n = capture(r.socket(a.queue, mode="copy"), f, a.count, a.seconds)
    print(f"captured {n} frames to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

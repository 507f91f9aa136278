"""Answer ARP requests and ICMP echo requests for one IPv4 address, from userspace (AF_XDP).

Everything arriving on the interface's queue goes to the socket (the stack sees nothing);
ARP requests for ADDR and ICMP echo requests to ADDR are answered with the interface's MAC,
everything else is dropped.  Uses the simple per-packet API: :class:`pyxdp.afxdp.RxBatch`
frames as memoryviews in, :meth:`XskSocket.send` out.

    python3 examples/afxdp/responder.py IFACE ADDR [--queue Q] [--seconds S]
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import sys
import threading

from pyxdp.afxdp import XskRedirect, XskSocket


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def reply_to(frame: bytes | memoryview, mac: bytes, ip: bytes) -> bytes | None:
    """The answer to one frame (ARP reply or ICMP echo reply), or None."""
    f = bytes(frame)
    if len(f) < 42:
        return None
    etype = f[12:14]
    if etype == b"\x08\x06":  # ARP: htype 1, ptype IPv4, request for our address
        if f[14:22] != b"\x00\x01\x08\x00\x06\x04\x00\x01" or f[38:42] != ip:
            return None
        sha, spa = f[22:28], f[28:32]
        return (sha + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x02"
                + mac + ip + sha + spa + f[42:])
    if etype != b"\x08\x00":
        return None
    ihl = (f[14] & 0x0F) * 4
    if f[14] >> 4 != 4 or ihl < 20 or len(f) < 14 + ihl + 8 or f[23] != 1:
        return None
    if f[30:34] != ip or f[14 + ihl] != 8:  # to us, ICMP echo request
        return None
    total = struct.unpack("!H", f[16:18])[0]
    icmp = bytearray(f[14 + ihl:14 + total])
    icmp[0] = 0
    icmp[2:4] = b"\0\0"
    icmp[2:4] = struct.pack("!H", _csum(bytes(icmp)))
    iph = bytearray(f[14:14 + ihl])
    iph[12:16], iph[16:20] = f[30:34], f[26:30]
    iph[8] = 64
    iph[10:12] = b"\0\0"
    iph[10:12] = struct.pack("!H", _csum(bytes(iph)))
    return f[6:12] + mac + b"\x08\x00" + bytes(iph) + bytes(icmp)


def respond_loop(sock: XskSocket, mac: bytes, ip: bytes, stop: threading.Event) -> int:
    """Answer until ``stop`` is set; returns how many replies were sent."""
    sent = 0
    while not stop.is_set():
        batch = sock.rx_batch(64, timeout=0.05)
        replies = [r for r in (reply_to(f, mac, ip) for f in batch) if r is not None]
        batch.recycle()
        if replies:
            sent += sock.send(replies)
    return sent


def iface_mac(name: str) -> bytes:
    with open(f"/sys/class/net/{name}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("iface")
    ap.add_argument("addr", type=ipaddress.IPv4Address)
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=None)
    a = ap.parse_args(argv)
    mac = iface_mac(a.iface)
    stop = threading.Event()
    if a.seconds:
        threading.Timer(a.seconds, stop.set).start()
    with XskRedirect(a.iface) as r:
        s = r.socket(a.queue, mode="copy")
        try:
            n = respond_loop(s, mac, socket.inet_aton(str(a.addr)), stop)
        except KeyboardInterrupt:
            n = -1
    print(f"sent {n} replies")
    return 0


if __name__ == "__main__":
    sys.exit(main())

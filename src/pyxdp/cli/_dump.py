"""``pyxdp dump IFACE``: packets seen at XDP with the verdict they got.

Works on an interface that runs a ``pyxdp chain`` (every app attaches as a stage of it):
the chain is swapped to a generation whose stages also write each final verdict with the
packet into a ring buffer (``--where after``), whose root writes each packet as it enters
before any program (``before``, verdict shown as BEFORE), or both, and swapped back when
the dump ends, so capturing costs nothing while nobody captures.  Output: one line per
packet, or ``-w FILE.pcapng`` with the verdict and ingress ifindex in each packet's
comment.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import sys
import time
from typing import Any

from pyxdp.cli._args import COUNT, SECONDS, int_range
from pyxdp.cli._render import add_json, print_json


def summary(data: bytes) -> str:
    """A tcpdump-like one-line description of an Ethernet frame."""
    if len(data) < 14:
        return f"{len(data)} bytes (runt)"
    proto = struct.unpack_from("!H", data, 12)[0]
    off = 14
    if proto == 0x8100 and len(data) >= 18:
        proto, off = struct.unpack_from("!H", data, 16)[0], 18
    names = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6"}
    if proto == 0x0800 and len(data) >= off + 20:
        ihl = (data[off] & 0xF) * 4
        p = data[off + 9]
        s4 = ipaddress.IPv4Address(data[off + 12:off + 16])
        d4 = ipaddress.IPv4Address(data[off + 16:off + 20])
        return _l4(f"IP {s4}", f"{d4}", names.get(p, f"proto {p}"), data, off + ihl, p)
    if proto == 0x86DD and len(data) >= off + 40:
        p = data[off + 6]
        s6 = ipaddress.IPv6Address(data[off + 8:off + 24])
        d6 = ipaddress.IPv6Address(data[off + 24:off + 40])
        return _l4(f"IP6 {s6}", f"{d6}", names.get(p, f"next header {p}"), data, off + 40, p)
    if proto == 0x0806:
        return "ARP"
    return f"ethertype {proto:#06x}"


def _l4(src: str, dst: str, name: str, data: bytes, off: int, p: int) -> str:
    if p in (6, 17) and len(data) >= off + 4:
        sp, dp = struct.unpack_from("!HH", data, off)
        return f"{src}.{sp} > {dst}.{dp}: {name}"
    return f"{src} > {dst}: {name}"


def cmd_dump(args: argparse.Namespace) -> int:
    from pyxdp.apps.chain import Chain, parse_capture, parse_verdicts
    from pyxdp.xdp import in_netns

    match = None
    if args.expression:         # tcpdump syntax, judged by libpcap on each captured packet
        from pyxdp.cbpf.libpcap import compile_expression, offline_filter

        cprog = compile_expression(" ".join(args.expression))

        def match(data: bytes, length: int) -> bool:
            return offline_filter(cprog, data, length) != 0
    roots = {k: v for k, v in (("pin_root", args.pin_root), ("state_root", args.state_root))
             if v}
    chain = in_netns(args.netns, lambda: Chain.open(args.iface, **roots))
    if args.stop:
        in_netns(args.netns, chain.stop_capture)
        print(f"{args.iface}: capture stopped", file=sys.stderr)
        return 0
    want = parse_verdicts(args.verdict) if args.verdict else None
    names = {i: n for i, n in socket.if_nameindex()} if not args.netns else {}
    ring = in_netns(args.netns, lambda: chain.start_capture(args.snaplen, args.sample,
                                                            where=args.where))
    writer = out = None
    if args.write:
        from pyxdp.packets.pcapng import PcapngWriter

        out = open(args.write, "wb")  # noqa: SIM115  (closed in the finally below)
        writer = PcapngWriter(out, args.snaplen)
    to_wall = time.time_ns() - time.monotonic_ns()
    seen = shown = 0
    deadline = time.monotonic() + args.duration
    rows: list[dict[str, Any]] = []
    try:
        while time.monotonic() < deadline and (args.count is None or shown < args.count):
            recs = ring.drain(None if args.count is None else args.count - shown)
            if not recs:
                time.sleep(0.02)
                continue
            for raw in recs:
                pkt = parse_capture(raw)
                seen += 1
                if want is not None and (pkt.verdict is None or int(pkt.verdict) not in want):
                    continue
                if match is not None and not match(pkt.data, pkt.length):
                    continue
                shown += 1
                verdict = "BEFORE" if pkt.verdict is None else pkt.verdict.name
                if writer is not None:
                    writer.write(pkt.data, time_us=(pkt.time_ns + to_wall) // 1000,
                                 orig_len=pkt.length, ifindex=pkt.ifindex,
                                 ifname=names.get(pkt.ifindex, args.iface),
                                 comment=f"verdict={verdict} ifindex={pkt.ifindex}")
                elif args.json:
                    rows.append({"verdict": verdict, "ifindex": pkt.ifindex,
                                 "length": pkt.length, "time_ns": pkt.time_ns + to_wall,
                                 "data": pkt.data.hex()})
                else:
                    t = time.strftime("%H:%M:%S", time.localtime(
                        (pkt.time_ns + to_wall) / 1e9))
                    frac = (pkt.time_ns + to_wall) % 1_000_000_000 // 1000
                    print(f"{t}.{frac:06d} {verdict:<8} {summary(pkt.data)}, length"
                          f" {pkt.length}", flush=True)
                if args.count is not None and shown >= args.count:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        try:
            in_netns(args.netns, chain.stop_capture)
        finally:
            ring.close()
            if out is not None:
                out.close()
    if args.json:
        print_json({"iface": args.iface, "captured": seen, "shown": shown, "packets": rows})
    else:
        print(f"{shown} packets shown, {seen} captured", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("dump")
    p.add_argument("iface")
    p.add_argument("expression", nargs="*", metavar="EXPRESSION",
                   help="tcpdump filter expression (libpcap syntax) for what is shown")
    p.add_argument("-w", "--write", metavar="FILE", help="write pcapng here")
    p.add_argument("-c", "--count", type=COUNT, default=None, help="stop after N packets")
    p.add_argument("--duration", type=SECONDS, default=3600.0,
                   help="stop after this many seconds (default 3600)")
    p.add_argument("-s", "--snaplen", type=int_range(1, 4096), default=256,
                   help="bytes captured per packet (default 256)")
    p.add_argument("--sample", type=int_range(1, 1 << 20), default=1,
                   help="capture 1 packet in N (a power of two)")
    p.add_argument("--verdict", default=None, metavar="VERDICTS",
                   help="show only these verdicts (e.g. drop,pass)")
    p.add_argument("--where", choices=("after", "before", "both"), default="after",
                   help="capture each packet's final verdict (after, the default), each"
                        " packet as it enters before any program (before), or both")
    p.add_argument("--stop", action="store_true",
                   help="turn off a capture a killed dump left on")
    p.add_argument("--netns", help="the interface is in this `ip netns` namespace")
    p.add_argument("--pin-root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--state-root", default=None, help=argparse.SUPPRESS)
    add_json(p)
    p.set_defaults(func=cmd_dump)

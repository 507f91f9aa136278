"""``pyxdp trafficgen``: send live frames out of an interface, with progress and a report.

Only inside a network namespace you made (``--netns``) or out of an interface you own:
traffic goes wherever the interface leads.  Addresses default to the test ranges.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from pyxdp.cli._args import COUNT, PORT, SECONDS, int_range
from pyxdp.cli._render import add_json, print_json
from pyxdp.trafficgen import MIN_FRAME, PROTOS


def cmd_trafficgen(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pyxdp.testbed import check_address
    from pyxdp.trafficgen import Generator, template
    from pyxdp.xdp import ifindex_of, in_netns

    family = 6 if args.ipv6 else 4
    src = args.src or ("198.18.0.1" if family == 4 else "2001:db8::1")
    dst = args.dst or ("198.18.0.2" if family == 4 else "2001:db8::2")
    for a in (src, dst):
        check_address(a)
    if family == 4 and args.sources > 1:  # the varied sources too, not just the first
        import ipaddress

        check_address(str(ipaddress.IPv4Address(src) + args.sources - 1))
    frame = template(args.proto, family=family, src=src, dst=dst, smac=args.src_mac,
                     dmac=args.dst_mac, sport=args.sport, dport=args.dport, size=args.size)
    console = Console(stderr=True)
    done = [0]

    def run() -> Any:
        idx = ifindex_of(args.iface)
        with Generator(idx, frame, sources=args.sources, ports=args.ports) as g:
            return g.run(args.count, duration=args.duration, threads=args.threads,
                         progress=lambda n: done.__setitem__(0, n))

    result: dict[str, Any] = {}

    def worker() -> None:
        try:
            result["report"] = in_netns(args.netns, run)
        except BaseException as e:  # shown after the progress bar
            result["error"] = e

    t = threading.Thread(target=worker)
    t.start()
    if not args.json:
        with Progress(TextColumn("sending"), BarColumn(), TextColumn("{task.completed:,.0f}"
                      " / {task.total:,.0f} frames"), TimeElapsedColumn(),
                      console=console, transient=True) as prog:
            task = prog.add_task("send", total=args.count)
            while t.is_alive():
                prog.update(task, completed=done[0])
                time.sleep(0.1)
    t.join()
    if "error" in result:
        raise result["error"]
    rep = result["report"]
    if args.json:
        print_json(rep.as_dict())
    else:
        print(f"sent {rep.sent:,} frames of {rep.frame_len} B in {rep.seconds:.2f} s on"
              f" {rep.threads} thread(s): {rep.pps / 1e6:.2f} Mpps,"
              f" {rep.bps / 1e9:.2f} Gbit/s on the wire (generator's clock)")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("trafficgen")
    p.add_argument("iface")
    p.add_argument("--netns", help="send from inside this `ip netns` namespace")
    p.add_argument("--proto", choices=PROTOS, default="udp")
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("--src")
    p.add_argument("--dst")
    p.add_argument("--src-mac", default="02:00:00:00:00:01")
    p.add_argument("--dst-mac", default="02:00:00:00:00:02")
    p.add_argument("--sport", type=PORT, default=1024)
    p.add_argument("--dport", type=PORT, default=9)
    p.add_argument("--size", type=int_range(1, 65535), default=MIN_FRAME,
                   help="frame bytes without FCS")
    p.add_argument("--sources", type=COUNT, default=1, help="vary the source over N addresses")
    p.add_argument("--ports", type=int_range(1, 65536), default=1,
                   help="vary the source port over N ports")
    p.add_argument("--count", type=COUNT, default=1_000_000)
    p.add_argument("--duration", type=SECONDS, default=10.0, help="upper bound in seconds")
    p.add_argument("--threads", type=int_range(1, 1024), default=1)
    add_json(p)
    p.set_defaults(func=cmd_trafficgen)

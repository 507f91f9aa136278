"""``pyxdp top``: a live view of every XDP program (see :mod:`pyxdp.apps.top`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyxdp.cli._args import COUNT, float_range
from pyxdp.cli._render import add_json


def cmd_top(args: argparse.Namespace) -> int:
    from pyxdp.apps import top
    from pyxdp.xdp import in_netns

    roots = {k: v for k, v in (("pin_root", args.pin_root), ("state_root", args.state_root))
             if v}

    def once() -> list[dict[str, Any]]:
        return in_netns(args.netns, lambda: top.measure(args.interval, **roots))

    if args.json or args.once:
        rows = once()
        if args.json:
            print(top.as_json(rows))
        else:
            from rich.console import Console

            Console().print(top.render(rows))
        return 0
    from rich.live import Live

    n = 0
    with Live(top.render([]), refresh_per_second=4, screen=False) as live:
        while args.count is None or n < args.count:
            live.update(top.render(once()))
            n += 1
    print(f"{n} refreshes", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("top")
    p.add_argument("--once", action="store_true", help="one reading, then exit")
    p.add_argument("--interval", type=float_range(0.05, 60), default=1.0,
                   help="seconds between readings (default 1)")
    p.add_argument("--count", type=COUNT, default=None, help="stop after N refreshes")
    p.add_argument("--netns", help="look inside this `ip netns` namespace")
    p.add_argument("--pin-root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--state-root", default=None, help=argparse.SUPPRESS)
    add_json(p)
    p.set_defaults(func=cmd_top)

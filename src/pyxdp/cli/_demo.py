"""``pyxdp demo``: the filter protecting a TCP service from a flood (see
:mod:`pyxdp.apps.demo`); ``pyxdp demo lb``: the load balancer (:mod:`pyxdp.apps.lb.demo`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyxdp._privilege import can_run_test_beds
from pyxdp.cli._render import add_json, print_json


def _phase(p: Any) -> dict[str, Any]:
    c = p.client
    return {"phase": p.name, "answered_per_s": c.rps, "answered": c.answered,
            "failed": c.failed, "p50_ms": c.p50, "p99_ms": c.pct(0.99),
            "flood_mpps": p.flood_mpps if p.flood_sent else None,
            "stats": {k: {"packets": n, "bytes": b} for k, (n, b) in (p.stats or {}).items()}}


def cmd_demo(args: argparse.Namespace) -> int:
    from pyxdp.apps import demo

    if args.which == "lb":
        from pyxdp.apps.lb import demo as lbdemo

        if not args.json:
            return lbdemo.main(emulator=args.emulator)
        if can_run_test_beds() and not args.emulator:
            print_json({"mode": "kernel", "phases": lbdemo.run_kernel_demo(
                log=lambda line: print(line, file=sys.stderr))})
        else:
            print_json({"mode": "emulator", **lbdemo.run_emulator_demo(
                log=lambda line: print(line, file=sys.stderr))})
        return 0
    if not args.json:
        return demo.main(emulator=args.emulator)

    def log(line: str) -> None:            # progress to stderr: stdout is the document
        print(line, file=sys.stderr)

    if can_run_test_beds() and not args.emulator:
        print_json({"mode": "kernel",
                    "phases": [_phase(p) for p in demo.run_kernel_demo(log=log)]})
    else:
        print_json({"mode": "emulator", **demo.run_emulator_demo(log=log)})
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("demo")
    p.add_argument("which", nargs="?", choices=["filter", "lb"], default="filter",
                   help="filter (a flood stopped at XDP, the default) or lb (a service"
                        " behind a VIP, a real drained and failing)")
    p.add_argument("--emulator", action="store_true", help="use the emulator even as root")
    add_json(p)
    p.set_defaults(func=cmd_demo)

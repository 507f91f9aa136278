"""``pyxdp demo``: the README's main job (see :mod:`pyxdp.apps.demo`)."""

from __future__ import annotations

import argparse


def cmd_demo(args: argparse.Namespace) -> int:
    from pyxdp.apps import demo

    return demo.main(emulator=args.emulator)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="XDP protecting a service from a flood on a test bed"
                                    " (emulator when not root)")
    p.add_argument("--emulator", action="store_true", help="use the emulator even as root")
    p.set_defaults(func=cmd_demo)

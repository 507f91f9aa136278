"""The ``pyxdp`` command line: thin wrappers that parse, call the library, and render.

Each command group lives in its own module with a ``register(subparsers)`` function; the
library does the work, so everything here is also reachable from Python.  Errors of ours
(:class:`~pyxdp.errors.PyxdpError`, including the kernel's ``OSError``s) print one clear
message and exit 1; argument mistakes exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pyxdp import __version__
from pyxdp.errors import PyxdpError

# command-group modules, imported lazily; a group not built yet is simply absent
COMMAND_MODULES = ("_asm", "_emu", "_kernel", "_xdp", "_trafficgen", "_bench", "_demo", "_compile",
                   "_filter")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyxdp", description="Program the Linux kernel's eXpress Data Path from Python.")
    parser.add_argument("--version", action="version", version=f"pyxdp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"pyxdp.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"pyxdp.cli.{name}":
                continue  # a command group not built yet
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (PyxdpError, OSError) as e:
        print(f"pyxdp {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pyxdp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

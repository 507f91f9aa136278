"""Command-line options of the benchmarks, importing nothing but argparse, so that
``pyxdp --help`` can describe ``pyxdp bench`` without loading the benchmark itself."""

from __future__ import annotations

import argparse

from pyxdp.cli._args import COUNT, SECONDS

DEFAULT_ROUNDS = 5
MIN_ROUNDS = 5


def common(ap: argparse.ArgumentParser, rounds: int = DEFAULT_ROUNDS) -> None:
    """The options every benchmark takes: --rounds, --out, --no-write, --note, --json."""
    ap.add_argument("--rounds", type=int, default=rounds,
                    help=f"alternating rounds per comparison (at least {MIN_ROUNDS};"
                         f" default {rounds})")
    ap.add_argument("--out", default=None,
                    help="directory for <name>.json and <name>.md (default: bench/results"
                         " of the source checkout, else of the current directory)")
    ap.add_argument("--no-write", action="store_true", help="write no files")
    ap.add_argument("--note", action="append", default=[], metavar="TEXT",
                    help="a note about this run for the markdown (repeatable)")
    ap.add_argument("--json", action="store_true",
                    help="print the results document (JSON) on stdout and nothing else;"
                         " progress goes to stderr")


def xdp_table(ap: argparse.ArgumentParser) -> None:
    """The options of the XDP table (``pyxdp bench``, ``python -m pyxdp.bench.xdp_table``)."""
    ap.add_argument("--count", type=COUNT, default=2_000_000, help="frames per send")
    ap.add_argument("--duration", type=SECONDS, default=4.0, help="max seconds per send")
    ap.add_argument("--no-refs", action="store_true",
                    help="skip the C generator and xdp-loader references")
    common(ap)

"""``pyxdp bench``: the seed's table on a self-made veth bed, with its references."""

from __future__ import annotations

import argparse
import os


def cmd_bench(args: argparse.Namespace) -> int:
    from pyxdp.bench.seed import SeedBench, write_results

    if os.geteuid() != 0:
        print("pyxdp bench needs root: it builds network namespaces and attaches XDP")
        return 1
    res = SeedBench(count=args.count, duration=args.duration, refs=not args.no_refs).run()
    paths = write_results(res, args.out)
    print()
    with open(paths[1]) as f:
        print(f.read())
    print("results: " + ", ".join(paths))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="reproduce the seed's TC/XDP table on a veth test bed")
    p.add_argument("--count", type=int, default=2_000_000, help="frames per row")
    p.add_argument("--duration", type=float, default=4.0, help="max seconds per row")
    p.add_argument("--out", default="bench/results", help="where to write json/md/png")
    p.add_argument("--no-refs", action="store_true", help="skip the C / xdp-loader references")
    p.set_defaults(func=cmd_bench)

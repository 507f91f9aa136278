"""``pyxdp bench``: TC vs XDP drop/TX rates on a veth test bed, with reference tools side by
side (:mod:`pyxdp.bench.xdp_table`)."""

from __future__ import annotations

import argparse


def cmd_bench(args: argparse.Namespace) -> int:
    from pyxdp.bench import xdp_table
    from pyxdp.bench.options import MIN_ROUNDS

    if args.rounds < MIN_ROUNDS:
        args.parser.error(f"--rounds must be at least {MIN_ROUNDS}")
    return xdp_table.run(args)


def register(sub: argparse._SubParsersAction) -> None:
    from pyxdp.bench import options

    p = sub.add_parser(
        "bench", help="TC vs XDP drop/TX rates on a veth test bed, with reference tools"
        " side by side",
        description="Measure where a packet is best dropped: TC ingress, nftables, XDP"
        " generic and native drop, XDP TX and XDP_PASS, on a veth pair in private network"
        " namespaces (root), sent by pyxdp's live-frames generator and counted at the sink."
        " Beside them, pyxdp's generator against a C (libbpf) generator, and the same drop"
        " object loaded by pyxdp and by xdp-loader.  Every row is measured in alternating"
        " rounds; the results give median and spread per row and say when a difference is"
        " within the spread.  Writes xdp_table.json, .md and .png.")
    options.xdp_table(p)
    p.set_defaults(func=cmd_bench, parser=p)

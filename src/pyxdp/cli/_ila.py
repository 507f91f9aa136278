"""``pyxdp ila ...``: the ILA translator's command line (see :mod:`pyxdp.apps.ila`).

Every command reopens the pinned translator of the namespace (``--netns NS`` or the
current one), so it translates on while no control plane runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyxdp.cli import _portapp as pa
from pyxdp.cli._render import UsageError, print_json, table


def _app() -> Any:
    from pyxdp.apps.ila import Ila
    return Ila


def cmd_attach(args: argparse.Namespace) -> int:
    from pyxdp.apps.ila import Ila
    from pyxdp.apps.ila.config import load_config
    from pyxdp.xdp import in_netns

    if not args.config:
        raise UsageError("ila attach needs --config FILE (ports, role, [[sir]], mappings)")
    cfg = load_config(args.config)
    mode = args.mode or cfg.mode

    def run() -> dict[str, Any]:
        r = Ila.attach(list(cfg.ports), mode, role=cfg.role, sirs=cfg.sirs,
                       mappings=cfg.mappings, locator_ranges=cfg.locator_ranges,
                       max_mappings=cfg.max_mappings, **pa.roots(args))
        try:
            return {"prog_ids": r.program_ids(), "mappings": len(r.mappings())}
        finally:
            r.close()

    got = in_netns(args.netns, run)
    if args.json:
        print_json({"ports": list(cfg.ports), "role": cfg.role, "mode": mode, **got})
    else:
        print(f"ila ({cfg.role}) attached to {', '.join(cfg.ports)}, {got['mappings']}"
              f" mappings, program id {next(iter(got['prog_ids'].values()))}")
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    return pa.detach(_app, args)


def _collect(r: Any) -> dict[str, Any]:
    return {"ports": [p.name for p in r.ports], "role": r.role,
            "reasons": {k: {"packets": p, "bytes": b} for k, (p, b) in r.stats().items()}}


def _rows(d: dict[str, Any], prev: dict[str, Any] | None, dt: float) -> list[list[str]]:
    rows = []
    for name, c in d["reasons"].items():
        before = prev["reasons"][name]["packets"] if prev is not None else None
        rows.append([name, f"{c['packets']:,}", f"{c['bytes']:,}",
                     pa.rate(c["packets"], before, dt)])
    return rows


COLUMNS = ("counter", "packets", "bytes", "pps")


def cmd_stats(args: argparse.Namespace) -> int:
    return pa.stats(_app, args, _collect, _rows, COLUMNS)


def cmd_serve_metrics(args: argparse.Namespace) -> int:
    from pyxdp.apps.ila.metrics import serve
    return pa.serve_metrics(_app, args, serve)


def cmd_map(args: argparse.Namespace) -> int:
    op = args.op
    if op == "list":
        rows = pa.open_app(_app, args, lambda r: r.mappings())
        if args.json:
            print_json({"mappings": rows})
        else:
            table(("sir", "identifier", "locator"),
                  [[m["sir"], m["identifier"], m["locator"]] for m in rows], title="ILA mappings")
        return 0
    need = {"add": 2, "move": 2, "del": 1}[op]
    if len(args.args) != need:
        raise UsageError(f"ila map {op} takes IDENTIFIER{' LOCATOR' if need == 2 else ''}")

    def run(r: Any) -> None:
        if op == "add":
            r.add(args.args[0], args.args[1], args.sir)
        elif op == "move":
            r.move(args.args[0], args.args[1], args.sir)
        else:
            r.remove(args.args[0], args.sir)

    pa.open_app(_app, args, run)
    if args.json:
        print_json({"op": op, "args": args.args, "ok": True})
    else:
        print(f"ila map {op} {' '.join(args.args)}: done")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    n = pa.open_app(_app, args, lambda r: r.load_file(args.file))
    if args.json:
        print_json({"mappings": n})
    else:
        print(f"ila: {n} mappings installed (atomically)")
    return 0


def register(sub: Any) -> None:
    add = pa.actions(sub, "ila")
    p = add("attach", cmd_attach, "translate on the interfaces of a config file")
    p.add_argument("--mode", choices=["generic", "native", "skb", "drv"], default=None)
    p.add_argument("--config", help="TOML file (ports, role, [[sir]], [[mapping]], ...)")
    p = add("map", cmd_map, "list, add, del or move single mappings")
    p.add_argument("op", choices=["list", "add", "del", "move"])
    p.add_argument("args", nargs="*", metavar="ARG", help="IDENTIFIER [LOCATOR]")
    p.add_argument("--sir", default=None, help="the SIR prefix (when there are several)")
    p = add("load", cmd_load, "replace the whole mapping table from a mapping file")
    p.add_argument("file", metavar="FILE", help="lines: IDENTIFIER LOCATOR [SIR-PREFIX]")
    pa.add_common_actions(add, "ila", detach=cmd_detach, stats=cmd_stats,
                          serve_metrics=cmd_serve_metrics, port=9105,
                          stats_help="per-reason counters")

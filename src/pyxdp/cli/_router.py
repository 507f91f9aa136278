"""``pyxdp router ...``: the XDP router's command line (see :mod:`pyxdp.apps.router`).

Every command reopens the pinned router of the namespace (``--netns NS`` or the current
one), so the router forwards on while no control plane runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyxdp.cli import _portapp as pa
from pyxdp.cli._render import UsageError, print_json

# pyxdp.apps.router (and with it the compiler) is imported by the commands, not here


def _app() -> Any:
    from pyxdp.apps.router import Router
    return Router


def cmd_attach(args: argparse.Namespace) -> int:
    from pyxdp.apps.router import Router
    from pyxdp.apps.router.config import RouterConfig, load_config
    from pyxdp.xdp import in_netns

    if args.config:
        cfg = load_config(args.config)
        if args.ifaces:
            raise UsageError("give the ports on the command line or in --config, not both")
    elif not args.ifaces:
        raise UsageError("router attach needs one or more interfaces (or --config FILE)")
    else:
        cfg = RouterConfig(tuple(args.ifaces))
    mode = args.mode or cfg.mode
    direct = args.direct or cfg.direct
    allow = args.allow_mtu_mismatch or cfg.allow_mtu_mismatch

    def run() -> dict[str, Any]:
        r = Router.attach(list(cfg.ports), mode, direct=direct, allow_mtu_mismatch=allow,
                          **pa.roots(args))
        try:
            return r.program_ids()
        finally:
            r.close()

    ids = in_netns(args.netns, run)
    if args.json:
        print_json({"ports": list(cfg.ports), "mode": mode, "direct": direct,
                    "prog_ids": ids})
    else:
        print(f"router attached to {', '.join(cfg.ports)}"
              f"{' (policy rules skipped)' if direct else ''}, program id"
              f" {next(iter(ids.values()))}")
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    return pa.detach(_app, args)


def _collect(r: Any) -> dict[str, Any]:
    return {"ports": [p.name for p in r.ports], "direct": r.direct,
            "reasons": {k: {"packets": p, "bytes": b} for k, (p, b) in r.stats().items()},
            "egress": {k: {"packets": p, "bytes": b} for k, (p, b) in r.egress().items()}}


def _rows(d: dict[str, Any], prev: dict[str, Any] | None, dt: float) -> list[list[str]]:
    rows = []
    for group in ("reasons", "egress"):
        for name, c in d[group].items():
            before = prev[group][name]["packets"] if prev is not None else None
            label = name if group == "reasons" else f"egress {name}"
            rows.append([label, f"{c['packets']:,}", f"{c['bytes']:,}",
                         pa.rate(c["packets"], before, dt)])
    return rows


COLUMNS = ("counter", "packets", "bytes", "pps")


def cmd_stats(args: argparse.Namespace) -> int:
    return pa.stats(_app, args, _collect, _rows, COLUMNS)


def cmd_serve_metrics(args: argparse.Namespace) -> int:
    from pyxdp.apps.router.metrics import serve
    return pa.serve_metrics(_app, args, serve)


def register(sub: Any) -> None:
    add = pa.actions(sub, "router")
    p = add("attach", cmd_attach, "route between these interfaces at XDP")
    p.add_argument("ifaces", nargs="*", metavar="IFACE")
    p.add_argument("--mode", choices=["generic", "native", "skb", "drv"], default=None)
    p.add_argument("--config", help="TOML file (ports, mode, direct, allow_mtu_mismatch)")
    p.add_argument("--direct", action="store_true",
                   help="skip policy-routing rules (BPF_FIB_LOOKUP_DIRECT): main table only")
    p.add_argument("--allow-mtu-mismatch", action="store_true",
                   help="accept ports with different MTUs")
    pa.add_common_actions(add, "router", detach=cmd_detach, stats=cmd_stats,
                          serve_metrics=cmd_serve_metrics, port=9102,
                          stats_help="per-reason and per-egress counters")

"""``pyxdp router ...``: the XDP router's command line (see :mod:`pyxdp.apps.router`).

Every command reopens the pinned router of the namespace (``--netns NS`` or the current
one), so the router forwards on while no control plane runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from pyxdp.cli._args import PORT, SECONDS_OR_ZERO, float_range
from pyxdp.cli._render import UsageError, add_json, print_json, table

# pyxdp.apps.router (and with it the compiler) is imported by the commands, not here


def _roots(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    if args.pin_root:
        out["pin_root"] = args.pin_root
    if args.state_root:
        out["state_root"] = args.state_root
    return out


def _open(args: argparse.Namespace, fn: Any) -> Any:
    """Run ``fn(router)`` on the reopened router, inside ``--netns`` if given."""
    from pyxdp.apps.router import Router
    from pyxdp.xdp import in_netns

    def run() -> Any:
        r = Router.open(**_roots(args))
        try:
            return fn(r)
        finally:
            r.close()

    return in_netns(args.netns, run)


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
                          **_roots(args))
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
    if args.force:
        from pyxdp.apps.router import Router
        from pyxdp.xdp import in_netns

        done = in_netns(args.netns, lambda: Router.force_detach(**_roots(args)))
    else:
        done = _open(args, lambda r: r.detach())
    if args.json:
        print_json({"detached": True, "steps": done})
    else:
        for line in done:
            print(line)
        print("router detached")
    return 0


def _collect(r: Any) -> dict[str, Any]:
    return {"ports": [p.name for p in r.ports], "direct": r.direct,
            "reasons": {k: {"packets": p, "bytes": b} for k, (p, b) in r.stats().items()},
            "egress": {k: {"packets": p, "bytes": b} for k, (p, b) in r.egress().items()}}


def _rows(d: dict[str, Any], prev: dict[str, Any] | None, dt: float) -> list[list[str]]:
    rows = []
    for group in ("reasons", "egress"):
        for name, c in d[group].items():
            rate = ""
            if prev is not None and dt > 0:
                rate = f"{(c['packets'] - prev[group][name]['packets']) / dt:,.0f}"
            label = name if group == "reasons" else f"egress {name}"
            rows.append([label, f"{c['packets']:,}", f"{c['bytes']:,}", rate])
    return rows


COLUMNS = ("counter", "packets", "bytes", "pps")


def cmd_stats(args: argparse.Namespace) -> int:
    if args.json:
        print_json(_open(args, _collect))
        return 0

    def show(r: Any) -> None:
        title = f"pyxdp router on {', '.join(p.name for p in r.ports)}"
        d = _collect(r)
        if not args.watch:
            table(COLUMNS, _rows(d, None, 0), title=title, right={"packets", "bytes", "pps"})
            return
        from rich.live import Live
        from rich.table import Table

        def render(prev: dict[str, Any] | None, now: dict[str, Any], dt: float) -> Table:
            t = Table(title=title)
            for col in COLUMNS:
                t.add_column(col, justify="left" if col == "counter" else "right")
            for row in _rows(now, prev, dt):
                t.add_row(*row)
            return t

        with Live(render(None, d, 0), refresh_per_second=4) as live:
            end = time.monotonic() + args.watch
            last = time.monotonic()
            while time.monotonic() < end:
                time.sleep(args.interval)
                now = time.monotonic()
                new = _collect(r)
                live.update(render(d, new, now - last))
                d, last = new, now

    _open(args, show)
    return 0


def cmd_serve_metrics(args: argparse.Namespace) -> int:
    from pyxdp.apps.router import Router
    from pyxdp.apps.router.metrics import serve
    from pyxdp.xdp import in_netns

    r = in_netns(args.netns, lambda: Router.open(**_roots(args)))
    try:
        server = serve(r, args.port, args.addr)
        url = f"http://{args.addr}:{args.port}/metrics"
        if args.json:
            print_json({"url": url, "duration": args.duration or None})
        else:
            print(f"serving metrics of the router at {url}"
                  + (f" for {args.duration:g} s" if args.duration else " (Ctrl-C to stop)"))
        sys.stdout.flush()
        try:
            end = time.monotonic() + args.duration if args.duration else None
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
        finally:
            server.shutdown()
    finally:
        r.close()
    return 0


def register(sub: Any) -> None:
    top = sub.add_parser("router")
    rsub = top.add_subparsers(dest="router_command", metavar="ACTION", prog=top.prog)
    rsub.required = True

    def add(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = rsub.add_parser(name, help=help)
        p.add_argument("--netns", default=None, help="act inside this `ip netns` namespace")
        p.add_argument("--pin-root", default=None, help=argparse.SUPPRESS)
        p.add_argument("--state-root", default=None, help=argparse.SUPPRESS)
        add_json(p)
        p.set_defaults(func=func)
        return p

    p = add("attach", cmd_attach, "route between these interfaces at XDP")
    p.add_argument("ifaces", nargs="*", metavar="IFACE")
    p.add_argument("--mode", choices=["generic", "native", "skb", "drv"], default=None)
    p.add_argument("--config", help="TOML file (ports, mode, direct, allow_mtu_mismatch)")
    p.add_argument("--direct", action="store_true",
                   help="skip policy-routing rules (BPF_FIB_LOOKUP_DIRECT): main table only")
    p.add_argument("--allow-mtu-mismatch", action="store_true",
                   help="accept ports with different MTUs")
    p = add("detach", cmd_detach, "detach the router from all its ports and remove its state")
    p.add_argument("--force", action="store_true",
                   help="also clear a stale router (its interfaces are gone)")
    p = add("stats", cmd_stats, "per-reason and per-egress counters")
    p.add_argument("--watch", type=SECONDS_OR_ZERO, default=0,
                   help="live table for this many seconds")
    p.add_argument("--interval", type=float_range(0.05, 3600), default=1.0)
    p = add("serve-metrics", cmd_serve_metrics, "Prometheus exporter of the counters")
    p.add_argument("--port", type=PORT, default=9102)
    p.add_argument("--addr", default="127.0.0.1")
    p.add_argument("--duration", type=SECONDS_OR_ZERO, default=0, help="stop after N seconds")

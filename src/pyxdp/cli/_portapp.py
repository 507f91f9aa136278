"""What the command lines of the multi-port apps (``pyxdp router``, ``pyxdp switch``) share:
the common options, reopening the pinned app inside ``--netns``, detach, the counter table
(``stats``, ``--watch``) and the Prometheus exporter.

Every command reopens the pinned app of the namespace, so the app runs on while no control
plane does.  The app classes are imported by the commands, not here (``pyxdp --help`` must
not compile data planes).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from pyxdp.cli._args import PORT, SECONDS_OR_ZERO, float_range
from pyxdp.cli._render import add_json, print_json, table

Rows = Callable[[dict[str, Any], dict[str, Any] | None, float], list[list[str]]]


def roots(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    if args.pin_root:
        out["pin_root"] = args.pin_root
    if args.state_root:
        out["state_root"] = args.state_root
    return out


def open_app(app: Callable[[], Any], args: argparse.Namespace, fn: Callable[[Any], Any]
             ) -> Any:
    """Run ``fn(instance)`` on the reopened app (``app()`` gives its class), inside
    ``--netns`` if given."""
    from pyxdp.xdp import in_netns

    cls = app()

    def run() -> Any:
        r = cls.open(**roots(args))
        try:
            return fn(r)
        finally:
            r.close()

    return in_netns(args.netns, run)


def detach(app: Callable[[], Any], args: argparse.Namespace) -> int:
    from pyxdp.xdp import in_netns

    cls = app()
    if args.force:
        done = in_netns(args.netns, lambda: cls.force_detach(**roots(args)))
    else:
        done = open_app(app, args, lambda r: r.detach())
    if args.json:
        print_json({"detached": True, "steps": done})
    else:
        for line in done:
            print(line)
        print(f"{cls.APP} detached")
    return 0


def rate(now: int, before: int | None, dt: float) -> str:
    return f"{(now - before) / dt:,.0f}" if before is not None and dt > 0 else ""


def stats(app: Callable[[], Any], args: argparse.Namespace, collect: Callable[[Any], Any],
          rows: Rows, columns: tuple[str, ...]) -> int:
    """``stats``: ``collect(app)`` as JSON, a table, or a live table (``--watch``) whose
    rows ``rows(now, previous, seconds between)`` gives."""
    if args.json:
        print_json(open_app(app, args, collect))
        return 0
    right = set(columns[1:])

    def show(r: Any) -> None:
        title = f"pyxdp {r.APP} on {', '.join(p.name for p in r.ports)}"
        d = collect(r)
        if not args.watch:
            table(columns, rows(d, None, 0), title=title, right=right)
            return
        from rich.live import Live
        from rich.table import Table

        def render(prev: dict[str, Any] | None, now: dict[str, Any], dt: float) -> Table:
            t = Table(title=title)
            for col in columns:
                t.add_column(col, justify="right" if col in right else "left")
            for row in rows(now, prev, dt):
                t.add_row(*row)
            return t

        with Live(render(None, d, 0), refresh_per_second=4) as live:
            end = time.monotonic() + args.watch
            last = time.monotonic()
            while time.monotonic() < end:
                time.sleep(args.interval)
                now = time.monotonic()
                new = collect(r)
                live.update(render(d, new, now - last))
                d, last = new, now

    open_app(app, args, show)
    return 0


def serve_metrics(app: Callable[[], Any], args: argparse.Namespace,
                  serve: Callable[[Any, int, str], Any]) -> int:
    from pyxdp.xdp import in_netns

    cls = app()
    r = in_netns(args.netns, lambda: cls.open(**roots(args)))
    try:
        server = serve(r, args.port, args.addr)
        url = f"http://{args.addr}:{args.port}/metrics"
        if args.json:
            print_json({"url": url, "duration": args.duration or None})
        else:
            print(f"serving metrics of the {cls.APP} at {url}"
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


def actions(sub: Any, name: str) -> Callable[..., argparse.ArgumentParser]:
    """The ``pyxdp NAME ACTION`` parser; returns ``add(action, func, help)`` that adds an
    action with the common options (``--netns``, ``--json``, the hidden roots)."""
    top = sub.add_parser(name)
    asub = top.add_subparsers(dest=f"{name}_command", metavar="ACTION", prog=top.prog)
    asub.required = True

    def add(action: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = asub.add_parser(action, help=help)
        p.add_argument("--netns", default=None, help="act inside this `ip netns` namespace")
        p.add_argument("--pin-root", default=None, help=argparse.SUPPRESS)
        p.add_argument("--state-root", default=None, help=argparse.SUPPRESS)
        add_json(p)
        p.set_defaults(func=func)
        return p

    return add


def add_common_actions(add: Callable[..., argparse.ArgumentParser], app: str, *,
                       detach: Any, stats: Any, serve_metrics: Any, port: int,
                       stats_help: str) -> None:
    """``detach``, ``stats`` and ``serve-metrics``, the same for every multi-port app."""
    p = add("detach", detach, f"detach the {app} from all its ports and remove its state")
    p.add_argument("--force", action="store_true",
                   help=f"also clear a stale {app} (its interfaces are gone)")
    p = add("stats", stats, stats_help)
    p.add_argument("--watch", type=SECONDS_OR_ZERO, default=0,
                   help="live table for this many seconds")
    p.add_argument("--interval", type=float_range(0.05, 3600), default=1.0)
    p = add("serve-metrics", serve_metrics, "Prometheus exporter of the counters")
    p.add_argument("--port", type=PORT, default=port)
    p.add_argument("--addr", default="127.0.0.1")
    p.add_argument("--duration", type=SECONDS_OR_ZERO, default=0, help="stop after N seconds")


__all__ = ["actions", "add_common_actions", "detach", "open_app", "rate", "roots",
           "serve_metrics", "stats"]

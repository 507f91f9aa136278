"""``pyxdp filter ...``: the DDoS filter's command line (see :mod:`pyxdp.apps.filter`).

Every command reopens the pinned filter, so any number of control planes (or restarts)
see the same rules and counters.  Rules on the command line are ``key=value`` words with
the rule file's keys: ``pyxdp filter add eth0 bad-net src=198.19.0.0/16 proto=tcp
dport=80,443 rate.pps=1000``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from pyxdp.cli._xdp import _in_netns

LIST_KEYS = {"src", "dst", "sport", "dport"}
INT_KEYS = {"vlan", "rate.pps", "rate.bps", "rate.burst", "pattern.offset"}
BOOL_KEYS = {"fragment", "ip_options", "malformed"}


def parse_words(name: str, words: list[str]) -> dict[str, Any]:
    """``key=value`` words to a rule table, as a rule file would hold it."""
    from pyxdp.apps.filter import RuleError

    table: dict[str, Any] = {"name": name}
    seen: set[str] = set()
    for w in words:
        key, sep, value = w.partition("=")
        if not sep or not key:
            raise RuleError(f"expected key=value, got {w!r}", "command line", name)
        outer = key.split(".", 1)[0]
        if key in seen or ("." in key and outer in seen) or ("." not in key and any(
                k.startswith(key + ".") for k in seen)):
            # ``rate=5 rate.pps=1``: one key as a value and as a table (or twice)
            raise RuleError(f"{outer}: given more than once", "command line", name)
        seen.add(key)
        if key in INT_KEYS:
            try:
                v: Any = int(value, 0)
            except ValueError:
                raise RuleError(f"{key}: expected an integer, got {value!r}", "command line",
                                name) from None
        elif key in BOOL_KEYS:
            if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise RuleError(f"{key}: expected true or false, got {value!r}",
                                "command line", name)
            v = value.lower() in ("true", "yes", "1")
        elif key in LIST_KEYS:
            v = [x for x in value.split(",") if x]
        elif key == "proto" and value.isdigit():
            v = int(value)
        else:
            v = value
        if "." in key:
            outer, inner = key.split(".", 1)
            table.setdefault(outer, {})[inner] = v
        else:
            table[key] = v
    return table


def _open(args: argparse.Namespace, fn: Any) -> Any:
    """Run ``fn(filter)`` on the reopened filter, inside ``--netns`` if given."""
    from pyxdp.apps.filter import Filter

    def run() -> Any:
        f = Filter.open(args.iface, args.pin_root, state_root=args.state_root)
        try:
            return fn(f)
        finally:
            f.close()

    return _in_netns(args.netns, run)


def cmd_attach(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter import Action, Filter, RuleSet, load_rules

    rs = load_rules(args.rules) if args.rules else RuleSet()
    if args.default:
        rs.default = Action(args.default)
    if args.dry_run:
        rs.dry_run = True

    def run() -> str:
        f = Filter.attach(args.iface, args.mode, rs, args.pin_root, state_root=args.state_root)
        try:
            return (f"filter attached to {args.iface}: {len(rs.rules)} rule(s), default"
                    f" {rs.default.value}{', dry run' if rs.dry_run else ''}, program id"
                    f" {f.program_id()}")
        finally:
            f.close()

    print(_in_netns(args.netns, run))
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    if args.force:
        from pyxdp.apps.filter import Filter

        done = _in_netns(args.netns, lambda: Filter.force_detach(
            args.iface, args.pin_root, state_root=args.state_root))
        for line in done:
            print(line)
        print(f"filter detached from {args.iface} (forced)" if done
              else f"{args.iface}: no pyxdp filter found, nothing to do")
        return 0
    _open(args, lambda f: f.detach())
    print(f"filter detached from {args.iface}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter import parse_rule

    rule = parse_rule(parse_words(args.name, args.match), "command line")
    _open(args, lambda f: f.add(rule, args.position))
    print(f"added rule {rule.name!r} to {args.iface}")
    return 0


def cmd_del(args: argparse.Namespace) -> int:
    _open(args, lambda f: f.delete(args.name))
    print(f"deleted rule {args.name!r} from {args.iface}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter import load_rules

    rs = load_rules(args.file)
    t0 = time.monotonic()
    _open(args, lambda f: f.apply(rs))
    print(f"{args.iface}: {len(rs.rules)} rule(s) from {args.file} in force"
          f" ({time.monotonic() - t0:.2f} s, atomic)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter import Action, parse_address_list
    from pyxdp.apps.filter.rules import RuleError

    try:
        with open(args.list) as fh:
            text = fh.read()
    except OSError as e:
        raise RuleError(f"cannot read address list: {e.strerror}", args.list) from None
    rule = parse_address_list(text, args.list, name=args.name or "list",
                              action=Action.ALLOW if args.allow else Action.DENY,
                              direction="dst" if args.dst else "src")
    t0 = time.monotonic()

    _open(args, lambda f: f.upsert(rule))   # re-importing a list replaces it, under the lock
    n = len(rule.src) + len(rule.dst)
    print(f"{args.iface}: rule {rule.name!r} with {n} prefix(es) in force"
          f" ({time.monotonic() - t0:.2f} s)")
    return 0


def _rule_rows(f: Any) -> list[dict[str, Any]]:
    stats = f.stats()
    rows = []
    for r in f.rules().rules:
        match = []
        for key in ("src", "dst"):
            nets = getattr(r, key)
            if nets:
                shown = ", ".join(str(n) for n in nets[:3])
                match.append(f"{key} {shown}" + (f" (+{len(nets) - 3})" if len(nets) > 3 else ""))
        if r.proto is not None:
            match.append(f"proto {r.proto}")
        for key in ("sport", "dport"):
            if getattr(r, key):
                match.append(f"{key} " + ",".join(str(p) for p in getattr(r, key)))
        if r.tcp_flags is not None:
            match.append(f"tcp flags & {r.tcp_flags[0]:#04x} == {r.tcp_flags[1]:#04x}")
        if r.src_mac is not None:
            match.append(f"src_mac {r.src_mac.hex(':')}")
        for key in ("vlan", "fragment", "ip_options", "malformed"):
            if getattr(r, key) is not None:
                match.append(f"{key}={getattr(r, key)}")
        if r.length is not None:
            match.append(f"length {r.length[0]}-{r.length[1]}")
        if r.pattern is not None:
            pt = r.pattern
            match.append(f"{pt.base}+{pt.offset}: {pt.value.hex()}/{pt.mask.hex()}")
        if r.rate is not None:
            rt = r.rate
            limits = [f"{rt.pps} pps" if rt.pps else "", f"{rt.bps} bps" if rt.bps else ""]
            match.append(f"above {' and '.join(x for x in limits if x)} (burst {rt.burst})"
                         f" per /{rt.prefix4},/{rt.prefix6}")
        p, b = stats.get(r.name, (0, 0))
        rows.append({"name": r.name, "action": r.action.value, "match": "; ".join(match),
                     "packets": p, "bytes": b})
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    def collect(f: Any) -> dict[str, Any]:
        rs = f.rules()
        return {"iface": args.iface, "default": rs.default.value, "dry_run": rs.dry_run,
                "generation": f.generation, "rules": _rule_rows(f)}

    out = _open(args, collect)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"filter on {args.iface}: default {out['default']}"
                    f"{' (dry run)' if out['dry_run'] else ''}, generation {out['generation']}")
    for col in ("#", "rule", "action", "match", "packets", "bytes"):
        t.add_column(col)
    for i, r in enumerate(out["rules"], 1):
        t.add_row(str(i), r["name"], r["action"], r["match"], f"{r['packets']:,}",
                  f"{r['bytes']:,}")
    Console().print(t)
    return 0


def _stats_table(f: Any, prev: dict[str, tuple[int, int]] | None, dt: float) -> Any:
    from rich.table import Table

    stats = f.stats()
    t = Table(title=f"pyxdp filter on {f.iface} (generation {f.generation})")
    for col in ("rule", "packets", "bytes", "pps"):
        t.add_column(col, justify="right" if col != "rule" else "left")
    for name, (p, b) in stats.items():
        rate = ""
        if prev is not None and dt > 0:
            rate = f"{(p - prev.get(name, (0, 0))[0]) / dt:,.0f}"
        t.add_row(name, f"{p:,}", f"{b:,}", rate)
    talkers = f.top_talkers(5)
    if talkers:
        t.caption = "top dropped sources: " + ", ".join(f"{a} ({n:,})" for a, n in talkers)
    return t, stats


def cmd_stats(args: argparse.Namespace) -> int:
    if args.json:
        out = _open(args, lambda f: {"stats": {k: {"packets": p, "bytes": b}
                                               for k, (p, b) in f.stats().items()},
                                     "top_talkers": [[str(a), n]
                                                     for a, n in f.top_talkers(10)]})
        print(json.dumps(out, indent=2))
        return 0
    from rich.console import Console
    from rich.live import Live

    def show(f: Any) -> None:
        table, prev = _stats_table(f, None, 0)
        if not args.watch:
            Console().print(table)
            return
        with Live(table, refresh_per_second=4) as live:
            end = time.monotonic() + args.watch
            last = time.monotonic()
            while time.monotonic() < end:
                time.sleep(args.interval)
                now = time.monotonic()
                table, prev = _stats_table(f, prev, now - last)
                last = now
                live.update(table)

    _open(args, show)
    return 0


def cmd_serve_metrics(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter import Filter
    from pyxdp.apps.filter.metrics import serve

    f = _in_netns(args.netns, lambda: Filter.open(args.iface, args.pin_root,
                                                  state_root=args.state_root))
    try:
        server = serve(f, args.port, args.addr)
        print(f"serving metrics of the filter on {args.iface} at"
              f" http://{args.addr}:{args.port}/metrics"
              + (f" for {args.duration:g} s" if args.duration else " (Ctrl-C to stop)"),
              flush=True)
        try:
            end = time.monotonic() + args.duration if args.duration else None
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
        finally:
            server.shutdown()
    finally:
        f.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from pyxdp.apps.filter import PIN_ROOT, STATE_ROOT

    top = sub.add_parser("filter", help="DDoS protection: drop by prefix, port, pattern, rate")
    fsub = top.add_subparsers(dest="filter_command", metavar="ACTION")
    fsub.required = True

    def add(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = fsub.add_parser(name, help=help)
        p.add_argument("iface")
        p.add_argument("--netns", default=None, help="act inside this `ip netns` namespace")
        p.add_argument("--pin-root", default=PIN_ROOT, help=argparse.SUPPRESS)
        p.add_argument("--state-root", default=STATE_ROOT, help=argparse.SUPPRESS)
        p.set_defaults(func=func)
        return p

    p = add("attach", cmd_attach, "attach the filter (optionally with a rule file)")
    p.add_argument("--mode", choices=["generic", "native", "skb", "drv"], default=None)
    p.add_argument("--rules", help="TOML rule file")
    p.add_argument("--default", choices=["allow", "deny"], help="default policy")
    p.add_argument("--dry-run", action="store_true", help="count, drop nothing")
    p = add("detach", cmd_detach, "detach the filter and remove its state")
    p.add_argument("--force", action="store_true",
                   help="recover a filter whose link pin or state is lost or corrupt")
    p = add("add", cmd_add, "add a rule: NAME key=value ...")
    p.add_argument("name")
    p.add_argument("match", nargs="+", metavar="KEY=VALUE")
    p.add_argument("--position", type=int, default=None, help="priority position (0: first)")
    p = add("del", cmd_del, "delete a rule by name")
    p.add_argument("name")
    p = add("load", cmd_load, "replace all rules with a rule file, atomically")
    p.add_argument("file")
    p = add("import", cmd_import, "add (or replace) a rule from a plain address list")
    p.add_argument("list", help="one address or prefix per line (ipset/FireHOL style)")
    p.add_argument("--name", help="rule name (default: list)")
    p.add_argument("--dst", action="store_true", help="match destinations, not sources")
    p.add_argument("--allow", action="store_true", help="allow instead of deny")
    p = add("list", cmd_list, "the rules in force, with their counters")
    p.add_argument("--json", action="store_true")
    p = add("stats", cmd_stats, "per-rule counters and top dropped sources")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", type=float, default=0, help="live table for this many seconds")
    p.add_argument("--interval", type=float, default=1.0)
    p = add("serve-metrics", cmd_serve_metrics, "Prometheus exporter of the counters")
    p.add_argument("--port", type=int, default=9101)
    p.add_argument("--addr", default="127.0.0.1")
    p.add_argument("--duration", type=float, default=0, help="stop after N seconds")

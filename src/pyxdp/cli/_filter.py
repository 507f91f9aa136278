"""``pyxdp filter ...``: the DDoS filter's command line (see :mod:`pyxdp.apps.filter`).

Every command reopens the pinned filter, so any number of control planes (or restarts)
see the same rules and counters.  Rules on the command line are ``key=value`` words with
the rule file's keys: ``pyxdp filter add eth0 bad-net src=198.19.0.0/16 proto=tcp
dport=80,443 rate.pps=1000``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from pyxdp.cli._args import PORT, SECONDS_OR_ZERO, float_range, int_range
from pyxdp.cli._render import add_json, print_json, table

# pyxdp.apps.filter (and with it the compiler) is imported by the commands, not here


def _roots(args: argparse.Namespace) -> dict[str, Any]:
    """The pin and state roots given on the command line (else the filter's defaults)."""
    out = {}
    if args.pin_root:
        out["pin_root"] = args.pin_root
    if args.state_root:
        out["state_root"] = args.state_root
    return out


def _done(args: argparse.Namespace, text: str, **data: Any) -> int:
    """Report a change: one sentence, or with --json one document."""
    if args.json:
        print_json({"iface": args.iface, **data})
    else:
        print(text)
    return 0


def _open(args: argparse.Namespace, fn: Any) -> Any:
    """Run ``fn(filter)`` on the reopened filter, inside ``--netns`` if given."""
    from pyxdp.apps.filter import Filter
    from pyxdp.xdp import in_netns

    def run() -> Any:
        f = Filter.open(args.iface, **_roots(args))
        try:
            return fn(f)
        finally:
            f.close()

    return in_netns(args.netns, run)


def cmd_attach(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter import Action, Filter, RuleSet, load_rules
    from pyxdp.xdp import in_netns

    rs = load_rules(args.rules) if args.rules else RuleSet()
    if args.default:
        rs.default = Action(args.default)
    if args.dry_run:
        rs.dry_run = True

    def run() -> tuple[int, str | None]:
        chain: object = False if args.standalone else None
        if not args.standalone and (args.chain_pin_root or args.chain_state_root):
            from pyxdp.apps.chain import PIN_ROOT as CPIN
            from pyxdp.apps.chain import STATE_ROOT as CSTATE
            from pyxdp.apps.chain import Chain
            chain = Chain.open(args.iface, args.chain_pin_root or CPIN,
                               args.chain_state_root or CSTATE)
        f = Filter.attach(args.iface, args.mode, rs, **_roots(args),
                          replace_stale=args.replace, chain=chain, priority=args.priority)
        try:
            return f.program_id(), f.chain_stage
        finally:
            f.close()

    prog_id, stage = in_netns(args.netns, run)
    where = f" as stage {stage!r} of the chain" if stage else ""
    return _done(args, f"filter attached to {args.iface}{where}: {len(rs.rules)} rule(s),"
                       f" default {rs.default.value}{', dry run' if rs.dry_run else ''},"
                       f" program id {prog_id}",
                 rules=len(rs.rules), default=rs.default.value, dry_run=rs.dry_run,
                 prog_id=prog_id, chain_stage=stage)


def cmd_detach(args: argparse.Namespace) -> int:
    if args.force:
        from pyxdp.apps.filter import Filter
        from pyxdp.xdp import in_netns

        done = in_netns(args.netns, lambda: Filter.force_detach(args.iface, **_roots(args)))
        if args.json:
            print_json({"iface": args.iface, "forced": True, "found": bool(done),
                        "steps": done})
            return 0
        for line in done:
            print(line)
        print(f"filter detached from {args.iface} (forced)" if done
              else f"{args.iface}: no pyxdp filter found, nothing to do")
        return 0
    _open(args, lambda f: f.detach())
    return _done(args, f"filter detached from {args.iface}", forced=False, found=True)


def cmd_add(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter import parse_rule_words

    rule = parse_rule_words(args.name, args.match)
    _open(args, lambda f: f.add(rule, args.position))
    return _done(args, f"added rule {rule.name!r} to {args.iface}", added=rule.name)


def cmd_del(args: argparse.Namespace) -> int:
    _open(args, lambda f: f.delete(args.name))
    return _done(args, f"deleted rule {args.name!r} from {args.iface}", deleted=args.name)


def cmd_load(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter import load_rules

    rs = load_rules(args.file)
    t0 = time.monotonic()
    _open(args, lambda f: f.apply(rs))
    took = time.monotonic() - t0
    return _done(args, f"{args.iface}: {len(rs.rules)} rule(s) from {args.file} in force"
                       f" ({took:.2f} s, atomic)",
                 file=args.file, rules=len(rs.rules), seconds=took)


def cmd_import(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter import Action, parse_address_list
    from pyxdp.apps.filter.rules import read_text_file

    text = read_text_file(args.list, "address list", limit=None)
    rule = parse_address_list(text, args.list, name=args.name or "list",
                              action=Action.ALLOW if args.allow else Action.DENY,
                              direction="dst" if args.dst else "src")
    t0 = time.monotonic()
    _open(args, lambda f: f.upsert(rule))   # re-importing a list replaces it, under the lock
    took = time.monotonic() - t0
    n = len(rule.src) + len(rule.dst)
    return _done(args, f"{args.iface}: rule {rule.name!r} with {n} prefix(es) in force"
                       f" ({took:.2f} s)",
                 rule=rule.name, prefixes=n, seconds=took)


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
        print_json(out)
        return 0
    table(["#", "rule", "action", "match", "packets", "bytes"],
          [[i, r["name"], r["action"], r["match"], f"{r['packets']:,}", f"{r['bytes']:,}"]
           for i, r in enumerate(out["rules"], 1)],
          title=f"filter on {args.iface}: default {out['default']}"
                f"{' (dry run)' if out['dry_run'] else ''}, generation {out['generation']}",
          right={"#", "packets", "bytes"})
    return 0


STATS_COLUMNS = ("rule", "packets", "bytes", "pps")


def _stats_rows(stats: dict[str, tuple[int, int]], prev: dict[str, tuple[int, int]] | None,
                dt: float) -> list[list[str]]:
    rows = []
    for name, (p, b) in stats.items():
        rate = ""
        if prev is not None and dt > 0:
            rate = f"{(p - prev.get(name, (0, 0))[0]) / dt:,.0f}"
        rows.append([name, f"{p:,}", f"{b:,}", rate])
    return rows


def _talkers_line(talkers: list[tuple[Any, int]]) -> str:
    return "top dropped sources: " + ", ".join(f"{a} ({n:,})" for a, n in talkers)


def cmd_stats(args: argparse.Namespace) -> int:
    if args.json:
        out = _open(args, lambda f: {"iface": args.iface, "generation": f.generation,
                                     "stats": {k: {"packets": p, "bytes": b}
                                               for k, (p, b) in f.stats().items()},
                                     "top_talkers": [[str(a), n]
                                                     for a, n in f.top_talkers(10)]})
        print_json(out)
        return 0

    def show(f: Any) -> None:
        title = f"pyxdp filter on {f.iface} (generation {f.generation})"
        stats = f.stats()
        if not args.watch:
            table(STATS_COLUMNS, _stats_rows(stats, None, 0), title=title,
                  right={"packets", "bytes", "pps"})
            talkers = f.top_talkers(5)
            if talkers:
                print(_talkers_line(talkers))
            return
        _watch(f, title, stats, args.watch, args.interval)

    _open(args, show)
    return 0


def _watch(f: Any, title: str, stats: dict[str, tuple[int, int]], seconds: float,
           interval: float) -> None:
    """The live table of ``stats --watch`` (a terminal UI: the one use of rich here)."""
    from rich.live import Live
    from rich.table import Table

    def render(prev: dict[str, tuple[int, int]] | None, now: dict[str, tuple[int, int]],
               dt: float) -> Table:
        t = Table(title=title)
        for col in STATS_COLUMNS:
            t.add_column(col, justify="left" if col == "rule" else "right")
        for row in _stats_rows(now, prev, dt):
            t.add_row(*row)
        talkers = f.top_talkers(5)
        if talkers:
            t.caption = _talkers_line(talkers)
        return t

    with Live(render(None, stats, 0), refresh_per_second=4) as live:
        end = time.monotonic() + seconds
        last = time.monotonic()
        while time.monotonic() < end:
            time.sleep(interval)
            now = time.monotonic()
            new = f.stats()
            live.update(render(stats, new, now - last))
            stats, last = new, now


def cmd_serve_metrics(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter import Filter
    from pyxdp.apps.filter.metrics import serve
    from pyxdp.xdp import in_netns

    f = in_netns(args.netns, lambda: Filter.open(args.iface, **_roots(args)))
    try:
        server = serve(f, args.port, args.addr)
        url = f"http://{args.addr}:{args.port}/metrics"
        if args.json:
            print_json({"iface": args.iface, "url": url, "duration": args.duration or None})
        else:
            print(f"serving metrics of the filter on {args.iface} at {url}"
                  + (f" for {args.duration:g} s" if args.duration else " (Ctrl-C to stop)"))
        sys.stdout.flush()
        try:
            end = time.monotonic() + args.duration if args.duration else None
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
        finally:
            server.shutdown()
    finally:
        f.close()
    return 0


def register(sub: Any) -> None:
    top = sub.add_parser("filter")
    fsub = top.add_subparsers(dest="filter_command", metavar="ACTION", prog=top.prog)
    fsub.required = True

    def add(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = fsub.add_parser(name, help=help)
        p.add_argument("iface")
        p.add_argument("--netns", default=None, help="act inside this `ip netns` namespace")
        p.add_argument("--pin-root", default=None, help=argparse.SUPPRESS)
        p.add_argument("--state-root", default=None, help=argparse.SUPPRESS)
        add_json(p)
        p.set_defaults(func=func)
        return p

    p = add("attach", cmd_attach, "attach the filter (optionally with a rule file)")
    p.add_argument("--mode", choices=["generic", "native", "skb", "drv"], default=None)
    p.add_argument("--rules", help="TOML rule file")
    p.add_argument("--default", choices=["allow", "deny"], help="default policy")
    p.add_argument("--dry-run", action="store_true", help="count, drop nothing")
    p.add_argument("--replace", action="store_true",
                   help="clear the state of a filter that no longer runs (its interface was"
                        " re-created, or its link detached) and attach anew")
    p.add_argument("--standalone", action="store_true",
                   help="attach on a link of its own even when a pyxdp chain runs on the"
                        " interface (by default the filter joins it as stage 'filter')")
    p.add_argument("--priority", type=int_range(0, 1 << 20), default=10,
                   help="run priority as a chain stage (default 10: early)")
    p.add_argument("--chain-pin-root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--chain-state-root", default=None, help=argparse.SUPPRESS)
    p = add("detach", cmd_detach, "detach the filter and remove its state")
    p.add_argument("--force", action="store_true",
                   help="recover a filter whose link pin or state is lost or corrupt")
    p = add("add", cmd_add, "add a rule: NAME key=value ...")
    p.add_argument("name")
    p.add_argument("match", nargs="+", metavar="KEY=VALUE")
    p.add_argument("--position", type=int_range(0, 1 << 20), default=None,
                   help="priority position (0: first)")
    p = add("del", cmd_del, "delete a rule by name")
    p.add_argument("name")
    p = add("load", cmd_load, "replace all rules with a rule file, atomically")
    p.add_argument("file")
    p = add("import", cmd_import, "add (or replace) a rule from a plain address list")
    p.add_argument("list", help="one address or prefix per line (ipset/FireHOL style)")
    p.add_argument("--name", help="rule name (default: list)")
    p.add_argument("--dst", action="store_true", help="match destinations, not sources")
    p.add_argument("--allow", action="store_true", help="allow instead of deny")
    add("list", cmd_list, "the rules in force, with their counters")
    p = add("stats", cmd_stats, "per-rule counters and top dropped sources")
    p.add_argument("--watch", type=SECONDS_OR_ZERO, default=0,
                   help="live table for this many seconds")
    p.add_argument("--interval", type=float_range(0.05, 3600), default=1.0)
    p = add("serve-metrics", cmd_serve_metrics, "Prometheus exporter of the counters")
    p.add_argument("--port", type=PORT, default=9101)
    p.add_argument("--addr", default="127.0.0.1")
    p.add_argument("--duration", type=SECONDS_OR_ZERO, default=0, help="stop after N seconds")

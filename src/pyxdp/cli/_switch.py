"""``pyxdp switch ...``: the XDP learning switch's command line (see
:mod:`pyxdp.apps.switch`).

Every command reopens the pinned switch of the namespace (``--netns NS`` or the current
one), so the switch switches on while no control plane runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyxdp.cli import _portapp as pa
from pyxdp.cli._args import float_range, int_range
from pyxdp.cli._render import UsageError, print_json, table

# pyxdp.apps.switch (and with it the compiler) is imported by the commands, not here

VLAN_ID = int_range(0, 4094)


def _app() -> Any:
    from pyxdp.apps.switch import Switch
    return Switch


def cmd_attach(args: argparse.Namespace) -> int:
    from pyxdp.apps.switch import Switch
    from pyxdp.apps.switch.config import SwitchConfig, load_config
    from pyxdp.xdp import in_netns

    if args.config:
        cfg = load_config(args.config)
        if args.ifaces:
            raise UsageError("give the ports on the command line or in --config, not both")
    elif not args.ifaces:
        raise UsageError("switch attach needs one or more interfaces (or --config FILE)")
    else:
        cfg = SwitchConfig(tuple(args.ifaces))
    mode = args.mode or cfg.mode
    age = args.age if args.age is not None else cfg.age
    fdb_size = args.fdb_size if args.fdb_size is not None else cfg.fdb_size
    allow = args.allow_mtu_mismatch or cfg.allow_mtu_mismatch

    def run() -> dict[str, Any]:
        s = Switch.attach(list(cfg.ports), mode, vlans=cfg.vlans, age_s=age,
                          fdb_size=fdb_size, allow_mtu_mismatch=allow, **pa.roots(args))
        try:
            try:
                for st in cfg.static:
                    s.add_static(st.mac, st.port, st.vlan)
            except BaseException:
                s.detach()
                raise
            return s.program_ids()
        finally:
            s.close()

    ids = in_netns(args.netns, run)
    if args.json:
        print_json({"ports": list(cfg.ports), "mode": mode, "vlans": cfg.vlans is not None,
                    "age_s": age, "fdb_size": fdb_size, "static": len(cfg.static),
                    "prog_ids": ids})
    else:
        print(f"switch attached to {', '.join(cfg.ports)}"
              f"{' (802.1Q VLANs)' if cfg.vlans is not None else ''}, program id"
              f" {next(iter(ids.values()))}")
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    return pa.detach(_app, args)


def _collect(s: Any) -> dict[str, Any]:
    return {"ports": [p.name for p in s.ports], "vlans": s.vlans is not None,
            "reasons": {k: {"packets": p, "bytes": b} for k, (p, b) in s.stats().items()},
            "port_stats": s.port_stats(), "fdb_entries": len(s.fdb())}


def _rows(d: dict[str, Any], prev: dict[str, Any] | None, dt: float) -> list[list[str]]:
    rows = []
    for name, c in d["reasons"].items():
        before = prev["reasons"][name]["packets"] if prev is not None else None
        rows.append([name, f"{c['packets']:,}", f"{c['bytes']:,}",
                     pa.rate(c["packets"], before, dt)])
    for name, c in d["port_stats"].items():
        for way in ("rx", "tx"):
            before = prev["port_stats"][name][f"{way}_packets"] if prev is not None else None
            rows.append([f"{name} {way}", f"{c[f'{way}_packets']:,}",
                         f"{c[f'{way}_bytes']:,}", pa.rate(c[f"{way}_packets"], before, dt)])
    rows.append(["fdb entries", f"{d['fdb_entries']:,}", "", ""])
    return rows


COLUMNS = ("counter", "packets", "bytes", "pps")


def cmd_stats(args: argparse.Namespace) -> int:
    return pa.stats(_app, args, _collect, _rows, COLUMNS)


def cmd_fdb(args: argparse.Namespace) -> int:
    rows = pa.open_app(_app, args, lambda s: s.fdb())
    if args.json:
        print_json([r.to_json() for r in rows])
        return 0
    table(("mac", "vlan", "port", "age s", "static"),
          [[r.mac, r.vlan, r.port, f"{r.age_s:.1f}", "yes" if r.static else ""]
           for r in rows], right={"vlan", "age s"})
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    n = pa.open_app(_app, args, lambda s: s.flush(keep_static=not args.all))
    if args.json:
        print_json({"removed": n})
    else:
        print(f"removed {n} entr{'y' if n == 1 else 'ies'}")
    return 0


def cmd_static(args: argparse.Namespace) -> int:
    pa.open_app(_app, args, lambda s: s.add_static(args.mac, args.port, args.vlan))
    if args.json:
        print_json({"mac": args.mac, "port": args.port, "vlan": args.vlan, "static": True})
    else:
        print(f"{args.mac} (VLAN {args.vlan}) is on {args.port}, static")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    found = pa.open_app(_app, args, lambda s: s.remove(args.mac, args.vlan))
    if args.json:
        print_json({"mac": args.mac, "vlan": args.vlan, "removed": found})
    else:
        print(f"{args.mac} (VLAN {args.vlan}) {'forgotten' if found else 'was not known'}")
    return 0 if found else 1


def cmd_serve_metrics(args: argparse.Namespace) -> int:
    from pyxdp.apps.switch.metrics import serve
    return pa.serve_metrics(_app, args, serve)


def register(sub: Any) -> None:
    add = pa.actions(sub, "switch")
    p = add("attach", cmd_attach, "switch frames between these interfaces at XDP")
    p.add_argument("ifaces", nargs="*", metavar="IFACE")
    p.add_argument("--mode", choices=["generic", "native", "skb", "drv"], default=None)
    p.add_argument("--config", help="TOML file (ports, mode, age, fdb_size, vlans, static)")
    p.add_argument("--age", type=float_range(0, 1e6, open_lo=True), default=None,
                   help="seconds a learned MAC stays valid (default 300)")
    p.add_argument("--fdb-size", type=int_range(16, 1 << 24), default=None,
                   help="learning-table entries (default 4096)")
    p.add_argument("--allow-mtu-mismatch", action="store_true",
                   help="accept ports with different MTUs")
    pa.add_common_actions(add, "switch", detach=cmd_detach, stats=cmd_stats,
                          serve_metrics=cmd_serve_metrics, port=9103,
                          stats_help="per-reason and per-port counters")
    add("fdb", cmd_fdb, "the learning table: MAC, VLAN, port, age")
    p = add("flush", cmd_flush, "forget every learned MAC (static ones stay)")
    p.add_argument("--all", action="store_true", help="static entries too")
    p = add("static", cmd_static, "a static entry: MAC is on PORT (never ages or moves)")
    p.add_argument("mac")
    p.add_argument("port")
    p.add_argument("--vlan", type=VLAN_ID, default=0)
    p = add("forget", cmd_forget, "remove one MAC (learned or static)")
    p.add_argument("mac")
    p.add_argument("--vlan", type=VLAN_ID, default=0)

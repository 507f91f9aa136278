"""``pyxdp tunnel ...``: tunnel termination and encapsulation at XDP (see
:mod:`pyxdp.apps.tunnel`).

``attach --config FILE`` starts the app on the file's ports with its tunnels; ``apply
FILE`` replaces the tunnel set of the running app in one step (the file's ``[[tunnel]]``
tables; its other settings must match the running app); ``add``/``remove`` change one
tunnel; ``list`` shows them.  Every command reopens the pinned app of the namespace
(``--netns NS`` or the current one).
"""

from __future__ import annotations

import argparse
from typing import Any

from pyxdp.cli import _portapp as pa
from pyxdp.cli._render import UsageError, print_json, table

# pyxdp.apps.tunnel (and with it the compiler) is imported by the commands, not here


def _app() -> Any:
    from pyxdp.apps.tunnel import TunnelApp
    return TunnelApp


def cmd_attach(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pyxdp.apps.tunnel import TunnelApp, load_config
    from pyxdp.xdp import in_netns

    cfg = load_config(args.config)
    if args.ifaces:
        if cfg.ports:
            raise UsageError("give the ports on the command line or in --config, not both")
        cfg = replace(cfg, ports=tuple(args.ifaces))
    if not cfg.ports:
        raise UsageError("tunnel attach needs one or more interfaces (or 'ports' in the"
                         " config)")
    if args.mode:
        cfg = replace(cfg, mode=args.mode)

    def run() -> dict[str, Any]:
        t = TunnelApp.attach(cfg, **pa.roots(args))
        try:
            return {"prog_ids": t.program_ids(), "generation": t.generation}
        finally:
            t.close()

    d = in_netns(args.netns, run)
    if args.json:
        print_json({"ports": list(cfg.ports), "tunnels": [t.name for t in cfg.tunnels], **d})
    else:
        print(f"tunnel app attached to {', '.join(cfg.ports)} with {len(cfg.tunnels)}"
              f" tunnel(s), program id {next(iter(d['prog_ids'].values()))}")
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    return pa.detach(_app, args)


def _done(args: argparse.Namespace, gen: int, what: str, names: list[str]) -> int:
    if args.json:
        print_json({"generation": gen, "tunnels": names})
    else:
        print(f"{what}: generation {gen}, {len(names)} tunnel(s)")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from pyxdp.apps.tunnel import TunnelError, load_config

    cfg = load_config(args.file)

    def go(t: Any) -> tuple[int, list[str]]:
        running = t.config.settings()
        if cfg.settings() != running:
            diff = ", ".join(f"{k}: {running[k]!r} -> {v!r}"
                             for k, v in cfg.settings().items() if running[k] != v)
            raise TunnelError(f"{args.file}: settings differ from the running app ({diff}):"
                              " apply changes tunnels only; detach and attach to change them")
        return t.set_tunnels(cfg.tunnels), [x.name for x in cfg.tunnels]

    gen, names = pa.open_app(_app, args, go)
    return _done(args, gen, "applied", names)


def cmd_add(args: argparse.Namespace) -> int:
    import tomllib

    from pyxdp.apps.tunnel import TunnelError

    try:
        d = tomllib.loads("\n".join(args.fields))
    except tomllib.TOMLDecodeError as e:
        raise TunnelError(f"tunnel fields: not valid TOML (write key=value, strings in"
                          f" quotes): {e}") from None

    def go(t: Any) -> tuple[int, list[str]]:
        return t.add(d), [x.name for x in t.tunnels]

    gen, names = pa.open_app(_app, args, go)
    return _done(args, gen, f"added {d.get('name')!r}", names)


def cmd_remove(args: argparse.Namespace) -> int:
    def go(t: Any) -> tuple[int, list[str]]:
        return t.remove(args.name), [x.name for x in t.tunnels]

    gen, names = pa.open_app(_app, args, go)
    return _done(args, gen, f"removed {args.name!r}", names)


def cmd_list(args: argparse.Namespace) -> int:
    def go(t: Any) -> list[dict[str, Any]]:
        st = t.tunnel_stats()
        return [{**x.to_json(), "packets": st[x.name][0], "bytes": st[x.name][1]}
                for x in t.tunnels]

    rows = pa.open_app(_app, args, go)
    if args.json:
        print_json({"tunnels": rows})
        return 0
    table(("tunnel", "protocol", "local", "remote", "vni", "routes", "action", "packets"),
          [[r["name"], r["protocol"], r["local"], r["remote"], str(r.get("vni", "")),
            ", ".join(r["routes"]), r["action"] if r["decap"] else "(no decap)",
            f"{r['packets']:,}"] for r in rows], title="pyxdp tunnels", right={"packets"})
    return 0


def _collect(t: Any) -> dict[str, Any]:
    return {"ports": [p.name for p in t.ports], "generation": t.generation,
            "reasons": {k: {"packets": p, "bytes": b} for k, (p, b) in t.stats().items()},
            "tunnels": {k: {"packets": p, "bytes": b}
                        for k, (p, b) in t.tunnel_stats().items()}}


def _rows(d: dict[str, Any], prev: dict[str, Any] | None, dt: float) -> list[list[str]]:
    rows = []
    for group in ("reasons", "tunnels"):
        for name, c in d[group].items():
            before = (prev[group].get(name, {}).get("packets")
                      if prev is not None else None)
            label = name if group == "reasons" else f"tunnel {name}"
            rows.append([label, f"{c['packets']:,}", f"{c['bytes']:,}",
                         pa.rate(c["packets"], before, dt)])
    return rows


def cmd_stats(args: argparse.Namespace) -> int:
    return pa.stats(_app, args, _collect, _rows, ("counter", "packets", "bytes", "pps"))


def cmd_serve_metrics(args: argparse.Namespace) -> int:
    from pyxdp.apps.tunnel.metrics import serve
    return pa.serve_metrics(_app, args, serve)


def register(sub: Any) -> None:
    add = pa.actions(sub, "tunnel")
    p = add("attach", cmd_attach, "start decapsulating/encapsulating on these interfaces")
    p.add_argument("ifaces", nargs="*", metavar="IFACE")
    p.add_argument("--config", required=True,
                   help="TOML file: ports, UDP ports, ICMP sources, [[tunnel]] tables")
    p.add_argument("--mode", choices=["generic", "native", "skb", "drv"], default=None)
    p = add("apply", cmd_apply, "replace the tunnel set with a file's, in one step")
    p.add_argument("file")
    p = add("add", cmd_add, "add one tunnel: name=... protocol=... local=... remote=...")
    p.add_argument("fields", nargs="+", metavar="KEY=VALUE",
                   help='TOML key/value pairs, e.g. name="t1" protocol="gre"'
                        ' routes=["198.18.64.0/24"]')
    p = add("remove", cmd_remove, "remove the tunnel NAME")
    p.add_argument("name")
    add("list", cmd_list, "the tunnels and their packet counts")
    pa.add_common_actions(add, "tunnel", detach=cmd_detach, stats=cmd_stats,
                          serve_metrics=cmd_serve_metrics, port=9104,
                          stats_help="per-outcome and per-tunnel counters")

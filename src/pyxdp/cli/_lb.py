"""``pyxdp lb ...``: the load balancer's command line (see :mod:`pyxdp.apps.lb`).

Every command reopens the pinned balancer of the namespace (``--netns NS`` or the current
one), so it balances on while no control plane runs.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from pyxdp.cli import _portapp as pa
from pyxdp.cli._render import UsageError, print_json, table


def _app() -> Any:
    from pyxdp.apps.lb import LoadBalancer
    return LoadBalancer


def cmd_attach(args: argparse.Namespace) -> int:
    from pyxdp.apps.lb import LoadBalancer
    from pyxdp.apps.lb.config import from_dict, load_file
    from pyxdp.xdp import in_netns

    if args.config:
        cfg = load_file(args.config)
        if args.ifaces:
            cfg.ports = tuple(args.ifaces)
    elif args.ifaces:
        cfg = from_dict({"ports": list(args.ifaces), **{
            k: v for k, v in (("source4", args.source4), ("source6", args.source6),
                              ("ring_size", args.ring_size)) if v is not None}})
    else:
        raise UsageError("lb attach needs interfaces (IFACE ...) or --config FILE")
    if args.mode:
        cfg.mode = args.mode

    def run() -> dict[str, Any]:
        r = LoadBalancer.attach(cfg, **pa.roots(args))
        try:
            return {"prog_ids": r.program_ids(), "services": len(r.services())}
        finally:
            r.close()

    got = in_netns(args.netns, run)
    if args.json:
        print_json({"ports": list(cfg.ports), "mode": cfg.mode, **got})
    else:
        print(f"lb attached to {', '.join(cfg.ports)}, {got['services']} services,"
              f" program id {next(iter(got['prog_ids'].values()))}")
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    return pa.detach(_app, args)


def _collect(r: Any) -> dict[str, Any]:
    st = r.stats()
    return {"ports": [p.name for p in r.ports],
            "reasons": {k: {"packets": p, "bytes": b} for k, (p, b) in st["reasons"].items()},
            "services": {k: {"packets": v["total"][0], "bytes": v["total"][1],
                             "reals": {a: {"packets": p, "bytes": b}
                                       for a, (p, b) in v["reals"].items()}}
                         for k, v in st["services"].items()}}


def _rows(d: dict[str, Any], prev: dict[str, Any] | None, dt: float) -> list[list[str]]:
    rows = []
    for name, c in d["reasons"].items():
        before = prev["reasons"][name]["packets"] if prev is not None else None
        rows.append([name, f"{c['packets']:,}", f"{c['bytes']:,}",
                     pa.rate(c["packets"], before, dt)])
    for key, s in d["services"].items():
        before = prev["services"].get(key, {}).get("packets") if prev is not None else None
        rows.append([key, f"{s['packets']:,}", f"{s['bytes']:,}",
                     pa.rate(s["packets"], before, dt)])
        for real, c in s["reals"].items():
            pb = (prev["services"].get(key, {}).get("reals", {}).get(real, {}).get("packets")
                  if prev is not None else None)
            rows.append([f"  -> {real}", f"{c['packets']:,}", f"{c['bytes']:,}",
                         pa.rate(c["packets"], pb, dt)])
    return rows


COLUMNS = ("counter", "packets", "bytes", "pps")


def cmd_stats(args: argparse.Namespace) -> int:
    return pa.stats(_app, args, _collect, _rows, COLUMNS)


def cmd_serve_metrics(args: argparse.Namespace) -> int:
    from pyxdp.apps.lb.metrics import serve
    return pa.serve_metrics(_app, args, serve)


def cmd_list(args: argparse.Namespace) -> int:
    from pyxdp.apps.lb.config import service_to_dict

    services = pa.open_app(_app, args, lambda r: [service_to_dict(s) for s in r.services()])
    if args.json:
        print_json({"services": services})
        return 0
    rows = []
    for s in services:
        host = f"[{s['vip']}]" if ":" in s["vip"] else s["vip"]
        rows.append([f"{host}:{s['port']}/{s['proto']}", s["method"],
                     ", ".join(f"{r['address']} w{r['weight']}"
                               + ("" if r["state"] == "active" else f" ({r['state']})")
                               for r in s["reals"]) or "-"])
    table(("service", "method", "reals"), rows, title="pyxdp lb services")
    return 0


def _service(args: argparse.Namespace) -> str:
    """VIP:PORT[/PROTO], with --proto when the protocol is not in the name."""
    if args.proto and "/" not in args.service:
        return f"{args.service}/{args.proto}"
    if args.proto and not args.service.endswith("/" + args.proto):
        raise UsageError(f"{args.service} names another protocol than --proto {args.proto}")
    return str(args.service)


def cmd_service(args: argparse.Namespace) -> int:
    args.service = _service(args)
    if args.op == "add":
        pa.open_app(_app, args, lambda r: r.add_service(args.service, args.method,
                                                        gue_variant=args.gue_variant,
                                                        quic=args.quic))
    else:
        pa.open_app(_app, args, lambda r: r.remove_service(args.service))
    if args.json:
        print_json({"op": args.op, "service": args.service, "ok": True})
    else:
        print(f"lb service {args.op} {args.service}: done")
    return 0


def cmd_real(args: argparse.Namespace) -> int:
    args.service = _service(args)
    op = args.op
    if op == "weight" and args.weight is None:
        raise UsageError("lb real weight needs --weight N")

    def run(r: Any) -> None:
        if op == "add":
            r.add_real(args.service, args.real, args.weight or 1, quic_id=args.quic_id)
        elif op == "del":
            r.remove_real(args.service, args.real)
        elif op == "weight":
            r.set_weight(args.service, args.real, args.weight)
        elif op == "drain":
            r.drain(args.service, args.real)
        else:
            r.restore(args.service, args.real)

    pa.open_app(_app, args, run)
    if args.json:
        print_json({"op": op, "service": args.service, "real": args.real, "ok": True})
    else:
        print(f"lb real {op} {args.service} {args.real}: done")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from pyxdp.apps.lb.config import service_to_dict

    services = pa.open_app(_app, args, lambda r: [service_to_dict(s) for s in r.services()])
    lines = []
    for s in services:
        lines.append("[[service]]")
        for k in ("vip", "port", "proto", "method", "gue_variant"):
            v = s[k]
            lines.append(f"{k} = {v!r}".replace("'", '"') if isinstance(v, str)
                         else f"{k} = {v}")
        if "health" in s:
            h = s["health"]
            lines.append("health = { " + ", ".join(
                f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}"
                for k, v in h.items()) + " }")
        lines.append("reals = [" + ", ".join(
            f'{{ address = "{r["address"]}", weight = {r["weight"]}, state = "{r["state"]}" }}'
            for r in s["reals"]) + "]")
        lines.append("")
    text = "\n".join(lines)
    if args.file == "-":
        print(text, end="")
    else:
        tmp = f"{args.file}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, args.file)
        if not args.json:
            print(f"lb: {len(services)} services saved to {args.file}")
    if args.json and args.file != "-":
        print_json({"services": len(services), "file": args.file})
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    import tomllib

    from pyxdp.apps.lb.config import LbError, parse_ipvsadm, service_from_dict

    try:
        with open(args.file, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise LbError(f"{args.file}: {e.strerror}") from None
    if args.ipvsadm:
        services: list[Any] = parse_ipvsadm(raw.decode(errors="replace"))
    else:
        try:
            data = tomllib.loads(raw.decode())
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise LbError(f"{args.file}: not valid TOML: {e}") from None
        extra = set(data) - {"service"}
        if extra:
            raise LbError(f"{args.file}: only [[service]] tables belong in a saved service"
                          f" set, not {', '.join(sorted(extra))}")
        services = [service_from_dict(d, f"{args.file}: service[{i}]")
                    for i, d in enumerate(data.get("service", []))]
    pa.open_app(_app, args, lambda r: r.set_services(services))
    if args.json:
        print_json({"services": len(services)})
    else:
        print(f"lb: {len(services)} services restored from {args.file}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from pyxdp.apps.lb.health import HealthChecker
    from pyxdp.xdp import in_netns

    cls = _app()
    r = in_netns(args.netns, lambda: cls.open(**pa.roots(args)))
    try:
        hc = HealthChecker(r, log=print, call=lambda f, *a: in_netns(args.netns, f, *a))
        with hc:
            end = time.monotonic() + args.duration if args.duration else None
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
    finally:
        r.close()
    if args.json:
        print_json({"changes": [{"service": k, "real": a, "state": s}
                                for _, k, a, s in hc.changes]})
    return 0


def cmd_backend(args: argparse.Namespace) -> int:
    from pyxdp.apps.lb.backend import PIN_ROOT, STATE_ROOT, setup_backend, teardown_backend
    from pyxdp.apps.tunnel import TunnelApp
    from pyxdp.xdp import in_netns

    if not args.vip:
        raise UsageError("lb backend needs --vip ADDRESS (one or more)")
    if args.undo:
        def undo() -> None:
            app = TunnelApp.open(PIN_ROOT, state_root=STATE_ROOT)
            app.detach()
            teardown_backend(args.vip)
        in_netns(args.netns, undo)
        msg = f"backend {args.iface}: decapsulation detached, VIPs removed"
    else:
        if not args.lb_source:
            raise UsageError("lb backend needs --lb-source ADDRESS (the LB's outer source)")

        def setup() -> None:
            setup_backend(args.iface, args.vip, args.lb_source, mode=args.mode).close()
        in_netns(args.netns, setup)
        msg = (f"backend {args.iface}: VIPs {', '.join(args.vip)} on lo, decapsulating"
               f" IPIP/GUE from {', '.join(args.lb_source)}")
    if args.json:
        print_json({"iface": args.iface, "vips": args.vip, "undo": args.undo, "ok": True})
    else:
        print(msg)
    return 0


def register(sub: Any) -> None:
    from pyxdp.cli._args import SECONDS_OR_ZERO

    add = pa.actions(sub, "lb")
    p = add("attach", cmd_attach, "balance on interfaces (services from --config, or added"
            " later)")
    p.add_argument("ifaces", nargs="*", metavar="IFACE")
    p.add_argument("--mode", choices=["generic", "native"], default=None)
    p.add_argument("--config", help="TOML file (ports, sources, [[service]], ...)")
    p.add_argument("--source4", default=None, help="outer IPv4 source (ipip/gue)")
    p.add_argument("--source6", default=None, help="outer IPv6 source (ipip/gue)")
    p.add_argument("--ring-size", type=int, default=None, help="Maglev ring size (a prime)")
    add("list", cmd_list, "the services, their method and reals")
    p = add("service", cmd_service, "add or delete a virtual service")
    p.add_argument("op", choices=["add", "del"])
    p.add_argument("service", metavar="VIP:PORT[/PROTO]", help="[VIP]:PORT for IPv6")
    p.add_argument("--proto", choices=["tcp", "udp"], default=None)
    p.add_argument("--method", choices=["ipip", "gue", "dsr"], default="ipip")
    p.add_argument("--gue-variant", type=int, choices=[0, 1], default=1)
    p.add_argument("--quic", action="store_true",
                   help="UDP: route QUIC by the host id in the connection id")
    p = add("real", cmd_real, "add, delete, weigh, drain or restore a real of a service")
    p.add_argument("op", choices=["add", "del", "weight", "drain", "restore"])
    p.add_argument("service", metavar="VIP:PORT[/PROTO]")
    p.add_argument("real", metavar="ADDRESS")
    p.add_argument("--proto", choices=["tcp", "udp"], default=None)
    p.add_argument("--weight", type=int, default=None)
    p.add_argument("--quic-id", type=int, default=0, help="QUIC services: the real's host id")
    p = add("save", cmd_save, "write the services as a TOML file (- for stdout)")
    p.add_argument("file", metavar="FILE")
    p = add("restore", cmd_restore, "replace the services from a saved TOML file (or"
            " ipvsadm-save -n output with --ipvsadm)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--ipvsadm", action="store_true", help="the file is ipvsadm-save -n output")
    p = add("health", cmd_health, "run the services' health checks (drain and restore reals)")
    p.add_argument("--duration", type=SECONDS_OR_ZERO, default=0,
                   help="seconds to run (0: until Ctrl-C)")
    p = add("backend", cmd_backend, "set up a backend: VIPs on lo, ARP off them, pyxdp"
            " tunnel decapsulating what the LB sends (--undo: take it down)")
    p.add_argument("iface", metavar="IFACE")
    p.add_argument("--vip", action="append", default=[], metavar="ADDRESS")
    p.add_argument("--lb-source", action="append", default=[], metavar="ADDRESS")
    p.add_argument("--mode", choices=["generic", "native"], default="native")
    p.add_argument("--undo", action="store_true")
    pa.add_common_actions(add, "lb", detach=cmd_detach, stats=cmd_stats,
                          serve_metrics=cmd_serve_metrics, port=9106,
                          stats_help="per-reason, per-service and per-real counters")

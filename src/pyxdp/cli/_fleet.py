"""``pyxdp fleet ...`` and ``pyxdp agent``: one policy on many hosts through etcd (see
:mod:`pyxdp.fleet`)."""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from pyxdp.cli._args import float_range
from pyxdp.cli._render import UsageError, add_json, print_json, table

# pyxdp.fleet (and the filter, the compiler) are imported by the commands, not here


def _client(args: argparse.Namespace) -> Any:
    from pyxdp.fleet.etcd import TLS, Client

    tls = TLS(args.ca, args.cert, args.key) if args.ca else None
    password = None
    if args.password_file:
        try:
            with open(args.password_file) as f:
                password = f.read().strip()
        except OSError as e:
            raise UsageError(f"cannot read --password-file: {e.strerror}") from None
    if args.user and password is None:
        raise UsageError("--user needs --password-file")
    return Client(args.etcd, tls=tls, user=args.user, password=password)


def cmd_push(args: argparse.Namespace) -> int:
    from pyxdp.apps.filter.rules import read_text_file
    from pyxdp.fleet import store

    text = read_text_file(args.policy, "policy file")
    name = args.name or os.path.splitext(os.path.basename(args.policy))[0]
    c = _client(args)
    version = store.write_policy(c, name, text, check=not args.no_check)
    r = store.push(c, name, version, args.hosts, canary=args.canary, timeout=args.timeout)
    return _rollout(args, r)


def _rollout(args: argparse.Namespace, r: Any) -> int:
    if args.json:
        print_json(r.to_json())
    else:
        print(f"{r.policy} v{r.version}: applied on {len(r.applied)} host(s) in"
              f" {r.seconds:.2f} s")
        for h, e in r.failed.items():
            print(f"  FAILED {h}: {e}")
        for h in r.lagging:
            print(f"  not applied in time: {h}")
        if r.skipped:
            print(f"  stopped: {len(r.skipped)} host(s) left on their old policy")
    return 0 if r.ok else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    from pyxdp.fleet import store

    r = store.rollback(_client(args), args.name, args.hosts, to_version=args.to,
                       canary=args.canary, timeout=args.timeout)
    return _rollout(args, r)


def cmd_status(args: argparse.Namespace) -> int:
    from pyxdp.fleet import store

    rows = store.fleet_status(_client(args), args.hosts)
    if args.json:
        print_json([r.to_json() for r in rows])
        return 0

    def ver(d: Any) -> str:
        return f"{d['policy']} v{d['version']}" if d and "policy" in d else "-"

    table(("host", "state", "desired", "applied", "error"),
          [[r.host, r.state, ver(r.desired), ver(r.applied),
            (r.status or {}).get("error") or ""] for r in rows])
    return 0


def cmd_host_add(args: argparse.Namespace) -> int:
    from pyxdp.fleet import store

    with open(args.host_password_file) as f:
        pw = f.read().strip()
    store.provision_host(_client(args), args.host, pw)
    print_json({"host": args.host, "provisioned": True}) if args.json else print(
        f"host {args.host} provisioned (user, role host-{args.host}, registry entry)")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from pyxdp.fleet.agent import Agent

    if args.netns:                # the whole process: etcd traffic leaves the host's ns
        from pyxdp.testbed import _setns
        try:
            with open(f"/run/netns/{args.netns}") as f:
                _setns(f.fileno())
        except OSError as e:
            raise UsageError(f"--netns {args.netns}: {e.strerror or e}") from None
    c = _client(args)
    def log(m: str) -> None:
        if args.json:
            print_json({"host": args.host, "event": m})
        else:
            print(f"agent {args.host}: {m}", flush=True)

    a = Agent(c, args.host, args.iface, mode=args.mode, lease_ttl=args.lease_ttl, log=log)
    signal.signal(signal.SIGTERM, lambda *_: a.stop.set())
    try:
        a.run()
    except KeyboardInterrupt:
        a.stop.set()
    return 0


def _etcd_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--etcd", required=True, help="client URLs, comma-separated")
    p.add_argument("--ca", help="the cluster's CA (https endpoints)")
    p.add_argument("--cert", help="client certificate")
    p.add_argument("--key", help="client key")
    p.add_argument("--user", help="etcd user (token auth)")
    p.add_argument("--password-file", help="file holding the user's password")
    add_json(p)


def register(sub: Any) -> None:
    top = sub.add_parser("fleet")
    fsub = top.add_subparsers(dest="fleet_command", metavar="ACTION", prog=top.prog)
    fsub.required = True

    def rollout_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--hosts", default="*", help="glob of host names (default: all)")
        p.add_argument("--canary", type=float_range(0, 1), default=0.0,
                       help="fraction of hosts first; stop on their first failure")
        p.add_argument("--timeout", type=float_range(0, open_lo=True), default=60.0)

    p = fsub.add_parser("push", help="store a policy's next version and roll it out")
    p.add_argument("policy", help="filter rules TOML")
    p.add_argument("--name", help="policy name (default: the file's stem)")
    p.add_argument("--no-check", action="store_true", help="do not parse it here first")
    rollout_opts(p)
    _etcd_options(p)
    p.set_defaults(func=cmd_push)
    p = fsub.add_parser("rollback", help="roll hosts back to an earlier version")
    p.add_argument("name")
    p.add_argument("--to", type=int, default=None, help="version (default: previous)")
    rollout_opts(p)
    _etcd_options(p)
    p.set_defaults(func=cmd_rollback)
    p = fsub.add_parser("status", help="which host applied which version; who lags, failed")
    p.add_argument("--hosts", default="*")
    _etcd_options(p)
    p.set_defaults(func=cmd_status)
    p = fsub.add_parser("host-add", help="provision a host: etcd user, role, registry")
    p.add_argument("host")
    p.add_argument("--host-password-file", required=True)
    _etcd_options(p)
    p.set_defaults(func=cmd_host_add)
    p = sub.add_parser("agent")
    p.add_argument("--host", required=True, help="this host's name in the fleet")
    p.add_argument("--iface", required=True, help="the interface the filter runs on")
    p.add_argument("--netns", help="run in this `ip netns` namespace (etcd traffic too)")
    p.add_argument("--mode", choices=["native", "generic"], default=None)
    p.add_argument("--lease-ttl", type=int, default=5)
    _etcd_options(p)
    p.set_defaults(func=cmd_agent)

"""``pyxdp chain ...``: several XDP programs on one interface (see :mod:`pyxdp.apps.chain`).

Every command reopens the chain's state and pins, so changes from any number of control
planes (or after a restart) build on the chain that runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyxdp.cli._args import input_file, int_range
from pyxdp.cli._render import add_json, print_json, table


def _roots(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    if args.pin_root:
        out["pin_root"] = args.pin_root
    if args.state_root:
        out["state_root"] = args.state_root
    return out


def _in_ns(args: argparse.Namespace, fn: Any) -> Any:
    from pyxdp.xdp import in_netns

    return in_netns(args.netns, fn)


def _report(args: argparse.Namespace, status: dict[str, Any], text: str) -> int:
    if args.json:
        print_json(status)
        return 0
    print(text)
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    from pyxdp.apps.chain import Chain

    ch = _in_ns(args, lambda: Chain.attach(args.iface, args.mode, default=args.default,
                                           **_roots(args)))
    st = _in_ns(args, ch.status)
    return _report(args, st, f"attached an empty chain to {args.iface} (default"
                             f" {args.default}; bpf_link {st['link_id']})")


def cmd_add(args: argparse.Namespace) -> int:
    from pyxdp.apps.chain import Chain

    def run() -> dict[str, Any]:
        ch = Chain.open(args.iface, **_roots(args))
        ch.add(args.name, args.object, args.program, priority=args.priority,
               continue_on=args.continue_on)
        return ch.status()

    st = _in_ns(args, run)
    return _report(args, st, f"added stage {args.name!r} to {args.iface} (generation"
                             f" {st['generation']}, {len(st['stages'])} stage(s))")


def cmd_remove(args: argparse.Namespace) -> int:
    from pyxdp.apps.chain import Chain

    def run() -> dict[str, Any]:
        ch = Chain.open(args.iface, **_roots(args))
        ch.remove(args.name)
        return ch.status()

    st = _in_ns(args, run)
    return _report(args, st, f"removed stage {args.name!r} from {args.iface} (generation"
                             f" {st['generation']})")


def cmd_move(args: argparse.Namespace) -> int:
    from pyxdp.apps.chain import Chain

    def run() -> dict[str, Any]:
        ch = Chain.open(args.iface, **_roots(args))
        ch.move(args.name, args.priority)
        return ch.status()

    st = _in_ns(args, run)
    return _report(args, st, f"stage {args.name!r} now runs at priority {args.priority}")


def cmd_list(args: argparse.Namespace) -> int:
    from pyxdp.apps.chain import Chain

    st = _in_ns(args, lambda: Chain.open(args.iface, **_roots(args)).status())
    if args.json:
        print_json(st)
        return 0
    print(f"{args.iface}: generation {st['generation']}, default {st['default']},"
          f" root program {st['root_prog_id']} (bpf_link {st['link_id']})")
    table(["priority", "stage", "program", "continues on", "object"],
          [[s["priority"], s["name"], s["program"] or "-", ",".join(s["continue_on"]),
            s["object"]] for s in st["stages"]], right={"priority"})
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    from pyxdp.apps.chain import Chain

    _in_ns(args, lambda: Chain(args.iface, **_roots(args)).detach())
    if args.json:
        print_json({"iface": args.iface, "detached": True})
    else:
        print(f"detached the chain from {args.iface}")
    return 0


def register(sub: Any) -> None:
    top = sub.add_parser("chain")
    cmds = top.add_subparsers(dest="chain_command", metavar="COMMAND", required=True)

    def add(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".")
        p.add_argument("iface")
        p.add_argument("--netns", help="act inside this `ip netns` namespace")
        p.add_argument("--pin-root", default=None, help=argparse.SUPPRESS)
        p.add_argument("--state-root", default=None, help=argparse.SUPPRESS)
        add_json(p)
        p.set_defaults(func=fn)
        return p

    p = add("attach", cmd_attach, "attach an empty chain (a root program) to an interface")
    p.add_argument("--mode", choices=("generic", "native"), default=None)
    p.add_argument("--default", default="pass",
                   choices=("aborted", "drop", "pass", "tx", "redirect"),
                   help="the verdict when no stage decides (default: pass)")
    p = add("add", cmd_add, "add a stage: any XDP program of a BPF object")
    p.add_argument("name", help="the stage's name")
    p.add_argument("object", type=input_file, help="BPF ELF object (clang or pyxdp compile)")
    p.add_argument("--program", default=None, help="program or section (default: the only"
                                                   " XDP program)")
    p.add_argument("--priority", type=int_range(0, 1 << 20), default=50,
                   help="run order, lowest first (default 50)")
    p.add_argument("--continue-on", default="pass", metavar="VERDICTS",
                   help="verdicts that continue to the next stage (default: pass)")
    p = add("remove", cmd_remove, "remove a stage")
    p.add_argument("name")
    p = add("move", cmd_move, "give a stage another priority")
    p.add_argument("name")
    p.add_argument("priority", type=int_range(0, 1 << 20))
    add("list", cmd_list, "the stages in run order")
    add("detach", cmd_detach, "detach the chain and remove its state")

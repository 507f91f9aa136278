"""``pyxdp attach``, ``pyxdp detach``, ``pyxdp status``: XDP on real interfaces.

A command-line attach must outlive the command, so the bpf_link (and the object's maps) are
pinned under ``/sys/fs/bpf/pyxdp/<ifname>`` — or the program is attached with netlink
(``--no-link``), as ``ip link`` and xdp-loader do.  ``detach`` finds either kind and removes
the pins it made.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
from typing import Any

from pyxdp.xdp import AttachMode, XdpError

PIN_ROOT = "/sys/fs/bpf/pyxdp"


def _in_netns(ns: str | None, fn: Any, *args: Any) -> Any:
    """Run ``fn`` in the named network namespace (``ip netns`` name), or here."""
    if not ns:
        return fn(*args)
    from pyxdp.testbed import NamespaceThread

    if not os.path.exists(f"/run/netns/{ns}"):
        raise XdpError(f"no network namespace {ns!r} (see `ip netns list`)")
    t = NamespaceThread(ns)
    try:
        return t.call(fn, *args)
    finally:
        t.close()


def _pin_dir(root: str, iface: str) -> str:
    """Pins are global but interface names are per namespace: key by both."""
    ns_ino = os.stat("/proc/thread-self/ns/net").st_ino
    return os.path.join(root, f"{iface}@netns{ns_ino}")


def _pick_program(coll: Any, spec: Any, name: str | None) -> tuple[str, Any]:
    from pyxdp.abi import ProgType

    progs = coll.programs
    if name:
        for pname, p in progs.items():
            sec = spec.programs[pname].section if pname in spec.programs else ""
            if name in (pname, sec):
                return pname, p
        raise XdpError(f"no program {name!r} in the object (it has: {', '.join(progs)})")
    xdp_progs = [(n, p) for n, p in progs.items() if p.type == ProgType.XDP]
    if len(xdp_progs) != 1:
        found = ", ".join(n for n, _ in xdp_progs) or "none"
        raise XdpError(f"the object has {len(xdp_progs)} XDP programs ({found}): choose one"
                       " with --program")
    return xdp_progs[0]


def cmd_attach(args: argparse.Namespace) -> int:
    from pyxdp import xdp
    from pyxdp.elf import load_object
    from pyxdp.kernel import ensure_bpffs, load_collection

    spec = load_object(args.object)

    def run() -> str:
        xdp.ifindex_of(args.iface)  # a clear error before anything is loaded
        with load_collection(spec) as coll:
            pname, prog = _pick_program(coll, spec, args.program)
            if args.no_link:
                att = xdp.attach(args.iface, prog, args.mode, use_link=False,
                                 replace=args.replace)
                return (f"attached {pname!r} (id {prog.id}) to {args.iface} in"
                        f" {att.mode.value if att.mode else 'default'} mode via netlink")
            ensure_bpffs()
            pin_dir = _pin_dir(args.pin_root, args.iface)
            if os.path.exists(pin_dir):
                raise XdpError(f"{pin_dir} exists: {args.iface} already has a pyxdp"
                               " attachment; run `pyxdp detach` first")
            att = xdp.attach(args.iface, prog, args.mode, replace=args.replace)
            try:
                os.makedirs(pin_dir)
                if att.link is not None:
                    att.link.pin(os.path.join(pin_dir, "link"))
                for mname, m in coll.maps.items():
                    safe = mname.lstrip(".").replace("/", "_") or "map"
                    m.pin(os.path.join(pin_dir, f"map_{safe}"))
            except BaseException:
                att.detach()
                shutil.rmtree(pin_dir, ignore_errors=True)
                raise
            how = "bpf_link pinned at " + pin_dir if att.link is not None else "netlink"
            mode = att.mode.value if att.mode else "default"
            return f"attached {pname!r} (id {prog.id}) to {args.iface} in {mode} mode ({how})"

    print(_in_netns(args.netns, run))
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    from pyxdp import xdp

    def run() -> list[Any]:
        done = xdp.detach(args.iface, args.mode)
        pin_dir = _pin_dir(args.pin_root, args.iface)
        if os.path.isdir(pin_dir):
            for f in os.listdir(pin_dir):
                os.unlink(os.path.join(pin_dir, f))
            os.rmdir(pin_dir)
            if not os.listdir(args.pin_root):
                os.rmdir(args.pin_root)
        return done

    done = _in_netns(args.netns, run)
    if not done:
        print(f"{args.iface}: no XDP program attached")
    for a in done:
        print(f"detached {a.prog_name!r} (id {a.prog_id}) from {args.iface}"
              f" ({a.mode.value} mode)")
    return 0


def _redirect_warnings(att: Any) -> list[str]:
    """Devmap targets without an XDP program cannot receive redirected frames on veth."""
    from pyxdp import xdp
    from pyxdp.abi import MapType
    from pyxdp.kernel import Map, Program

    warnings = []
    try:
        with Program.from_id(att.prog_id) as p:
            map_ids = p.info().map_ids
    except OSError:
        return warnings
    for mid in map_ids:
        try:
            with Map.from_id(mid) as m:
                if m.type not in (MapType.DEVMAP, MapType.DEVMAP_HASH):
                    continue
                targets = {int.from_bytes(v[:4] if isinstance(v, bytes) else
                                          int(v).to_bytes(8, "little")[:4], "little")
                           for v in m.values()}
        except OSError:
            continue
        for ifindex in sorted(t for t in targets if t):
            try:
                st = xdp.status(ifindex)
            except XdpError:
                warnings.append(f"redirect target ifindex {ifindex} does not exist here")
                continue
            if st.kind == "veth":
                warnings.append(f"redirect target {st.ifname} is a veth: frames redirected"
                                " there are dropped unless its peer runs an XDP program (or"
                                " has GRO on)")
            elif not st.attachments:
                warnings.append(f"redirect target {st.ifname} has no XDP program: some"
                                " drivers only accept redirected frames when one is loaded")
    return warnings


def cmd_status(args: argparse.Namespace) -> int:
    from pyxdp import xdp

    def run() -> list[dict[str, Any]]:
        names = [args.iface] if args.iface else [n for _, n in socket.if_nameindex()]
        out = []
        for name in names:
            st = xdp.status(name)
            out.append({
                "ifname": st.ifname, "ifindex": st.ifindex, "mtu": st.mtu, "kind": st.kind,
                "attachments": [{"mode": a.mode.value, "prog_id": a.prog_id,
                                 "prog_name": a.prog_name, "link_id": a.link_id,
                                 "dispatcher": a.is_dispatcher} for a in st.attachments],
                "warnings": [w for a in st.attachments for w in _redirect_warnings(a)],
            })
        return out

    rows = _in_netns(args.netns, run)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="XDP status")
    for col in ("interface", "ifindex", "kind", "mtu", "mode", "program", "id", "held by"):
        table.add_column(col)
    for r in rows:
        if not r["attachments"]:
            table.add_row(r["ifname"], str(r["ifindex"]), r["kind"] or "-", str(r["mtu"]),
                          "-", "(none)", "", "")
        for a in r["attachments"]:
            held = f"link {a['link_id']}" if a["link_id"] else "netlink"
            name = a["prog_name"] + (" [libxdp dispatcher]" if a["dispatcher"] else "")
            table.add_row(r["ifname"], str(r["ifindex"]), r["kind"] or "-", str(r["mtu"]),
                          a["mode"], name, str(a["prog_id"]), held)
    console = Console()
    console.print(table)
    for r in rows:
        for w in r["warnings"]:
            console.print(f"[yellow]warning[/yellow] {r['ifname']}: {w}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    modes = [m.value for m in AttachMode] + ["skb", "drv", "hw"]

    p = sub.add_parser("attach", help="attach an XDP program from an ELF object")
    p.add_argument("iface")
    p.add_argument("object", help="BPF ELF object (clang -target bpf, or pyxdp compile)")
    p.add_argument("--mode", choices=modes, default=None,
                   help="generic (skb), native (driver) or offload; default: kernel's choice")
    p.add_argument("--program", "--section", dest="program", default=None,
                   help="program name or section, when the object has several")
    p.add_argument("--replace", action="store_true", help="replace an attached program")
    p.add_argument("--no-link", action="store_true",
                   help="attach with netlink instead of a pinned bpf_link")
    p.add_argument("--netns", default=None, help="act inside this `ip netns` namespace")
    p.add_argument("--pin-root", default=PIN_ROOT, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("detach", help="detach the XDP program of an interface")
    p.add_argument("iface")
    p.add_argument("--mode", choices=modes, default=None)
    p.add_argument("--netns", default=None)
    p.add_argument("--pin-root", default=PIN_ROOT, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_detach)

    p = sub.add_parser("status", help="which XDP programs run where")
    p.add_argument("iface", nargs="?")
    p.add_argument("--json", action="store_true")
    p.add_argument("--netns", default=None)
    p.set_defaults(func=cmd_status)

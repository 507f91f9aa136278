"""``pyxdp attach``, ``pyxdp detach``, ``pyxdp status``: XDP on real interfaces.

A command-line attach must outlive the command: :func:`pyxdp.xdp.attach_pinned` pins the
bpf_link, programs and maps under ``/sys/fs/bpf/pyxdp/<ifname>@netns<inode>`` (the rule of
``Collection.pin``), or attaches with netlink (``--no-link``), as ``ip link`` and xdp-loader
do.  ``detach`` finds either kind and removes the pins.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

from pyxdp import xdp
from pyxdp.cli._render import add_json, print_json, read_object, table

MODES = [m.value for m in xdp.AttachMode] + ["skb", "drv", "hw"]


def cmd_attach(args: argparse.Namespace) -> int:
    spec = read_object(args.object)
    att = xdp.in_netns(args.netns, lambda: xdp.attach_pinned(
        args.iface, spec, args.program, args.mode, replace=args.replace,
        use_link=not args.no_link, root=args.pin_root))
    if args.json:
        print_json(att.as_dict())
        return 0
    mode = att.mode.value if att.mode else "default"
    how = f"bpf_link {att.link_id} pinned under {att.pin_dir}" if att.link_id else "netlink"
    print(f"attached {att.program!r} (id {att.prog_id}) to {args.iface} in {mode} mode"
          f" ({how})")
    return 0


def _attachment_dict(a: Any) -> dict[str, Any]:
    return {"mode": a.mode.value, "prog_id": a.prog_id, "prog_name": a.prog_name,
            "link_id": a.link_id, "dispatcher": a.is_dispatcher}


def cmd_detach(args: argparse.Namespace) -> int:
    done = xdp.in_netns(args.netns, lambda: xdp.detach_pinned(
        args.iface, args.mode, args.pin_root, force=args.force))
    if args.json:
        print_json({"iface": args.iface, "detached": [_attachment_dict(a) for a in done]})
        return 0
    if not done:
        print(f"{args.iface}: no XDP program attached")
    for a in done:
        print(f"detached {a.prog_name!r} (id {a.prog_id}) from {args.iface}"
              f" ({a.mode.value} mode)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    def run() -> list[dict[str, Any]]:
        names = [args.iface] if args.iface is not None else [n for _, n in socket.if_nameindex()]
        out = []
        for name in names:
            st = xdp.status(name)
            atts = []
            for a in st.attachments:
                d = _attachment_dict(a)
                if a.is_dispatcher:
                    ds = xdp.dispatcher_state(st.ifindex, a.prog_id, args.libxdp_root)
                    d["libxdp"] = ds.as_dict() if ds is not None else None
                atts.append(d)
            out.append({
                "ifname": st.ifname, "ifindex": st.ifindex, "mtu": st.mtu, "kind": st.kind,
                "attachments": atts,
                "warnings": [w for a in st.attachments for w in xdp.redirect_warnings(a)],
            })
        return out

    rows = xdp.in_netns(args.netns, run)
    if any(a["prog_name"] == "?" for r in rows for a in r["attachments"]):
        print("pyxdp status: warning: program names and links could not be read (reading"
              " them needs root or CAP_SYS_ADMIN / CAP_BPF)", file=sys.stderr)
    if args.json:
        print_json(rows)
        return 0
    lines = []
    for r in rows:
        head = [r["ifname"], r["ifindex"], r["kind"] or "-", r["mtu"]]
        if not r["attachments"]:
            lines.append([*head, "-", "(none)", "", ""])
        for a in r["attachments"]:
            held = f"link {a['link_id']}" if a["link_id"] else "netlink"
            name = a["prog_name"] + (" [libxdp dispatcher]" if a["dispatcher"] else "")
            lines.append([*head, a["mode"], name, a["prog_id"], held])
            for c in (a.get("libxdp") or {}).get("components", []):
                lines.append(["", "", "", "", "", f"  └ prio {c['run_prio']}:"
                              f" {c['prog_name'] or '?'} (continues on"
                              f" {','.join(c['chain_call_actions']) or 'nothing'})",
                              c["prog_id"] or "-", f"slot {c['slot']}"])
    table(["interface", "ifindex", "kind", "mtu", "mode", "program", "id", "held by"], lines,
          right={"ifindex", "mtu", "id"})
    for r in rows:
        for w in r["warnings"]:
            print(f"warning: {r['ifname']}: {w}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("attach")
    p.add_argument("iface")
    p.add_argument("object", help="BPF ELF object (clang -target bpf, or pyxdp compile)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="generic (skb), native (driver) or offload; default: kernel's choice")
    p.add_argument("--program", "--section", dest="program", default=None,
                   help="program name or section, when the object has several")
    p.add_argument("--replace", action="store_true", help="replace an attached program")
    p.add_argument("--no-link", action="store_true",
                   help="attach with netlink instead of a pinned bpf_link")
    p.add_argument("--netns", default=None, help="act inside this `ip netns` namespace")
    p.add_argument("--pin-root", default=xdp.PIN_ROOT, help=argparse.SUPPRESS)
    add_json(p)
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("detach")
    p.add_argument("iface")
    p.add_argument("--mode", choices=MODES, default=None)
    p.add_argument("--netns", default=None, help="act inside this `ip netns` namespace")
    p.add_argument("--pin-root", default=xdp.PIN_ROOT, help=argparse.SUPPRESS)
    p.add_argument("--force", action="store_true",
                   help="detach even a program a pyxdp app (filter, ...) holds")
    add_json(p)
    p.set_defaults(func=cmd_detach)

    p = sub.add_parser("status")
    p.add_argument("iface", nargs="?")
    p.add_argument("--netns", default=None, help="act inside this `ip netns` namespace")
    p.add_argument("--libxdp-root", default=xdp.LIBXDP_ROOT, help=argparse.SUPPRESS)
    add_json(p)
    p.set_defaults(func=cmd_status)

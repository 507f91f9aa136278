"""Kernel commands: ``pyxdp load``, ``pyxdp prog ...``, ``pyxdp map ...``, ``pyxdp features``.

These are the bpftool subset a pyxdp user needs day to day, built only on
:mod:`pyxdp.kernel` (no libbpf, no bpftool), so that what the CLI shows is exactly what the
library sees.  Tables are for people; ``--json`` output is for scripts and tests and keeps
the kernel's raw values (ids, sizes, hex tags) so it can be compared with
``Program.info()`` / ``Map.info()`` one to one.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno as _errno
import os
import time
from typing import Any

from pyxdp.cli._render import add_json, kind, print_json, prog_type_arg, read_object, table
from pyxdp.errors import BpfError, MapError, PyxdpError

# pyxdp.kernel is imported inside the commands: `pyxdp load --help` should not pay for it


def register(subparsers: Any) -> None:
    """Add ``load``, ``prog``, ``map`` and ``features`` to the ``pyxdp`` parser."""
    p = subparsers.add_parser(
        "load",
        description="Parse OBJ, load its maps and programs, and print what the kernel made"
                    " of them.  Without --pin everything is unloaded again when the command"
                    " exits; with --pin DIR it is pinned on bpffs and stays loaded.")
    p.add_argument("object", metavar="OBJ", help="BPF ELF object file (clang -target bpf)")
    p.add_argument("--pin", metavar="DIR",
                   help="pin every program as DIR/<program> and every map as DIR/<map> (bpffs;"
                        " created if missing); maps declared pinning=BY_NAME are reused"
                        " from there")
    p.add_argument("--program", metavar="NAME",
                   help="load only this program (all maps are still created)")
    p.add_argument("--type", metavar="TYPE", type=prog_type_arg, dest="prog_type",
                   help="load every program as this type, whatever its ELF section says: a"
                        " section name such as xdp, tc or cgroup_skb/ingress (bpftool prog"
                        " loadall OBJ DIR type TYPE); for sections no table knows")
    add_json(p)
    p.set_defaults(func=cmd_load)

    prog = subparsers.add_parser("prog")
    psub = prog.add_subparsers(dest="prog_command", metavar="SUBCOMMAND", prog=prog.prog)
    psub.required = True
    x = psub.add_parser("list", help="every program in the kernel")
    add_json(x)
    x.set_defaults(func=cmd_prog_list)
    x = psub.add_parser("show", help="details of one program")
    x.add_argument("id", metavar="ID", type=_positive_id, help="program id")
    add_json(x)
    x.set_defaults(func=cmd_prog_show)
    x = psub.add_parser("dump", help="the verifier-rewritten (xlated) instructions")
    x.add_argument("id", metavar="ID", type=_positive_id, help="program id")
    x.add_argument("--syntax", choices=("llvm", "ubpf"), default="llvm",
                   help="assembly syntax (default: llvm, as bpftool prints it)")
    add_json(x)
    x.set_defaults(func=cmd_prog_dump)

    mp = subparsers.add_parser("map")
    msub = mp.add_subparsers(dest="map_command", metavar="SUBCOMMAND", prog=mp.prog)
    msub.required = True
    x = msub.add_parser("list", help="every map in the kernel")
    add_json(x)
    x.set_defaults(func=cmd_map_list)
    x = msub.add_parser("dump", help="every key and value of one map (hex)")
    x.add_argument("map", metavar="ID|PINPATH", help="map id, or path of a pinned map")
    add_json(x)
    x.set_defaults(func=cmd_map_dump)

    f = subparsers.add_parser("features")
    add_json(f)
    f.set_defaults(func=cmd_features)


def _positive_id(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an id: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"ids start at 1, got {value}")
    return value


def _prog_dict(info: Any) -> dict[str, Any]:
    d = dataclasses.asdict(info)
    d["type"] = kind(info.type)
    d["type_id"] = int(info.type)
    d["xlated_insns"] = info.xlated_size // 8
    d["loaded_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(info.loaded_at))
    return d


def _map_dict(info: Any) -> dict[str, Any]:
    d = dataclasses.asdict(info)
    d["type"] = kind(info.type)
    d["type_id"] = int(info.type)
    return d


def _by_id(open_: Any, what: str, obj_id: int) -> Any:
    """``open_(obj_id)``, with ENOENT said as the user asked it."""
    try:
        return open_(obj_id)
    except BpfError as e:
        if e.errno == _errno.ENOENT:
            raise BpfError(_errno.ENOENT, e.command,
                           f"there is no {what} with id {obj_id} (see `pyxdp {what} list`)"
                           ) from None
        raise


# -- pyxdp load ------------------------------------------------------------------------------
def cmd_load(args: argparse.Namespace) -> int:
    from pyxdp.kernel import load_collection, load_pinned

    obj = read_object(args.object, args.prog_type)
    if args.program:
        obj = obj.only(args.program)
    coll = load_pinned(obj, args.pin) if args.pin else load_collection(obj)
    with coll:
        programs = []
        for name, p in coll.programs.items():
            info = p.info()
            programs.append({"name": name, "type": kind(info.type), "id": info.id,
                             "tag": info.tag, "xlated_insns": info.xlated_size // 8,
                             "jited_size": info.jited_size, "map_ids": info.map_ids,
                             "pinned": coll.program_pins.get(name)})
        maps = []
        for name, m in coll.maps.items():
            mi = m.info()
            maps.append({"name": name, "type": kind(mi.type), "id": mi.id,
                         "key_size": mi.key_size, "value_size": mi.value_size,
                         "max_entries": mi.max_entries, "flags": mi.flags,
                         "pinned": coll.map_pins.get(name)})
    pinned_to = os.path.abspath(args.pin) if args.pin else None
    if args.json:
        print_json({"object": os.path.abspath(args.object), "pinned": pinned_to,
                    "programs": programs, "maps": maps})
        return 0
    pin_col = ["pinned"] if pinned_to else []
    table(["name", "type", "id", "tag", "xlated insns", *pin_col],
          [[p["name"], p["type"], p["id"], p["tag"], p["xlated_insns"]]
           + ([p["pinned"]] if pinned_to else []) for p in programs],
          title=f"programs of {args.object}", right={"id", "xlated insns"})
    if maps:
        print()
        table(["name", "type", "id", "key", "value", "max entries", *pin_col],
              [[m["name"], m["type"], m["id"], m["key_size"], m["value_size"],
                m["max_entries"]] + ([m["pinned"]] if pinned_to else []) for m in maps],
              title="maps", right={"id", "key", "value", "max entries"})
    print()
    if pinned_to:
        print(f"pinned under {pinned_to}: they stay loaded until the pins are removed"
              f" (rm -r {pinned_to})")
    else:
        print("not pinned: these programs and maps were unloaded when the command exited"
              " (use --pin DIR to keep them)")
    return 0


# -- pyxdp prog ------------------------------------------------------------------------------
def cmd_prog_list(args: argparse.Namespace) -> int:
    from pyxdp.kernel import list_programs

    infos = list_programs()
    if args.json:
        print_json([_prog_dict(i) for i in infos])
        return 0
    table(["id", "type", "name", "tag", "gpl", "loaded at", "xlated", "jited", "maps"],
          [[i.id, kind(i.type), i.name, i.tag, "yes" if i.gpl_compatible else "no",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(i.loaded_at)),
            f"{i.xlated_size}B", f"{i.jited_size}B", ",".join(map(str, i.map_ids))]
           for i in infos],
          title=f"{len(infos)} programs", right={"id", "xlated", "jited"})
    return 0


def cmd_prog_show(args: argparse.Namespace) -> int:
    from pyxdp.kernel import Program

    with _by_id(Program.from_id, "prog", args.id) as prog:
        info = prog.info()
    d = _prog_dict(info)
    if args.json:
        print_json(d)
        return 0
    table(["field", "value"],
          [[k, ",".join(map(str, v)) if isinstance(v, list) else v] for k, v in d.items()],
          title=f"program {info.id}")
    return 0


def cmd_prog_dump(args: argparse.Namespace) -> int:
    from pyxdp.kernel import Program, annotate_xlated

    with _by_id(Program.from_id, "prog", args.id) as prog:
        lines = annotate_xlated(prog.xlated(), args.syntax)
    if args.json:
        print_json([dataclasses.asdict(ln) for ln in lines])
        return 0
    comment = "#" if args.syntax == "ubpf" else ";"
    out = []
    for ln in lines:
        text = f"{ln.slot:5d}: {ln.text}"
        if ln.subprog is not None:
            text += f"  {comment} subprog {ln.subprog}"
        if ln.helper:
            text += f"  {comment} {ln.helper}"
        out.append(text)
    print("\n".join(out))
    return 0


# -- pyxdp map -------------------------------------------------------------------------------
def cmd_map_list(args: argparse.Namespace) -> int:
    from pyxdp.kernel import list_maps

    infos = list_maps()
    if args.json:
        print_json([_map_dict(i) for i in infos])
        return 0
    table(["id", "type", "name", "key", "value", "max entries", "flags"],
          [[i.id, kind(i.type), i.name, f"{i.key_size}B", f"{i.value_size}B",
            i.max_entries, f"{i.flags:#x}"] for i in infos],
          title=f"{len(infos)} maps", right={"id", "key", "value", "max entries"})
    return 0


def _open_map(ref: str) -> Any:
    """A map by id or by pin path, with raw ``bytes`` keys and values."""
    from pyxdp.kernel import Map, is_bpffs

    if ref.isdigit():
        return _by_id(lambda i: Map.from_id(i, bytes, bytes), "map", int(ref))
    if not os.path.lexists(ref):
        raise PyxdpError(f"{ref}: no such map id or pinned path")
    if not is_bpffs(ref):
        raise PyxdpError(f"{ref} is not a BPF pin (not on a bpf filesystem)")
    return Map.from_pin(ref, bytes, bytes)        # says so when the pin is not a map


def _hex(value: Any) -> Any:
    return [v.hex(" ") for v in value] if isinstance(value, list) else value.hex(" ")


def cmd_map_dump(args: argparse.Namespace) -> int:
    with _open_map(args.map) as m:
        info = m.info()
        try:
            # per-CPU maps: one value per possible CPU (the kernel's 8-byte padding cut off)
            rows = [(k.hex(" "), _hex(v)) for k, v in m.dump()]
        except BpfError as e:
            from pyxdp.abi import ENOTSUPP

            if e.errno in (_errno.EOPNOTSUPP, ENOTSUPP, _errno.EINVAL):
                raise MapError(f"map {m.name!r} ({kind(m.type)}) cannot be read from user"
                               f" space ({e.strerror})") from None
            raise
    if args.json:
        print_json({"id": info.id, "name": info.name, "type": kind(info.type),
                    "key_size": info.key_size, "value_size": info.value_size,
                    "max_entries": info.max_entries,
                    "entries": [{"key": k, "value": v} for k, v in rows]})
        return 0
    for k, v in rows:
        if isinstance(v, list):
            print(f"key: {k}")
            for cpu, val in enumerate(v):
                print(f"  cpu{cpu}: {val}")
        else:
            print(f"key: {k}  value: {v}")
    print(f"Found {len(rows)} element{'s' if len(rows) != 1 else ''} in map {info.id}"
          f" ({info.name}, {kind(info.type)})")
    return 0


# -- pyxdp features --------------------------------------------------------------------------
def cmd_features(args: argparse.Namespace) -> int:
    from pyxdp.kernel import features

    data = features.probe_all()
    if args.json:
        print_json(data)
        return 0
    print(f"kernel {data['kernel']}")
    table(["setting", "value"], list(data["system"].items()), title="system")
    for section, title in (("prog_types", "program types"), ("map_types", "map types")):
        print()
        table(["type", "supported"],
              [[k.lower(), "yes" if v else "no"] for k, v in data[section].items()],
              title=title)
    for ptype, names in data["helpers"].items():
        print(f"\nhelpers available to {ptype.lower()} programs ({len(names)}):")
        for name in names:
            print(f"  {name}")
    return 0


__all__ = ["register"]

"""Kernel commands: ``pyxdp load``, ``pyxdp prog ...``, ``pyxdp map ...``, ``pyxdp features``.

These are the bpftool subset a pyxdp user needs day to day, built only on
:mod:`pyxdp.kernel` (no libbpf, no bpftool), so that what the CLI shows is exactly what the
library sees.  Tables are for people; ``--json`` output is for scripts and tests and keeps
the kernel's raw values (ids, sizes, hex tags) so it can be compared with
``Program.info()`` / ``Map.info()`` one to one.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import copy
import dataclasses
import errno as _errno
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from pyxdp.abi import ENOTSUPP, MapType
from pyxdp.errors import BpfError, ElfError, MapError, PyxdpError

# pyxdp.kernel and the ELF parser are imported inside the commands: `pyxdp --help` imports
# every command module, and should not pay for ctypes set-up it does not use.


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``load``, ``prog``, ``map`` and ``features`` to the ``pyxdp`` parser."""
    p = subparsers.add_parser(
        "load", help="load a BPF object (all its maps and programs) into the kernel",
        description="Parse OBJ, load its maps and programs, and print what the kernel made"
                    " of them.  Without --pin everything is unloaded again when the command"
                    " exits; with --pin DIR it is pinned on bpffs and stays loaded.")
    p.add_argument("object", metavar="OBJ", help="BPF ELF object file (clang -target bpf)")
    p.add_argument("--pin", metavar="DIR",
                   help="pin programs under DIR/progs and maps under DIR/maps (bpffs; created"
                        " if missing); maps declared pinning=BY_NAME are reused from there")
    p.add_argument("--program", metavar="NAME",
                   help="load only this program (all maps are still created)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_load)

    prog = subparsers.add_parser("prog", help="inspect loaded programs (like bpftool prog)")
    psub = prog.add_subparsers(dest="prog_command", metavar="SUBCOMMAND")
    psub.required = True
    x = psub.add_parser("list", help="every program in the kernel")
    x.add_argument("--json", action="store_true", help="machine-readable output")
    x.set_defaults(func=cmd_prog_list)
    x = psub.add_parser("show", help="details of one program")
    x.add_argument("id", metavar="ID", type=_positive_id, help="program id")
    x.add_argument("--json", action="store_true", help="machine-readable output")
    x.set_defaults(func=cmd_prog_show)
    x = psub.add_parser("dump", help="the verifier-rewritten (xlated) instructions")
    x.add_argument("id", metavar="ID", type=_positive_id, help="program id")
    x.add_argument("--syntax", choices=("llvm", "ubpf"), default="llvm",
                   help="assembly syntax (default: llvm, as bpftool prints it)")
    x.set_defaults(func=cmd_prog_dump)

    mp = subparsers.add_parser("map", help="inspect maps (like bpftool map)")
    msub = mp.add_subparsers(dest="map_command", metavar="SUBCOMMAND")
    msub.required = True
    x = msub.add_parser("list", help="every map in the kernel")
    x.add_argument("--json", action="store_true", help="machine-readable output")
    x.set_defaults(func=cmd_map_list)
    x = msub.add_parser("dump", help="every key and value of one map (hex)")
    x.add_argument("map", metavar="ID|PINPATH", help="map id, or path of a pinned map")
    x.add_argument("--json", action="store_true", help="machine-readable output")
    x.set_defaults(func=cmd_map_dump)

    f = subparsers.add_parser("features", help="what the running kernel supports"
                                               " (like bpftool feature probe)")
    f.add_argument("--json", action="store_true", help="machine-readable output")
    f.set_defaults(func=cmd_features)


def _positive_id(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an id: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"ids start at 1, got {value}")
    return value


# -- rendering helpers ---------------------------------------------------------------------
def _console() -> Any:
    from rich.console import Console
    # soft_wrap off and a wide default: piped output must not be cut at 80 columns
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    _console().print(table)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _kind(value: Any) -> str:
    """Enum member name, or the bare number for types newer than pyxdp knows."""
    return value.name.lower() if hasattr(value, "name") else str(value)


def _prog_dict(info: Any) -> dict[str, Any]:
    d = dataclasses.asdict(info)
    d["type"] = _kind(info.type)
    d["type_id"] = int(info.type)
    d["xlated_insns"] = info.xlated_size // 8
    d["loaded_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(info.loaded_at))
    return d


def _map_dict(info: Any) -> dict[str, Any]:
    d = dataclasses.asdict(info)
    d["type"] = _kind(info.type)
    d["type_id"] = int(info.type)
    return d


def _not_found(kind: str, obj_id: int, command: str) -> BpfError:
    return BpfError(_errno.ENOENT, command,
                    f"there is no {kind} with id {obj_id} (see `pyxdp {kind} list`)")


def _open_prog(prog_id: int) -> Any:
    from pyxdp.kernel import Program
    try:
        return Program.from_id(prog_id)
    except BpfError as e:
        if e.errno == _errno.ENOENT:
            raise _not_found("prog", prog_id, "BPF_PROG_GET_FD_BY_ID") from None
        raise


# -- pyxdp load ------------------------------------------------------------------------------
def _pin_name(name: str) -> str:
    """A bpffs file name for ``name``: bpffs refuses names with dots (``.rodata``), so do
    what libbpf's pinmaps does and turn them into underscores."""
    return name.replace(".", "_").replace("/", "_")


def _only_program(obj: Any, name: str) -> Any:
    """A shallow copy of ``obj`` keeping one program; prog-array slots that would point at
    a program left out are dropped (there is nothing to put in them)."""
    if name not in obj.programs:
        have = ", ".join(sorted(obj.programs)) or "none"
        raise ElfError(f"{obj.path or 'object'} has no program {name!r} (it has: {have})")
    out = copy.copy(obj)
    out.programs = {name: obj.programs[name]}
    slots: dict[str, dict[int, str]] = {}
    for mname, entries in obj.map_slots.items():
        keep = {i: what for i, what in entries.items()
                if obj.maps[mname].type != MapType.PROG_ARRAY or what == name}
        if keep:
            slots[mname] = keep
    out.map_slots = slots
    return out


def _pin_dirs(path: str) -> list[str]:
    """The directories ``--pin`` uses, outermost first."""
    path = os.path.abspath(path)
    return [path, os.path.join(path, "progs"), os.path.join(path, "maps")]


def _prepare_pin_dir(path: str) -> tuple[str, str]:
    from pyxdp.kernel import is_bpffs
    path = os.path.abspath(path)
    os.makedirs(path, exist_ok=True)
    if not is_bpffs(path):
        raise PyxdpError(f"--pin {path}: not on a bpf filesystem (pins must live on bpffs,"
                         " e.g. under /sys/fs/bpf)")
    progs, maps = os.path.join(path, "progs"), os.path.join(path, "maps")
    os.makedirs(progs, exist_ok=True)
    os.makedirs(maps, exist_ok=True)
    return progs, maps


def _pin_collection(coll: Any, progs_dir: str, maps_dir: str) -> dict[str, dict[str, str]]:
    """Pin every program and map; on failure remove what this call pinned, so a failed
    ``--pin`` leaves the directory as it found it (apart from BY_NAME maps, which the
    loader pinned and will be reused next time, as with libbpf)."""
    from pyxdp.kernel import obj_pin
    done: list[str] = []
    pins: dict[str, dict[str, str]] = {"programs": {}, "maps": {}}
    try:
        for name, m in coll.maps.items():
            # internal maps (.rodata, .data, ...) are pinned under their kernel name, which
            # carries the object's prefix (xdp_disp.rodata -> xdp_disp_rodata) like libbpf
            path = os.path.join(maps_dir, _pin_name(m.info().name if name.startswith(".")
                                                    else name))
            if os.path.exists(path):
                from pyxdp.kernel import Map
                with Map.from_pin(path) as old:
                    if old.id == m.id:          # a BY_NAME map the loader pinned itself
                        pins["maps"][name] = path
                        continue
                raise PyxdpError(f"cannot pin map {name!r}: {path} already exists (another"
                                 " object is pinned there; choose another --pin directory)")
            obj_pin(m.fd, path)
            done.append(path)
            pins["maps"][name] = path
        for name, p in coll.programs.items():
            path = os.path.join(progs_dir, _pin_name(name))
            if os.path.exists(path):
                raise PyxdpError(f"cannot pin program {name!r}: {path} already exists"
                                 " (unpin it, or choose another --pin directory)")
            obj_pin(p.fd, path)
            done.append(path)
            pins["programs"][name] = path
    except BaseException:
        for path in done:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    return pins


def cmd_load(args: argparse.Namespace) -> int:
    from pyxdp.elf import load_object
    from pyxdp.kernel import load_collection

    try:
        obj = load_object(args.object)
    except ElfError as e:
        msg = str(e)
        raise ElfError(msg if args.object in msg else f"{args.object}: {msg}") from None
    if args.program:
        obj = _only_program(obj, args.program)
    progs_dir = maps_dir = None
    created: list[str] = []
    if args.pin:
        created = [d for d in _pin_dirs(args.pin) if not os.path.exists(d)]
        progs_dir, maps_dir = _prepare_pin_dir(args.pin)
    try:
        coll = load_collection(obj, pin_path=maps_dir)
    except BaseException:
        for d in reversed(created):      # a failed load leaves no empty pin directories
            with contextlib.suppress(OSError):
                os.rmdir(d)
        raise
    with coll:
        pins = (_pin_collection(coll, progs_dir, maps_dir) if progs_dir and maps_dir
                else {"programs": {}, "maps": {}})
        programs = []
        for name, p in coll.programs.items():
            info = p.info()
            programs.append({"name": name, "type": _kind(info.type), "id": info.id,
                             "tag": info.tag, "xlated_insns": info.xlated_size // 8,
                             "jited_size": info.jited_size, "map_ids": info.map_ids,
                             "pinned": pins["programs"].get(name)})
        maps = []
        for name, m in coll.maps.items():
            info = m.info()
            maps.append({"name": name, "type": _kind(info.type), "id": info.id,
                         "key_size": info.key_size, "value_size": info.value_size,
                         "max_entries": info.max_entries, "flags": info.flags,
                         "pinned": pins["maps"].get(name)})
    pinned_to = os.path.abspath(args.pin) if args.pin else None
    if args.json:
        _print_json({"object": os.path.abspath(args.object), "pinned": pinned_to,
                     "programs": programs, "maps": maps})
        return 0
    _table(f"programs of {args.object}", ["name", "type", "id", "tag", "xlated insns"]
           + (["pinned"] if pinned_to else []),
           [[p["name"], p["type"], p["id"], p["tag"], p["xlated_insns"]]
            + ([p["pinned"]] if pinned_to else []) for p in programs])
    if maps:
        print()
        _table("maps", ["name", "type", "id", "key", "value", "max entries"]
               + (["pinned"] if pinned_to else []),
               [[m["name"], m["type"], m["id"], m["key_size"], m["value_size"],
                 m["max_entries"]] + ([m["pinned"]] if pinned_to else []) for m in maps])
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
        _print_json([_prog_dict(i) for i in infos])
        return 0
    _table(f"{len(infos)} programs", ["id", "type", "name", "tag", "gpl", "loaded at",
                                      "xlated", "jited", "maps"],
           [[i.id, _kind(i.type), i.name, i.tag, "yes" if i.gpl_compatible else "no",
             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(i.loaded_at)),
             f"{i.xlated_size}B", f"{i.jited_size}B",
             ",".join(map(str, i.map_ids))] for i in infos])
    return 0


def cmd_prog_show(args: argparse.Namespace) -> int:
    with _open_prog(args.id) as prog:
        info = prog.info()
    d = _prog_dict(info)
    if args.json:
        _print_json(d)
        return 0
    _table(f"program {info.id}", ["field", "value"],
           [[k, ",".join(map(str, v)) if isinstance(v, list) else v] for k, v in d.items()])
    return 0


@functools.cache
def _kallsyms() -> tuple[list[int], list[str], int | None]:
    """Sorted kernel symbol addresses and names, and ``__bpf_call_base``: xlated helper
    calls hold ``helper - __bpf_call_base``, which is how bpftool names them too."""
    addrs: list[tuple[int, str]] = []
    base = None
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] not in "tTwW":
                    continue
                a = int(parts[0], 16)
                if parts[2] == "__bpf_call_base":
                    base = a
                addrs.append((a, parts[2]))
    except OSError:
        return [], [], None
    addrs.sort()
    return [a for a, _ in addrs], [n for _, n in addrs], base


def _helper_name(imm: int) -> str | None:
    addrs, names, base = _kallsyms()
    if base is None or base == 0:
        return None                     # kptr_restrict hides addresses: no names
    target = base + imm
    i = bisect.bisect_right(addrs, target) - 1
    return names[i] if i >= 0 and addrs[i] == target else None


def cmd_prog_dump(args: argparse.Namespace) -> int:
    from pyxdp.asm import format_insn
    with _open_prog(args.id) as prog:
        insns = prog.xlated()
    comment = "#" if args.syntax == "ubpf" else ";"
    slot = 0
    out = []
    for insn in insns:
        note = None
        if insn.is_pseudo_call and insn.off:
            # the verifier stores the callee's subprogram index in `off` of xlated calls
            note = f"subprog {insn.off}"
            insn = dataclasses.replace(insn, off=0)
        text = format_insn(insn, args.syntax)
        if note:
            text += f"  {comment} {note}"
        if insn.is_helper_call:
            name = _helper_name(insn.imm)
            if name:
                text += f"  {comment} {name}"
        out.append(f"{slot:5d}: {text}")
        slot += insn.slots
    print("\n".join(out))
    return 0


# -- pyxdp map -------------------------------------------------------------------------------
def cmd_map_list(args: argparse.Namespace) -> int:
    from pyxdp.kernel import list_maps
    infos = list_maps()
    if args.json:
        _print_json([_map_dict(i) for i in infos])
        return 0
    _table(f"{len(infos)} maps", ["id", "type", "name", "key", "value", "max entries",
                                  "flags"],
           [[i.id, _kind(i.type), i.name, f"{i.key_size}B", f"{i.value_size}B",
             i.max_entries, f"{i.flags:#x}"] for i in infos])
    return 0


def _open_map(ref: str) -> Any:
    from pyxdp.kernel import Map
    if ref.isdigit():
        try:
            return Map.from_id(int(ref))
        except BpfError as e:
            if e.errno == _errno.ENOENT:
                raise _not_found("map", int(ref), "BPF_MAP_GET_FD_BY_ID") from None
            raise
    if not os.path.exists(ref):
        raise PyxdpError(f"{ref}: no such map id or pinned path")
    from pyxdp.kernel import obj_get
    try:
        fd = obj_get(ref)
    except BpfError as e:
        if e.errno == _errno.EINVAL:
            raise BpfError(e.errno, "BPF_OBJ_GET", f"{ref} is not a BPF pin") from None
        raise
    # OBJ_GET opens programs and links too, and OBJ_GET_INFO_BY_FD would then fill the map
    # info with a program's fields (garbage sizes): check the fd really is a map first
    try:
        kind = os.readlink(f"/proc/self/fd/{fd.fileno()}")
    except OSError:
        kind = ""
    if "bpf-map" not in kind:
        fd.close()
        what = kind.split(":", 1)[-1].strip("[]") or "not a map"
        raise PyxdpError(f"{ref} is not a pinned BPF map ({what})")
    return Map.from_fd(fd)


def _entries(m: Any) -> Iterator[tuple[bytes, bytes]]:
    ks = m.spec.key_size
    # the kernel's value layout: per-CPU maps hold one 8-byte aligned slot per possible CPU
    vw = ((m.spec.value_size + 7) & ~7) * m.ncpus if m.percpu else m.spec.value_size
    try:
        keys, values = m.dump_raw()
    except BpfError as e:
        if e.errno in (_errno.EOPNOTSUPP, ENOTSUPP, _errno.EINVAL):
            raise MapError(f"map {m.name!r} ({_kind(m.type)}) cannot be read from user"
                           f" space ({e.strerror})") from None
        raise
    n = len(keys) // ks if ks else 0
    for i in range(n):
        yield keys[i * ks:(i + 1) * ks], values[i * vw:(i + 1) * vw]


def _value_repr(m: Any, raw: bytes) -> str | list[str]:
    """Hex of a value; per-CPU maps give one hex string per possible CPU (the kernel pads
    each CPU's slot to 8 bytes, which is cut off again here)."""
    if not m.percpu:
        return raw.hex(" ")
    stride, size = (m.spec.value_size + 7) & ~7, m.spec.value_size
    return [raw[c * stride:c * stride + size].hex(" ") for c in range(m.ncpus)]


def cmd_map_dump(args: argparse.Namespace) -> int:
    with _open_map(args.map) as m:
        info = m.info()
        rows = [(k.hex(" "), _value_repr(m, v)) for k, v in _entries(m)]
    if args.json:
        _print_json({"id": info.id, "name": info.name, "type": _kind(info.type),
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
          f" ({info.name}, {_kind(info.type)})")
    return 0


# -- pyxdp features --------------------------------------------------------------------------
def cmd_features(args: argparse.Namespace) -> int:
    from pyxdp.kernel import features
    data = features.probe_all()
    if args.json:
        _print_json(data)
        return 0
    yes: Callable[[bool], str] = lambda ok: "yes" if ok else "no"  # noqa: E731
    print(f"kernel {data['kernel']}")
    _table("system", ["setting", "value"], [[k, v] for k, v in data["system"].items()])
    print()
    _table("program types", ["type", "supported"],
           [[k.lower(), yes(v)] for k, v in data["prog_types"].items()])
    print()
    _table("map types", ["type", "supported"],
           [[k.lower(), yes(v)] for k, v in data["map_types"].items()])
    for ptype, names in data["helpers"].items():
        print(f"\nhelpers available to {ptype.lower()} programs ({len(names)}):")
        for name in names:
            print(f"  {name}")
    return 0


__all__ = ["register"]

"""``pyxdp compile``: compile a Python XDP program module to a BPF ELF object."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyxdp.cli._args import input_file
from pyxdp.cli._render import add_json, print_json
from pyxdp.errors import PyxdpError

PASSES = ("ast", "typed", "llvm", "opt", "asm")


def cmd_compile(args: argparse.Namespace) -> int:
    from pyxdp.compiler import compile_module

    dump = set(args.dump_after or ())
    obj = compile_module(args.file, programs=[args.function] if args.function else None,
                         dump=dump)
    if args.section:
        names = [n for n, p in obj.spec.programs.items() if p.section == args.section]
        if not names:
            raise PyxdpError(f"{args.file}: no program in section {args.section!r}")
        obj = compile_module(args.file, programs=names, dump=dump)
    if args.output:
        with open(args.output, "wb") as f:
            f.write(obj.elf)
    programs = [{"name": n, "section": p.section, "instructions": len(p.instructions)}
                for n, p in obj.spec.programs.items()]
    if args.json:
        print_json({"file": args.file, "output": args.output, "programs": programs,
                    "compile_ms": round(obj.compile_seconds * 1000, 3),
                    "dumps": {name: obj.dumps[name] for name in args.dump_after or ()}})
        return 0
    for name in args.dump_after or ():
        print(f";; ---- after {name} ----")
        print(obj.dumps[name])
    progs = ", ".join(f"{p['name']} ({p['section']}, {p['instructions']} insns)"
                      for p in programs)
    print(f"compiled {progs} in {obj.compile_seconds * 1000:.0f} ms"
          + (f" -> {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def _module_file(text: str) -> str:
    """The program module: an existing ``.py`` file (never source text on the command
    line, which ``compile_module`` would otherwise take)."""
    path = input_file(text)
    if path == "-" or not path.endswith(".py"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a .py file")
    try:
        with open(path, encoding="utf-8") as f:
            f.read()
    except UnicodeDecodeError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not Python source (not UTF-8 at byte"
                                         f" {e.start})") from None
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {e.strerror}") from None
    return path


def register(sub: Any) -> None:
    p = sub.add_parser("compile")
    p.add_argument("file", type=_module_file, help="the program module, a .py file")
    p.add_argument("-o", "--output", help="write the ELF object here")
    p.add_argument("--dump-after", action="append", choices=PASSES, metavar="PASS",
                   help=f"print the program after a pass ({', '.join(PASSES)}); repeatable")
    p.add_argument("--section", help="only the programs in this ELF section")
    p.add_argument("--function", help="only this program function")
    add_json(p)
    p.set_defaults(func=cmd_compile)

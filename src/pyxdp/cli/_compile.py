"""``pyxdp compile``: compile a Python XDP program module to a BPF ELF object."""

from __future__ import annotations

import argparse
import sys

PASSES = ("ast", "typed", "llvm", "opt", "asm")


def cmd_compile(args: argparse.Namespace) -> int:
    from pyxdp.compiler import compile_module

    only = None
    if args.function:
        only = [args.function]
    dump = set(args.dump_after or ())
    obj = compile_module(args.file, programs=only, dump=dump)
    if args.section:
        names = [n for n, p in obj.spec.programs.items() if p.section == args.section]
        if not names:
            print(f"pyxdp compile: no program in section {args.section!r}", file=sys.stderr)
            return 1
        obj = compile_module(args.file, programs=names, dump=dump)
    for name in args.dump_after or ():
        print(f";; ---- after {name} ----")
        print(obj.dumps[name])
    if args.output:
        with open(args.output, "wb") as f:
            f.write(obj.elf)
    progs = ", ".join(f"{n} ({p.section}, {len(p.instructions)} insns)"
                      for n, p in obj.spec.programs.items())
    print(f"compiled {progs} in {obj.compile_seconds * 1000:.0f} ms"
          + (f" -> {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a Python XDP program (pyxdp dialect) to BPF")
    p.add_argument("file", help="the program module, a .py file")
    p.add_argument("-o", "--output", help="write the ELF object here")
    p.add_argument("--dump-after", action="append", choices=PASSES, metavar="PASS",
                   help=f"print the program after a pass ({', '.join(PASSES)}); repeatable")
    p.add_argument("--section", help="only the programs in this ELF section")
    p.add_argument("--function", help="only this program function")
    p.set_defaults(func=cmd_compile)

"""``pyxdp asm`` and ``pyxdp disasm``: the assembler and disassembler on files.

``asm`` writes raw little-endian instructions with ``-o``; without it, it prints them as hex,
one instruction per line, which is also what the conformance plugin reads on stdin.
``disasm`` takes raw instruction bytes or a BPF ELF object; for an object it prints the
program picked with ``--section`` (program or section name), or lists and prints them all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pyxdp.errors import PyxdpError

ELF_MAGIC = b"\x7fELF"
SYNTAXES = ("auto", "llvm", "ubpf")


def read_input(path: str) -> bytes:
    """File contents, ``-`` meaning stdin (so the commands compose in pipelines)."""
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _text(data: bytes, path: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise PyxdpError(f"{path}: not assembly text (not UTF-8)") from None


def pick_program(obj: Any, name: str | None, path: str) -> Any:
    """The program of an object named ``name`` (program or section name); without a name
    the only program, if there is exactly one."""
    progs = obj.programs
    if name is None:
        if len(progs) == 1:
            return next(iter(progs.values()))
        raise PyxdpError(f"{path} has {len(progs)} programs ({', '.join(progs) or 'none'});"
                         " pick one with --section")
    for spec in progs.values():
        if name in (spec.name, spec.section):
            return spec
    raise PyxdpError(f"{path} has no program or section {name!r}"
                     f" (programs: {', '.join(progs) or 'none'})")


def cmd_asm(args: argparse.Namespace) -> int:
    from pyxdp.asm import assemble
    from pyxdp.isa import encode

    insns = assemble(_text(read_input(args.file), args.file), args.syntax)
    raw = encode(insns)
    if args.output:
        Path(args.output).write_bytes(raw)
        print(f"{len(raw) // 8} instruction slots ({len(raw)} bytes) -> {args.output}",
              file=sys.stderr)
        return 0
    for i in range(0, len(raw), 8):
        print(raw[i:i + 8].hex(" "))
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    from pyxdp.asm import disassemble

    syntax = "llvm" if args.syntax == "auto" else args.syntax
    data = read_input(args.file)
    if not data.startswith(ELF_MAGIC):
        if args.section:
            raise PyxdpError(f"{args.file}: --section needs an ELF object")
        if len(data) % 8:
            raise PyxdpError(f"{args.file}: {len(data)} bytes is not a whole number of"
                             " 8-byte instructions (and not an ELF object)")
        print(disassemble(data, syntax, labels=args.labels), end="")
        return 0
    from pyxdp.elf import load_object

    obj = load_object(data)
    if args.section:
        spec = pick_program(obj, args.section, args.file)
        print(disassemble(spec.instructions, syntax, labels=args.labels), end="")
        return 0
    for spec in obj.programs.values():
        print(f"; {spec.name}  section {spec.section}  {spec.type.name.lower()}"
              f"  {len(spec.instructions)} instructions")
    for spec in obj.programs.values():
        print(f"\n{spec.name}:")
        print(disassemble(spec.instructions, syntax, labels=args.labels), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("asm", help="assemble eBPF text to raw instructions")
    p.add_argument("file", metavar="FILE", help="assembly text ('-' for stdin)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write raw little-endian instructions here (default: hex on stdout)")
    p.add_argument("--syntax", choices=SYNTAXES, default="auto",
                   help="input syntax (default: detected)")
    p.set_defaults(func=cmd_asm)

    d = sub.add_parser("disasm", help="disassemble raw instructions or an ELF object")
    d.add_argument("file", metavar="FILE", help="raw bytecode or BPF ELF object ('-': stdin)")
    d.add_argument("--syntax", choices=SYNTAXES, default="llvm",
                   help="output syntax (auto means llvm)")
    d.add_argument("--section", "--program", dest="section", metavar="NAME",
                   help="the program (or section) of an ELF object to print")
    d.add_argument("--labels", action="store_true", help="print branch targets as labels")
    d.set_defaults(func=cmd_disasm)

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

from pyxdp.cli._render import add_json, print_json
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


def read_elf(data: bytes, path: str) -> Any:
    """The ObjectSpec of ELF bytes read from ``path``; errors say which file."""
    from pyxdp.elf import load_object

    obj = load_object(data)
    obj.path = obj.path or path
    return obj


def cmd_asm(args: argparse.Namespace) -> int:
    from pyxdp.asm import assemble
    from pyxdp.isa import encode

    insns = assemble(_text(read_input(args.file), args.file), args.syntax)
    if not insns:
        raise PyxdpError(f"{args.file}: no instructions to assemble")
    raw = encode(insns)
    slots = [raw[i:i + 8].hex(" ") for i in range(0, len(raw), 8)]
    if args.output:
        Path(args.output).write_bytes(raw)
    if args.json:
        print_json({"slots": len(slots), "bytes": len(raw), "output": args.output,
                    "instructions": slots})
    elif args.output:
        print(f"{len(slots)} instruction slots ({len(raw)} bytes) -> {args.output}",
              file=sys.stderr)
    else:
        for line in slots:
            print(line)
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    from pyxdp.asm import disassemble

    syntax = "llvm" if args.syntax == "auto" else args.syntax
    data = read_input(args.file)
    progs: list[dict[str, Any]] = []
    if not data.startswith(ELF_MAGIC):
        if args.section:
            raise PyxdpError(f"{args.file}: --section needs an ELF object")
        if len(data) % 8:
            raise PyxdpError(f"{args.file}: {len(data)} bytes is not a whole number of"
                             " 8-byte instructions (and not an ELF object)")
        progs.append({"name": None, "section": None, "type": None,
                      "text": disassemble(data, syntax, labels=args.labels)})
    else:
        obj = read_elf(data, args.file)
        specs = [obj.program(args.section)] if args.section else list(obj.programs.values())
        for spec in specs:
            progs.append({"name": spec.name, "section": spec.section,
                          "type": spec.type.name.lower(), "instructions": len(spec.instructions),
                          "text": disassemble(spec.instructions, syntax, labels=args.labels)})
    if args.json:
        print_json({"file": args.file, "syntax": syntax,
                    "programs": [{**p, "text": p["text"].splitlines()} for p in progs]})
        return 0
    if len(progs) == 1 and (args.section or progs[0]["name"] is None):
        print(progs[0]["text"], end="")
        return 0
    for p in progs:
        print(f"; {p['name']}  section {p['section']}  {p['type']}"
              f"  {p['instructions']} instructions")
    for p in progs:
        print(f"\n{p['name']}:")
        print(p["text"], end="")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("asm")
    p.add_argument("file", metavar="FILE", help="assembly text ('-' for stdin)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write raw little-endian instructions here (default: hex on stdout)")
    p.add_argument("--syntax", choices=SYNTAXES, default="auto",
                   help="input syntax (default: detected)")
    add_json(p)
    p.set_defaults(func=cmd_asm)

    d = sub.add_parser("disasm")
    d.add_argument("file", metavar="FILE", help="raw bytecode or BPF ELF object ('-': stdin)")
    d.add_argument("--syntax", choices=SYNTAXES, default="llvm",
                   help="output syntax (auto means llvm)")
    d.add_argument("--section", "--program", dest="section", metavar="NAME",
                   help="the program (or section) of an ELF object to print")
    d.add_argument("--labels", action="store_true", help="print branch targets as labels")
    add_json(d)
    d.set_defaults(func=cmd_disasm)

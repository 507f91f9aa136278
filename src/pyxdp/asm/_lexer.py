"""Tokenizer and line clean-up for the LLVM / llvm-objdump / bpftool syntax.

Lines pasted from ``llvm-objdump -d`` or ``bpftool prog dump xlated`` carry instruction
numbers, raw bytes, opcode hints and ``<label>`` annotations; :func:`clean_line` strips them
so the parser sees only the instruction, and keeps the bpftool opcode hint because bpftool
prints ``LD_IMM64`` as ``r1 = 0x...`` without LLVM's ``ll`` suffix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyxdp.asm._common import INT32, Pos, check_range, wrap

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>0[xX][0-9a-fA-F]+|\d+)
  | (?P<op>s>>=|s/=|s%=|s>=|s<=|s>|s<|<<=|>>=|==|!=|>=|<=|\+=|-=|\*=|/=|\|=|&=|%=|\^=
          |[=<>&()*+\-\[\],:#])
  | (?P<id>[A-Za-z_.$][\w.$]*)
""", re.VERBOSE)
_COMMENT = re.compile(r";|//|(?:^|(?<=\s))#")
_SKIP = re.compile(r"file format |^\s*Disassembly of section |\bR_BPF_\w+")
_OBJDUMP_LABEL = re.compile(r"\s*[0-9a-fA-F]+\s+<([^>]*)>:\s*\Z")
_INDEX = re.compile(r"\s*\d+:(?=\s|\Z)\s*")
_BYTES = re.compile(r"(?:[0-9a-fA-F]{2}(?:[ \t]+|\Z)){8}(?:(?:[0-9a-fA-F]{2}(?:[ \t]+|\Z)){8})?")
_HINT = re.compile(r"\((?:0x)?([0-9a-fA-F]{2})\)\s*")
_ANNOTATION = re.compile(r"\s+<[\w.$+\-]+>\s*\Z")


@dataclass(frozen=True)
class Tok:
    kind: str   # "num", "op", "id" or "end"
    text: str
    col: int    # 1-based


@dataclass
class Cleaned:
    """A source line reduced to its instruction text (``body`` starts at column ``col``)."""

    body: str
    col: int
    label: str | None = None
    hint: int | None = None   # bpftool's "(18)" opcode hint


def clean_line(raw: str) -> Cleaned | None:
    """Strip comments and disassembler decorations; None when nothing is left to assemble."""
    m = _COMMENT.search(raw)
    text = raw[:m.start()] if m else raw
    if _SKIP.search(text):
        return None
    if m := _OBJDUMP_LABEL.match(text):
        return Cleaned("", len(text) + 1, m.group(1))
    col = 0
    hint = None
    for pattern in (_INDEX, _BYTES, _HINT):
        if m := pattern.match(text, col):
            if pattern is _HINT:
                hint = int(m.group(1), 16)
            col = m.end()
    text = _ANNOTATION.sub("", text)
    label = None
    if m := re.match(r"\s*([A-Za-z_.$][\w.$]*):", text[col:]):
        label, col = m.group(1), col + m.end()
    rest = text[col:]
    stripped = rest.lstrip()
    col += len(rest) - len(stripped)
    if not stripped.rstrip() and label is None:
        return None
    return Cleaned(stripped.rstrip(), col + 1, label, hint)


def tokenize(body: str, col: int, pos: Pos) -> list[Tok]:
    """Split an instruction into tokens; an unknown character is an ``AsmError``."""
    out: list[Tok] = []
    i = 0
    while i < len(body):
        m = _TOKEN.match(body, i)
        if not m:
            raise pos.at(col + i).error(f"unexpected character {body[i]!r}")
        if m.lastgroup != "ws":
            out.append(Tok(m.lastgroup or "", m.group(), col + i))
        i = m.end()
    out.append(Tok("end", "", col + len(body)))
    return out


def imm32(value: int, pos: Pos) -> int:
    """LLVM accepts any 32-bit pattern: signed, or unsigned up to 0xffffffff (reinterpreted)."""
    return wrap(check_range(value, INT32[0], 0xFFFFFFFF, pos, "immediate"), 32)


def imm64(value: int, pos: Pos) -> int:
    return wrap(check_range(value, -(1 << 63), (1 << 64) - 1, pos, "immediate"), 64)

"""Parser for bpf_conformance ``.data`` test cases (see ``shared/conformance/FORMAT.md`` §1.1).

The parsing rules follow the upstream C++ parser exactly (comment cut at ``#``, directives
picked by substring in a fixed order, "last line wins" for result and error) so that a case
means here what it means upstream.  One extension: the ``negative/unused-*`` files write raw
instructions as eight two-digit hex bytes per line, which upstream would mis-read; such lines
are decoded as one instruction each so those cases are usable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Case", "CaseError", "load_case", "parse_case", "program_bytes"]


class CaseError(ValueError):
    """A ``.data`` file that cannot be used: unknown directive, bad number, no program."""


@dataclass(frozen=True)
class Case:
    """One conformance case.

    ``raw`` (little-endian instruction bytes) replaces ``asm`` when both are present;
    ``result`` is the expected full 64-bit ``r0`` and ``error`` the expected rejection text
    (``""`` when an ``-- error`` section is present but empty, ``None`` when absent).
    """

    name: str
    asm: str | None = None
    raw: bytes | None = None
    mem: bytes = b""
    result: int | None = None
    error: str | None = None


# Directive keywords, tested as substrings in this order; the first match wins.
_DIRECTIVES: tuple[tuple[str, str], ...] = (
    ("asm", "asm"), ("result", "result"), ("mem", "mem"), ("raw", "raw"),
    ("no register offset", "ignore"), (" c", "ignore"), ("error", "error"),
)
_BYTE_LINE = re.compile(r"^\s*(?:[0-9a-fA-F]{2}\s+){7}[0-9a-fA-F]{2}\s*$")


def _directive(line: str, lineno: int, name: str) -> str:
    for needle, section in _DIRECTIVES:
        if needle in line:
            return section
    raise CaseError(f"{name or '<case>'}:{lineno}: unknown directive {line.strip()!r}")


def _int(token: str, base: int, what: str, name: str) -> int:
    try:
        return int(token, base)
    except ValueError:
        raise CaseError(f"{name or '<case>'}: bad {what} {token!r}") from None


def _raw_bytes(lines: list[str], name: str) -> bytes:
    """Raw section: one u64 per token (upstream), or 8 hex bytes per line (``unused-*``)."""
    out = bytearray()
    for line in lines:
        if _BYTE_LINE.match(line):
            out += bytes(int(t, 16) for t in line.split())
            continue
        for tok in line.split():
            base = 16 if tok.lower().startswith("0x") else 10
            value = _int(tok, base, "raw instruction", name)
            if not 0 <= value < 1 << 64:
                raise CaseError(f"{name or '<case>'}: raw instruction {tok!r} is not a u64")
            out += value.to_bytes(8, "little")
    return bytes(out)


def _last(lines: list[str]) -> str | None:
    """Last non-empty line (upstream keeps overwriting, so the last one wins)."""
    for line in reversed(lines):
        if line.strip():
            return line
    return None


def parse_case(text: str, name: str = "") -> Case:
    """Parse the text of one ``.data`` file into a :class:`Case` (FORMAT.md §1.1)."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for lineno, rawline in enumerate(text.split("\n"), 1):
        line = rawline.removesuffix("\r").split("#", 1)[0]
        if "--" in line:
            current = _directive(line, lineno, name)
            sections.setdefault(current, [])
            continue
        if not line or current is None or current == "ignore":
            continue
        sections[current].append(line)

    result = None
    if (res := _last(sections.get("result", []))) is not None:
        res = res.strip()
        result = _int(res, 16 if "0x" in res else 10, "result", name) & ((1 << 64) - 1)
    mem = bytes(_int(t, 16, "mem byte", name) & 0xFF
                for t in " ".join(sections.get("mem", [])).split())
    raw = _raw_bytes(sections["raw"], name) if "raw" in sections else None
    asm = "\n".join(sections["asm"]) + "\n" if "asm" in sections else None
    # An ``-- error`` section with no text (the ``unused-*`` files) still means "must be
    # rejected", so it is kept as "" rather than collapsed to None.
    error = None
    if "error" in sections:
        error = (_last(sections["error"]) or "").strip()
    return Case(name=name, asm=asm, raw=raw, mem=mem, result=result, error=error)


def load_case(path: str | Path) -> Case:
    """Read and parse one ``.data`` file; the case is named after the file stem."""
    p = Path(path)
    return parse_case(p.read_text(encoding="utf-8"), name=p.stem)


def program_bytes(case: Case) -> bytes:
    """The program of ``case`` as raw bytes: ``raw`` if present, else the assembled ``asm``.

    Raises :class:`CaseError` when the case has no program (upstream skips those files) and
    :class:`pyxdp.errors.AsmError` when the assembly text is invalid.
    """
    if case.raw:
        return case.raw
    if case.asm is None or not case.asm.strip():
        raise CaseError(f"{case.name or '<case>'}: case has no program (no asm or raw section)")
    from pyxdp.asm import assemble_bytes  # late: the assembler imports far more than we need

    code = assemble_bytes(case.asm, syntax="ubpf")
    if not code:
        raise CaseError(f"{case.name or '<case>'}: program is empty")
    return code

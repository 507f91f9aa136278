"""Output of the ``pyxdp`` commands: plain aligned tables for people, one JSON document for
scripts (bpftool's ``-j``).  Plain text on purpose: a table library costs more start-up
time than most commands take to run, and piped output must not be cut or wrapped.
"""

from __future__ import annotations

import argparse
import math
import sys

from pyxdp.errors import PyxdpError

TYPE_CHECKING = False           # typing is not imported at run time: start-up speed
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence
    from typing import Any


class UsageError(PyxdpError):
    """A command used wrongly in a way argparse cannot see: exit 2, like argparse."""


def add_json(p: argparse.ArgumentParser) -> None:
    """The ``-j/--json`` option of a command that prints data."""
    p.add_argument("-j", "--json", action="store_true",
                   help="print one JSON document on stdout (like bpftool -j)")


def _finite(data: Any) -> Any:
    """NaN and infinities (no value measured) as null: they are not JSON."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def print_json(data: Any) -> None:
    """``data`` as one JSON document on stdout (strict JSON: NaN becomes null)."""
    import json
    sys.stdout.write(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
          right: Collection[str] = ()) -> None:
    """Print ``rows`` under ``columns``, aligned with two spaces between columns; columns
    named in ``right`` are right-aligned (numbers).  ``None`` prints as nothing."""
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [title] if title else []
    for r in [list(columns), *cells]:
        lines.append("  ".join(v.rjust(w) if c in right else v.ljust(w)
                               for c, v, w in zip(columns, r, widths, strict=True)).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")


def kind(value: Any) -> str:
    """An enum member's name in lower case, or the bare number (a type newer than pyxdp)."""
    return value.name.lower() if hasattr(value, "name") else str(value)


def prog_type_arg(text: str) -> str:
    """argparse ``type=`` of a ``--type`` option: a section name the loader knows
    (``xdp``, ``tc``, ``cgroup_skb/ingress``...), as bpftool's ``prog loadall ... type``."""
    from pyxdp.abi import ProgType
    from pyxdp.elf import classify_section, section_names

    if classify_section(text).type == ProgType.UNSPEC:
        raise argparse.ArgumentTypeError(
            f"unknown program type {text!r} (a section name: {section_names()})")
    return text


def read_object(path: str, prog_type: str | None = None) -> Any:
    """The :class:`~pyxdp.spec.ObjectSpec` of the ELF file ``path``; its errors name the
    file.  ``prog_type`` forces every program's type (``load_object(prog_type=)``)."""
    from pyxdp.elf import load_object
    from pyxdp.errors import ElfError

    try:
        return load_object(path, prog_type=prog_type)
    except ElfError as e:
        msg = str(e)
        raise ElfError(msg if path in msg else f"{path}: {msg}") from None


__all__ = ["UsageError", "add_json", "kind", "print_json", "prog_type_arg", "read_object",
           "table"]

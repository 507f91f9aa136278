"""The verifier-rewritten (xlated) instructions of a loaded program, annotated the way
``bpftool prog dump xlated`` annotates them: helper calls by kernel symbol, calls into
subprograms by index.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from pyxdp.isa import Instruction

KALLSYMS = "/proc/kallsyms"


@dataclass(frozen=True)
class XlatedLine:
    """One xlated instruction: its slot (an ``lddw`` takes two), its text, and what the
    call it makes goes to (``helper``: kernel symbol; ``subprog``: subprogram index)."""

    slot: int
    text: str
    helper: str | None = None
    subprog: int | None = None


@functools.cache
def _kallsyms(path: str = KALLSYMS) -> tuple[list[int], list[str], int | None]:
    """Sorted text symbol addresses and names, and ``__bpf_call_base``."""
    addrs: list[tuple[int, str]] = []
    base = None
    try:
        with open(path) as f:
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


def helper_symbol(imm: int, kallsyms: str = KALLSYMS) -> str | None:
    """The kernel function an xlated helper call goes to: the verifier stores
    ``helper - __bpf_call_base`` in ``imm``.  None when the address is not a symbol or
    ``kptr_restrict`` hides addresses (they read as 0)."""
    addrs, names, base = _kallsyms(kallsyms)
    if not base:
        return None
    target = base + imm
    i = bisect.bisect_right(addrs, target) - 1
    return names[i] if i >= 0 and addrs[i] == target else None


def annotate_xlated(insns: Sequence[Instruction], syntax: str = "llvm",
                    kallsyms: str = KALLSYMS) -> list[XlatedLine]:
    """Text of ``insns`` (as :meth:`Program.xlated` gives them) with call targets named."""
    from pyxdp.asm import format_insn

    out = []
    slot = 0
    for insn in insns:
        subprog = None
        if insn.is_pseudo_call and insn.off:
            # the verifier puts the callee's subprogram index in `off` of xlated calls
            subprog = insn.off
            insn = dataclasses.replace(insn, off=0)
        helper = helper_symbol(insn.imm, kallsyms) if insn.is_helper_call else None
        out.append(XlatedLine(slot, format_insn(insn, syntax), helper, subprog))
        slot += insn.slots
    return out


__all__ = ["XlatedLine", "annotate_xlated", "helper_symbol"]

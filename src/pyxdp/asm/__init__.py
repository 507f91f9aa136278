"""eBPF assembler and disassembler, in two syntaxes, plus a :class:`Builder` for code.

* ``"ubpf"``: the uBPF / bpf_conformance syntax (``mov %r0, 1``, ``ldxw %r0, [%r1+4]``).
* ``"llvm"``: what ``llvm-objdump -d`` and ``bpftool prog dump xlated`` print
  (``r0 = 1``, ``r0 = *(u32 *)(r1 + 4)``, ``if r1 > 5 goto +2``); their line prefixes are
  stripped, so a disassembly can be pasted back in.

Every failure is an :class:`pyxdp.errors.AsmError` with the line, column and line text.
``disassemble`` prints text that assembles back to the same instructions.
"""

from __future__ import annotations

import re

from pyxdp.asm._builder import Builder
from pyxdp.asm._format import check_syntax, disassemble, format_insn
from pyxdp.asm._llvm import assemble_llvm
from pyxdp.asm._regs import FP, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, Reg
from pyxdp.asm._ubpf import assemble_ubpf
from pyxdp.errors import AsmError
from pyxdp.isa import Instruction, encode

__all__ = [
    "FP", "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "AsmError",
    "Builder", "Reg", "assemble", "assemble_bytes", "detect_syntax", "disassemble",
    "format_insn",
]

_UBPF_REG = re.compile(r"%r\d")
_LLVM_HINT = re.compile(r"=|^\s*(?:\d+:\s*)?(?:if|goto|gotol|callx|lock\s*\*)\b|call\s+pc[+-]")
_UBPF_MNEMONIC = re.compile(
    r"^\s*(?:[A-Za-z_.$][\w.$]*:\s*)?(?:lddw|ld(?:xs?|abs|ind)(?:b|h|w|dw)|stx?(?:b|h|w|dw)|lock|ja32|j[a-z]+|"
    r"(?:mov|add|sub|mul|div|or|and|lsh|rsh|arsh|mod|xor|neg|sdiv|smod|le|be|swap|bswap)"
    r"\d*|movsx\d+|call\s+(?:local|runtime))\s")


def detect_syntax(text: str) -> str:
    """Guess the syntax of ``text``: the first line that only one syntax could have decides.

    Lines that read the same in both (``exit``, ``call 1``, labels) do not count; text made
    only of them is assembled as LLVM syntax, which gives the same result.
    """
    for line in text.splitlines():
        code = re.split(r";|//|(?:^|(?<=\s))#", line, maxsplit=1)[0]
        if not code.strip():
            continue
        if _UBPF_REG.search(code):
            return "ubpf"
        if _LLVM_HINT.search(code):
            return "llvm"
        if _UBPF_MNEMONIC.search(code):
            return "ubpf"
    return "llvm"


def assemble(text: str, syntax: str = "auto") -> list[Instruction]:
    """Assemble ``text`` (syntax ``"auto"``, ``"ubpf"`` or ``"llvm"``) into instructions.

    ``LD_IMM64`` is one :class:`~pyxdp.isa.Instruction`; labels and offsets count slots.
    """
    check_syntax(syntax)
    if not isinstance(text, str):
        raise AsmError(f"assembly text must be a str, not {type(text).__name__}")
    if syntax == "auto":
        syntax = detect_syntax(text)
    return assemble_ubpf(text) if syntax == "ubpf" else assemble_llvm(text)


def assemble_bytes(text: str, syntax: str = "auto") -> bytes:
    """Assemble ``text`` straight to little-endian instruction bytes."""
    return encode(assemble(text, syntax))

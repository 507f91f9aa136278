"""Pieces shared by both assembly syntaxes and the builder: source positions, numbers,
and the label-resolving program accumulator.

Everything that can fail raises :class:`AsmError` carrying the line, the column and the
line text, so callers never see a bare ``ValueError`` from the ``Instruction`` constructor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyxdp.errors import AsmError
from pyxdp.isa import LD_IMM64, Class, Instruction, JmpOp

LABEL_RE = re.compile(r"[A-Za-z_.$][\w.$]*\Z")
INT_RE = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|\d+)\Z")
INT32 = (-(1 << 31), (1 << 31) - 1)
INT16 = (-(1 << 15), (1 << 15) - 1)


@dataclass(frozen=True)
class Pos:
    """Where something came from in the source text, for error messages (1-based)."""

    line: int | None = None
    column: int | None = None
    text: str | None = None

    def at(self, column: int | None) -> Pos:
        return Pos(self.line, column, self.text)

    def error(self, message: str) -> AsmError:
        return AsmError(message, self.line, self.column, self.text)


NOWHERE = Pos()


def parse_int(token: str, pos: Pos, what: str = "a number") -> int:
    """Parse a decimal or ``0x`` hex integer with an optional sign, or raise ``AsmError``."""
    if not INT_RE.match(token):
        raise pos.error(f"expected {what}, found {token!r}")
    return int(token, 0) if not re.match(r"[+-]?0\d", token) else int(token, 10)


def check_range(value: int, lo: int, hi: int, pos: Pos, what: str) -> int:
    if not lo <= value <= hi:
        raise pos.error(f"{what} {value} is out of range [{lo}, {hi}]")
    return value


def wrap(value: int, bits: int) -> int:
    """Reinterpret an unsigned ``bits``-bit value as signed (``0x80000000`` -> ``INT32_MIN``)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def make(pos: Pos, opcode: int, dst: int = 0, src: int = 0, off: int = 0,
         imm: int = 0) -> Instruction:
    """Build an ``Instruction``, turning its field-range ``ValueError`` into ``AsmError``."""
    try:
        return Instruction(opcode, dst, src, off, imm)
    except ValueError as exc:
        raise pos.error(str(exc)) from None


def uses_target(insn: Instruction) -> bool:
    """Whether the instruction's relative offset can be written as a label."""
    return insn.is_branch or insn.is_pseudo_call


@dataclass
class _Item:
    insn: Instruction
    target: str | None
    pos: Pos


@dataclass
class Program:
    """Accumulates instructions and labels, then resolves label targets in :meth:`resolve`.

    Labels are *slot* indexes (``LD_IMM64`` counts two), like the kernel and bpf_conformance.
    When ``implicit_exit`` is set, an undefined label ``exit`` means the first ``exit``
    instruction (a bpf_conformance convenience).
    """

    implicit_exit: bool = True
    items: list[_Item] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    slot: int = 0

    def label(self, name: str, pos: Pos = NOWHERE) -> None:
        if not LABEL_RE.match(name):
            raise pos.error(f"invalid label name {name!r}")
        if name in self.labels:
            raise pos.error(f"duplicate label {name!r}")
        self.labels[name] = self.slot

    def add(self, insn: Instruction, target: str | None = None, pos: Pos = NOWHERE) -> int:
        """Append ``insn``; ``target`` names a label to patch into its branch offset."""
        self.items.append(_Item(insn, target, pos))
        self.slot += insn.slots
        return len(self.items) - 1

    def _target(self, name: str, pos: Pos) -> int:
        if name in self.labels:
            return self.labels[name]
        if name == "exit" and self.implicit_exit:
            slot = 0
            for item in self.items:
                if item.insn.opcode == Class.JMP | JmpOp.EXIT:
                    return slot
                slot += item.insn.slots
        raise pos.error(f"undefined label {name!r}")

    def resolve(self) -> list[Instruction]:
        out: list[Instruction] = []
        slot = 0
        for item in self.items:
            insn = item.insn
            if item.target is not None:
                rel = self._target(item.target, item.pos) - slot - 1
                wide = insn.opcode == Class.JMP32 | JmpOp.JA or insn.is_pseudo_call
                lo, hi = INT32 if wide else INT16
                if not lo <= rel <= hi:
                    raise item.pos.error(
                        f"jump to {item.target!r} is out of range (offset {rel} does not fit"
                        f" in {'32' if wide else '16'} bits)")
                insn = insn.with_branch_offset(rel)
            out.append(insn)
            slot += insn.slots
        return out


def is_lddw(insn: Instruction) -> bool:
    return insn.opcode == LD_IMM64

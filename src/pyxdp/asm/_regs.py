"""Register operands for the :class:`~pyxdp.asm.Builder`.

A distinct ``Reg`` type lets one method take "register or immediate" without a second
``_reg`` variant: ``b.add64(R1, R2)`` adds a register, ``b.add64(R1, 2)`` an immediate.
"""

from __future__ import annotations

from pyxdp.errors import AsmError


class Reg(int):
    """A register operand (``r0``..``r10``); an ``int`` subclass so it also works as a number."""

    def __new__(cls, number: int) -> Reg:
        if not 0 <= int(number) <= 10:
            raise AsmError(f"invalid register r{number} (registers are r0..r10)")
        return super().__new__(cls, number)

    def __repr__(self) -> str:
        return f"R{int(self)}"


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = (Reg(i) for i in range(11))
FP = R10  # the read-only frame pointer

Operand = int  # a Reg (register source) or a plain int (immediate)
Target = str | int  # a label name, or a relative slot offset

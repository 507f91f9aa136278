"""Opcode fields of the eBPF instruction set (RFC 9669), as small ``IntEnum`` types.

An opcode byte is ``class | op | source`` for arithmetic and jumps, and
``class | mode | size`` for loads and stores.  The enums carry no ``BPF_`` prefix.
"""

from __future__ import annotations

from enum import IntEnum


class Class(IntEnum):
    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Source(IntEnum):
    K = 0x00  # operand is the immediate
    X = 0x08  # operand is the src register


class AluOp(IntEnum):
    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class JmpOp(IntEnum):
    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0


class Size(IntEnum):
    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18

    @property
    def nbytes(self) -> int:
        return _SIZE_BYTES[self]


_SIZE_BYTES = {Size.W: 4, Size.H: 2, Size.B: 1, Size.DW: 8}
SIZE_OF_BYTES = {v: k for k, v in _SIZE_BYTES.items()}


class Mode(IntEnum):
    IMM = 0x00
    ABS = 0x20  # legacy packet access (socket filters)
    IND = 0x40  # legacy packet access (socket filters)
    MEM = 0x60
    MEMSX = 0x80
    ATOMIC = 0xC0


class AtomicOp(IntEnum):
    """Values of ``imm`` for ``STX | ATOMIC`` instructions."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1
    CMPXCHG = 0xF1


FETCH = 0x01


class PseudoSrc(IntEnum):
    """``src`` of a ``LD_IMM64`` instruction: what the 64-bit immediate means."""

    IMM64 = 0           # a plain 64-bit constant
    MAP_FD = 1          # imm = map fd; the register gets the map pointer
    MAP_VALUE = 2       # imm = map fd, next imm = offset into value 0
    BTF_ID = 3          # imm = BTF id of a kernel variable
    FUNC = 4            # imm = instruction offset of a subprogram (callback)
    MAP_IDX = 5         # imm = index into fd_array
    MAP_IDX_VALUE = 6   # like MAP_VALUE with an fd_array index


class CallSrc(IntEnum):
    """``src`` of a ``CALL`` instruction."""

    HELPER = 0   # imm = helper id
    PSEUDO = 1   # imm = relative offset of a bpf-to-bpf call
    KFUNC = 2    # imm = BTF id of a kernel function


class EndSrc(IntEnum):
    """``src`` bit of the ``END`` (byte swap) instruction in the ALU class."""

    TO_LE = 0x00
    TO_BE = 0x08


LD_IMM64 = Class.LD | Mode.IMM | Size.DW  # 0x18

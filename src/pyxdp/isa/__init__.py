"""The eBPF instruction set (RFC 9669): opcode enums, the :class:`Instruction` value and its
byte encoding, and the table of kernel helper ids. Pure: no kernel needed."""

from pyxdp.abi import XdpAction
from pyxdp.isa._helpers import HELPER_NAMES, HELPERS
from pyxdp.isa._instruction import MAX_REG, Instruction, decode, encode, slot_offsets
from pyxdp.isa._opcodes import (
    FETCH,
    LD_IMM64,
    SIZE_OF_BYTES,
    AluOp,
    AtomicOp,
    CallSrc,
    Class,
    EndSrc,
    JmpOp,
    Mode,
    PseudoSrc,
    Size,
    Source,
)

__all__ = [
    "FETCH", "HELPERS", "HELPER_NAMES", "LD_IMM64", "MAX_REG", "SIZE_OF_BYTES", "AluOp",
    "AtomicOp", "CallSrc", "Class", "EndSrc", "Instruction", "JmpOp", "Mode", "PseudoSrc",
    "Size", "Source", "XdpAction", "decode", "encode", "slot_offsets",
]

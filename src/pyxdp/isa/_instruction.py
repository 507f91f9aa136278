"""The eBPF instruction as an immutable value, and its byte encoding.

An instruction is ``{u8 opcode; u4 dst; u4 src; s16 off; s32 imm}`` in little endian.
``LD_IMM64`` occupies two 8-byte slots; here it is *one* :class:`Instruction` whose ``imm``
holds the whole 64-bit constant (like cilium/ebpf), so jump offsets are counted in slots
(:attr:`Instruction.slots`) but programs are lists of whole instructions.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from pyxdp.errors import DecodeError
from pyxdp.isa._opcodes import (
    LD_IMM64,
    AluOp,
    AtomicOp,
    CallSrc,
    Class,
    JmpOp,
    Mode,
    PseudoSrc,
    Size,
    Source,
)

_SLOT = struct.Struct("<BBhi")
MAX_REG = 10
_ATOMIC_IMMS = frozenset(int(a) for a in AtomicOp)


def _signed(value: int, bits: int, what: str) -> int:
    """Accept ``value`` as signed or unsigned ``bits``-bit and return the signed form."""
    lo, hi = -(1 << (bits - 1)), 1 << bits
    if not lo <= value < hi:
        raise ValueError(f"{what} {value} does not fit in {bits} bits")
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


@dataclass(frozen=True, slots=True)
class Instruction:
    """One eBPF instruction. ``imm`` is signed 32-bit, or signed 64-bit for ``LD_IMM64``."""

    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.opcode <= 0xFF:
            raise ValueError(f"opcode {self.opcode:#x} is not a byte")
        for name in ("dst", "src"):
            reg = getattr(self, name)
            if not 0 <= reg <= 0xF:
                raise ValueError(f"{name} register {reg} is not in 0..15")
        object.__setattr__(self, "off", _signed(self.off, 16, "offset"))
        bits = 64 if self.opcode == LD_IMM64 else 32
        object.__setattr__(self, "imm", _signed(self.imm, bits, "immediate"))

    # -- anatomy -------------------------------------------------------------------------
    @property
    def cls(self) -> Class:
        return Class(self.opcode & 0x07)

    @property
    def slots(self) -> int:
        """Number of 8-byte slots: 2 for ``LD_IMM64``, else 1."""
        return 2 if self.opcode == LD_IMM64 else 1

    @property
    def is_alu(self) -> bool:
        return self.opcode & 0x07 in (Class.ALU, Class.ALU64)

    @property
    def is_jump(self) -> bool:
        return self.opcode & 0x07 in (Class.JMP, Class.JMP32)

    @property
    def is_load_store(self) -> bool:
        return self.opcode & 0x07 in (Class.LD, Class.LDX, Class.ST, Class.STX)

    @property
    def op(self) -> int:
        """The operation nibble (``AluOp`` or ``JmpOp`` value) of arithmetic and jumps."""
        return self.opcode & 0xF0

    @property
    def source(self) -> Source:
        return Source(self.opcode & 0x08)

    @property
    def size(self) -> Size:
        return Size(self.opcode & 0x18)

    @property
    def mode(self) -> Mode:
        return Mode(self.opcode & 0xE0)

    @property
    def is_exit(self) -> bool:
        return self.opcode == Class.JMP | JmpOp.EXIT

    @property
    def is_call(self) -> bool:
        return self.opcode == Class.JMP | JmpOp.CALL

    @property
    def is_helper_call(self) -> bool:
        return self.is_call and self.src == CallSrc.HELPER

    @property
    def is_pseudo_call(self) -> bool:
        return self.is_call and self.src == CallSrc.PSEUDO

    @property
    def is_branch(self) -> bool:
        """A jump with a target (``ja``, ``gotol`` or a conditional), not call or exit."""
        return self.is_jump and self.op not in (JmpOp.CALL, JmpOp.EXIT)

    @property
    def branch_offset(self) -> int:
        """Relative slot offset of a branch: ``imm`` for the 32-bit ``ja``, else ``off``."""
        if self.opcode == Class.JMP32 | JmpOp.JA:
            return self.imm
        return self.off

    def with_branch_offset(self, offset: int) -> Instruction:
        if self.opcode == Class.JMP32 | JmpOp.JA or self.is_pseudo_call:
            return Instruction(self.opcode, self.dst, self.src, self.off, offset)
        return Instruction(self.opcode, self.dst, self.src, offset, self.imm)

    # -- encoding ------------------------------------------------------------------------
    def encode(self) -> bytes:
        regs = (self.src << 4) | self.dst
        if self.opcode == LD_IMM64:
            lo = self.imm & 0xFFFFFFFF
            hi = (self.imm >> 32) & 0xFFFFFFFF
            return (_SLOT.pack(self.opcode, regs, self.off, _signed(lo, 32, "imm"))
                    + _SLOT.pack(0, 0, 0, _signed(hi, 32, "imm")))
        return _SLOT.pack(self.opcode, regs, self.off, self.imm)

    def problem(self) -> str | None:
        """Why this instruction is not valid eBPF (RFC 9669), or ``None`` when it is.

        Checks the opcode and that fields the opcode does not use are zero.
        """
        return _problem(self)

    def __repr__(self) -> str:
        return (f"Instruction(op={self.opcode:#04x}, dst={self.dst}, src={self.src}, "
                f"off={self.off}, imm={self.imm})")


def _reg_problem(insn: Instruction, *, dst: bool, src: bool) -> str | None:
    if dst and insn.dst > MAX_REG:
        return f"invalid dst register r{insn.dst}"
    if src and insn.src > MAX_REG:
        return f"invalid src register r{insn.src}"
    return None


def _unused(insn: Instruction, *fields: str) -> str | None:
    for f in fields:
        if getattr(insn, f) != 0:
            return f"unused field {f} must be zero (is {getattr(insn, f)})"
    return None


def _problem(insn: Instruction) -> str | None:  # one table, read top to bottom
    code = insn.opcode
    cls = code & 0x07
    if cls in (Class.ALU, Class.ALU64):
        op = code & 0xF0
        x = code & 0x08
        if op not in AluOp._value2member_map_:
            return f"unknown ALU operation in opcode {code:#04x}"
        if op == AluOp.END:
            if cls == Class.ALU64 and x:
                return f"unknown opcode {code:#04x}"
            if insn.imm not in (16, 32, 64):
                return f"byte swap width must be 16, 32 or 64 (is {insn.imm})"
            return _unused(insn, "src", "off") or _reg_problem(insn, dst=True, src=False)
        if op == AluOp.NEG:
            if x:
                return f"neg takes no source register (opcode {code:#04x})"
            return _unused(insn, "src", "off", "imm") or _reg_problem(insn, dst=True, src=False)
        if op in (AluOp.DIV, AluOp.MOD):
            allowed_off: tuple[int, ...] = (0, 1)
        elif op == AluOp.MOV and x:
            allowed_off = (0, 8, 16, 32) if cls == Class.ALU64 else (0, 8, 16)
        else:
            allowed_off = (0,)
        if insn.off not in allowed_off:
            return f"unused field off must be zero (is {insn.off})" if allowed_off == (0,) else (
                f"offset {insn.off} is not valid for this operation")
        if x:
            return _unused(insn, "imm") or _reg_problem(insn, dst=True, src=True)
        return _unused(insn, "src") or _reg_problem(insn, dst=True, src=False)

    if cls in (Class.JMP, Class.JMP32):
        op = code & 0xF0
        x = code & 0x08
        if op not in JmpOp._value2member_map_:
            return f"unknown jump operation in opcode {code:#04x}"
        if op == JmpOp.JA:
            if x:
                return f"unknown opcode {code:#04x}"
            if cls == Class.JMP32:
                return _unused(insn, "dst", "src", "off")
            return _unused(insn, "dst", "src", "imm")
        if op == JmpOp.CALL:
            if cls == Class.JMP32:
                return f"unknown opcode {code:#04x}"
            if x:  # callx: target address in the dst register
                return _unused(insn, "src", "off", "imm") or _reg_problem(insn, dst=True, src=False)
            if insn.src not in CallSrc._value2member_map_:
                return f"unknown call kind src={insn.src}"
            return _unused(insn, "dst", "off")
        if op == JmpOp.EXIT:
            if cls == Class.JMP32 or x:
                return f"unknown opcode {code:#04x}"
            return _unused(insn, "dst", "src", "off", "imm")
        if x:
            return _unused(insn, "imm") or _reg_problem(insn, dst=True, src=True)
        return _unused(insn, "src") or _reg_problem(insn, dst=True, src=False)

    mode = code & 0xE0
    size = code & 0x18
    if cls == Class.LD:
        if code == LD_IMM64:
            if insn.src not in PseudoSrc._value2member_map_:
                return f"unknown LD_IMM64 pseudo source src={insn.src}"
            return _unused(insn, "off") or _reg_problem(insn, dst=True, src=False)
        if mode in (Mode.ABS, Mode.IND) and size != Size.DW:
            if mode == Mode.ABS:
                return _unused(insn, "dst", "src", "off")
            return _unused(insn, "dst", "off") or _reg_problem(insn, dst=False, src=True)
        return f"unknown opcode {code:#04x}"
    if cls == Class.LDX:
        if mode == Mode.MEM or (mode == Mode.MEMSX and size != Size.DW):
            return _unused(insn, "imm") or _reg_problem(insn, dst=True, src=True)
        return f"unknown opcode {code:#04x}"
    if cls == Class.ST:
        if mode == Mode.MEM:
            return _unused(insn, "src") or _reg_problem(insn, dst=True, src=False)
        return f"unknown opcode {code:#04x}"
    # STX
    if mode == Mode.MEM:
        return _unused(insn, "imm") or _reg_problem(insn, dst=True, src=True)
    if mode == Mode.ATOMIC and size in (Size.W, Size.DW):
        if insn.imm not in _ATOMIC_IMMS:
            return f"unknown atomic operation imm={insn.imm:#x}"
        return _reg_problem(insn, dst=True, src=True)
    return f"unknown opcode {code:#04x}"


def decode(data: bytes | bytearray | memoryview, *, strict: bool = True) -> list[Instruction]:
    """Decode raw little-endian eBPF bytes into instructions.

    With ``strict`` (the default) every instruction is validated (:meth:`Instruction.problem`);
    any fault raises :class:`DecodeError` with the byte offset and the reason.
    """
    data = bytes(data)
    if len(data) % 8:
        raise DecodeError(f"length {len(data)} is not a multiple of 8", len(data) - len(data) % 8)
    out: list[Instruction] = []
    pos = 0
    n = len(data)
    while pos < n:
        code, regs, off, imm = _SLOT.unpack_from(data, pos)
        if code == LD_IMM64:
            if pos + 16 > n:
                raise DecodeError("LD_IMM64 is missing its second slot", pos)
            code2, regs2, off2, imm2 = _SLOT.unpack_from(data, pos + 8)
            if strict and (code2 or regs2 or off2):
                raise DecodeError("second slot of LD_IMM64 must have zero opcode, registers"
                                  " and offset", pos + 8)
            imm = (imm & 0xFFFFFFFF) | ((imm2 & 0xFFFFFFFF) << 32)
        insn = Instruction(code, regs & 0xF, regs >> 4, off, imm)
        if strict:
            why = insn.problem()
            if why:
                raise DecodeError(why, pos)
        out.append(insn)
        pos += 8 * insn.slots
    return out


def encode(insns: Iterable[Instruction]) -> bytes:
    """Encode instructions to raw little-endian bytes."""
    return b"".join(i.encode() for i in insns)


def slot_offsets(insns: list[Instruction]) -> list[int]:
    """Slot index of each instruction (``LD_IMM64`` counts two)."""
    out, pos = [], 0
    for i in insns:
        out.append(pos)
        pos += i.slots
    return out

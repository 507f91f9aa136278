"""A small Python API for writing eBPF programs in code, with labels resolved at build time.

Register operands are :class:`Reg` values (``R0`` .. ``R10``) and plain ``int`` operands
are immediates, so ``b.add64(R1, R2)`` and ``b.add64(R1, 2)`` cannot be confused.  Argument
orders follow the kernel's ``BPF_*`` macros (``stx(size, dst, src, off)``,
``st(size, dst, off, imm)``) so kernel examples translate line by line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyxdp.asm._builder_jmp import JumpsMixin
from pyxdp.asm._common import Pos, Program, make
from pyxdp.asm._regs import Operand, Reg, Target
from pyxdp.errors import AsmError
from pyxdp.isa import (
    LD_IMM64,
    AluOp,
    AtomicOp,
    CallSrc,
    Class,
    Instruction,
    JmpOp,
    Mode,
    PseudoSrc,
    Size,
    Source,
)

if TYPE_CHECKING:
    from pyxdp.spec import MapRef



_SIZES = {"b": Size.B, "h": Size.H, "w": Size.W, "dw": Size.DW,
          "u8": Size.B, "u16": Size.H, "u32": Size.W, "u64": Size.DW}
_ATOMICS = {a.name.lower(): a for a in AtomicOp}


def _size(size: Size | str) -> Size:
    if isinstance(size, Size):
        return size
    if isinstance(size, str) and size.lower() in _SIZES:
        return _SIZES[size.lower()]
    raise AsmError(f"expected a size (Size.B/H/W/DW or 'b', 'h', 'w', 'dw'), found {size!r}")


def _alu_method(op: AluOp, bits: int, signed: bool = False) -> Callable[..., Builder]:
    """Make ``add64``-style shorthands for :meth:`Builder.alu` (one per op and width)."""

    def method(self: Builder, dst: int, src: Operand) -> Builder:
        return self.alu(op, dst, src, bits=bits, signed=signed)

    prefix = "s" if signed else ""
    method.__name__ = f"{prefix}{op.name.lower()}{bits}"
    method.__doc__ = f"{bits}-bit {prefix}{op.name.lower()}: a ``Reg`` source or an immediate."
    return method


class Builder(JumpsMixin):
    """Accumulates instructions; ``build()`` resolves labels and returns the program.

    Every method returns the builder, so calls can be chained.  ``map_refs`` maps the index
    of each ``ld_map_fd``/``ld_map_value`` instruction to its map name.
    """

    def __init__(self) -> None:
        self._prog = Program(implicit_exit=False)
        self._refs: dict[int, tuple[str, PseudoSrc, int]] = {}

    def __len__(self) -> int:
        return len(self._prog.items)

    @property
    def map_refs(self) -> dict[int, str]:
        return {i: name for i, (name, _, _) in self._refs.items()}

    def spec_map_refs(self) -> dict[int, MapRef]:
        """The map references as :class:`pyxdp.spec.MapRef`, ready for a ``ProgramSpec``."""
        from pyxdp.spec import MapRef  # late: spec pulls in the map machinery

        return {i: MapRef(name, kind, off) for i, (name, kind, off) in self._refs.items()}

    def _pos(self, what: str) -> Pos:
        return Pos(None, None, f"instruction #{len(self)}: {what}")

    def _emit(self, what: str, opcode: int, dst: int = 0, src: int = 0, off: int = 0,
              imm: int = 0, target: Target | None = None) -> Builder:
        pos = self._pos(what)
        for name, reg in (("dst", dst), ("src", src)):
            if not 0 <= reg <= 10:
                raise pos.error(f"invalid {name} register r{reg} (registers are r0..r10)")
        label = None
        if isinstance(target, str):
            label = target
        elif target is not None:
            if opcode == Class.JMP32 | JmpOp.JA or (opcode == Class.JMP | JmpOp.CALL
                                                     and src == CallSrc.PSEUDO):
                imm = target
            else:
                off = target
        insn = make(pos, opcode, int(dst), int(src), int(off), int(imm))  # plain ints, not Reg
        self._prog.add(insn, label, pos)
        return self

    def insn(self, insn: Instruction) -> Builder:
        """Append a ready-made instruction as is."""
        self._prog.add(insn, None, self._pos("raw instruction"))
        return self

    def label(self, name: str) -> Builder:
        """Define ``name`` at the next instruction (a duplicate is an ``AsmError`` now)."""
        self._prog.label(name, self._pos(f"label {name!r}"))
        return self

    def build(self) -> list[Instruction]:
        """Resolve label targets; undefined labels and out-of-range jumps raise ``AsmError``."""
        return self._prog.resolve()

    # -- arithmetic ----------------------------------------------------------------------
    def alu(self, op: AluOp | str, dst: int, src: Operand, *, bits: int = 64,
            signed: bool = False) -> Builder:
        """Generic ALU: ``op`` by enum or name; a ``Reg`` source uses the register form."""
        alu_op = op if isinstance(op, AluOp) else AluOp.__members__.get(str(op).upper())
        if alu_op is None or alu_op in (AluOp.NEG, AluOp.END):
            raise AsmError(f"expected an ALU operation (add, sub, ..., mov, arsh), found {op!r}")
        if bits not in (32, 64):
            raise AsmError(f"ALU width must be 32 or 64, not {bits}")
        cls = Class.ALU64 if bits == 64 else Class.ALU
        off = 1 if signed else 0
        what = f"{alu_op.name.lower()}{bits}"
        if isinstance(src, Reg):
            return self._emit(what, cls | alu_op | Source.X, dst, src, off)
        return self._emit(what, cls | alu_op, dst, 0, off, src)

    add64 = _alu_method(AluOp.ADD, 64)
    add32 = _alu_method(AluOp.ADD, 32)
    sub64 = _alu_method(AluOp.SUB, 64)
    sub32 = _alu_method(AluOp.SUB, 32)
    mul64 = _alu_method(AluOp.MUL, 64)
    mul32 = _alu_method(AluOp.MUL, 32)
    div64 = _alu_method(AluOp.DIV, 64)
    div32 = _alu_method(AluOp.DIV, 32)
    sdiv64 = _alu_method(AluOp.DIV, 64, signed=True)
    sdiv32 = _alu_method(AluOp.DIV, 32, signed=True)
    mod64 = _alu_method(AluOp.MOD, 64)
    mod32 = _alu_method(AluOp.MOD, 32)
    smod64 = _alu_method(AluOp.MOD, 64, signed=True)
    smod32 = _alu_method(AluOp.MOD, 32, signed=True)
    or64 = _alu_method(AluOp.OR, 64)
    or32 = _alu_method(AluOp.OR, 32)
    and64 = _alu_method(AluOp.AND, 64)
    and32 = _alu_method(AluOp.AND, 32)
    xor64 = _alu_method(AluOp.XOR, 64)
    xor32 = _alu_method(AluOp.XOR, 32)
    lsh64 = _alu_method(AluOp.LSH, 64)
    lsh32 = _alu_method(AluOp.LSH, 32)
    rsh64 = _alu_method(AluOp.RSH, 64)
    rsh32 = _alu_method(AluOp.RSH, 32)
    arsh64 = _alu_method(AluOp.ARSH, 64)
    arsh32 = _alu_method(AluOp.ARSH, 32)
    mov64 = _alu_method(AluOp.MOV, 64)
    mov32 = _alu_method(AluOp.MOV, 32)

    def neg64(self, dst: int) -> Builder:
        return self._emit("neg64", Class.ALU64 | AluOp.NEG, dst)

    def neg32(self, dst: int) -> Builder:
        return self._emit("neg32", Class.ALU | AluOp.NEG, dst)

    def movsx64(self, dst: int, src: int, bits: int) -> Builder:
        """``dst = (s<bits>)src`` for bits 8, 16 or 32 (cpu v4)."""
        return self._emit(f"movsx{bits}64", Class.ALU64 | AluOp.MOV | Source.X, dst, src, bits)

    def movsx32(self, dst: int, src: int, bits: int) -> Builder:
        return self._emit(f"movsx{bits}32", Class.ALU | AluOp.MOV | Source.X, dst, src, bits)

    def be(self, dst: int, width: int) -> Builder:
        """Convert ``dst`` to big endian (``width`` 16, 32 or 64 bits)."""
        return self._emit(f"be{width}", Class.ALU | AluOp.END | Source.X, dst, imm=width)

    def le(self, dst: int, width: int) -> Builder:
        return self._emit(f"le{width}", Class.ALU | AluOp.END, dst, imm=width)

    def bswap(self, dst: int, width: int) -> Builder:
        """Unconditional byte swap (cpu v4)."""
        return self._emit(f"bswap{width}", Class.ALU64 | AluOp.END, dst, imm=width)

    # -- memory --------------------------------------------------------------------------
    def ldx(self, size: Size | str, dst: int, src: int, off: int = 0) -> Builder:
        return self._emit("ldx", Class.LDX | Mode.MEM | _size(size), dst, src, off)

    def ldxs(self, size: Size | str, dst: int, src: int, off: int = 0) -> Builder:
        """Sign-extending load (cpu v4); there is no 64-bit form."""
        if _size(size) == Size.DW:
            raise AsmError("there is no sign-extending 64-bit load")
        return self._emit("ldxs", Class.LDX | Mode.MEMSX | _size(size), dst, src, off)

    def st(self, size: Size | str, dst: int, off: int, imm: int) -> Builder:
        return self._emit("st", Class.ST | Mode.MEM | _size(size), dst, 0, off, imm)

    def stx(self, size: Size | str, dst: int, src: int, off: int = 0) -> Builder:
        return self._emit("stx", Class.STX | Mode.MEM | _size(size), dst, src, off)

    def atomic(self, size: Size | str, op: AtomicOp | str, dst: int, src: int,
               off: int = 0) -> Builder:
        """``lock`` operations: op ``add``, ``fetch_add``, ..., ``xchg``, ``cmpxchg``."""
        sz = _size(size)
        aop = op if isinstance(op, AtomicOp) else _ATOMICS.get(str(op).lower())
        if aop is None or sz not in (Size.W, Size.DW):
            raise AsmError(f"expected a 32/64-bit atomic operation, found {op!r} ({size!r})")
        return self._emit("atomic", Class.STX | Mode.ATOMIC | sz, dst, src, off, aop)

    def lddw(self, dst: int, imm: int) -> Builder:
        """Load a 64-bit constant (two slots)."""
        return self._emit("lddw", LD_IMM64, dst, 0, 0, imm)

    def ld_map_fd(self, dst: int, map_name: str) -> Builder:
        """``dst = &map``; the fd is patched at load time (recorded in ``map_refs``)."""
        self._refs[len(self)] = (map_name, PseudoSrc.MAP_FD, 0)
        return self._emit("ld_map_fd", LD_IMM64, dst, PseudoSrc.MAP_FD)

    def ld_map_value(self, dst: int, map_name: str, offset: int = 0) -> Builder:
        """``dst = &value0_of(map) + offset`` for array maps (recorded in ``map_refs``)."""
        self._refs[len(self)] = (map_name, PseudoSrc.MAP_VALUE, offset)
        return self._emit("ld_map_value", LD_IMM64, dst, PseudoSrc.MAP_VALUE, 0, offset << 32)

    def ld_abs(self, size: Size | str, imm: int) -> Builder:
        """Legacy packet load (socket filters): ``r0 = *(size *)skb[imm]``."""
        return self._emit("ld_abs", Class.LD | Mode.ABS | _size(size), 0, 0, 0, imm)

    def ld_ind(self, size: Size | str, src: int, imm: int = 0) -> Builder:
        return self._emit("ld_ind", Class.LD | Mode.IND | _size(size), 0, src, 0, imm)

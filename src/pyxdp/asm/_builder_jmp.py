"""Jumps, calls and exit for the :class:`~pyxdp.asm.Builder` (kept apart to keep modules short).

A target is a label name (resolved by ``build()``) or an ``int`` relative slot offset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from pyxdp.asm._regs import Operand, Reg, Target
from pyxdp.errors import AsmError
from pyxdp.isa import HELPERS, CallSrc, Class, JmpOp, Source


def _jump_method(op: JmpOp, bits: int) -> Callable[..., Any]:
    """Make ``jeq``/``jeq32``-style methods: compare ``dst`` with a ``Reg`` or immediate."""

    def method(self: JumpsMixin, dst: int, src: Operand, target: Target) -> Any:
        return self.jmp(op, dst, src, target, bits=bits)

    method.__name__ = f"{op.name.lower()}{'32' if bits == 32 else ''}"
    method.__doc__ = f"Jump to ``target`` if ``dst {op.name}`` ``src`` ({bits}-bit compare)."
    return method


class JumpsMixin:
    """Control flow methods; relies on ``Builder._emit``."""

    _emit: Callable[..., Any]

    def jmp(self, op: JmpOp | str, dst: int, src: Operand, target: Target, *,
            bits: int = 64) -> Self:
        """Generic conditional jump, ``op`` by enum or name (``"jeq"`` or ``"eq"``)."""
        name = op.name if isinstance(op, JmpOp) else str(op).upper()
        jop = JmpOp.__members__.get(name) or JmpOp.__members__.get("J" + name)
        if jop is None or jop in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT) or bits not in (32, 64):
            raise AsmError(f"expected a conditional jump (jeq, jgt, ...; 32/64 bits), found {op!r}")
        cls = Class.JMP if bits == 64 else Class.JMP32
        what = f"{jop.name.lower()}{'32' if bits == 32 else ''}"
        if isinstance(src, Reg):
            return self._emit(what, cls | jop | Source.X, dst, src, target=target)
        return self._emit(what, cls | jop, dst, 0, 0, src, target=target)

    jeq, jeq32 = _jump_method(JmpOp.JEQ, 64), _jump_method(JmpOp.JEQ, 32)
    jne, jne32 = _jump_method(JmpOp.JNE, 64), _jump_method(JmpOp.JNE, 32)
    jgt, jgt32 = _jump_method(JmpOp.JGT, 64), _jump_method(JmpOp.JGT, 32)
    jge, jge32 = _jump_method(JmpOp.JGE, 64), _jump_method(JmpOp.JGE, 32)
    jlt, jlt32 = _jump_method(JmpOp.JLT, 64), _jump_method(JmpOp.JLT, 32)
    jle, jle32 = _jump_method(JmpOp.JLE, 64), _jump_method(JmpOp.JLE, 32)
    jsgt, jsgt32 = _jump_method(JmpOp.JSGT, 64), _jump_method(JmpOp.JSGT, 32)
    jsge, jsge32 = _jump_method(JmpOp.JSGE, 64), _jump_method(JmpOp.JSGE, 32)
    jslt, jslt32 = _jump_method(JmpOp.JSLT, 64), _jump_method(JmpOp.JSLT, 32)
    jsle, jsle32 = _jump_method(JmpOp.JSLE, 64), _jump_method(JmpOp.JSLE, 32)
    jset, jset32 = _jump_method(JmpOp.JSET, 64), _jump_method(JmpOp.JSET, 32)

    def ja(self, target: Target) -> Self:
        """Unconditional jump with a 16-bit offset."""
        return self._emit("ja", Class.JMP | JmpOp.JA, target=target)

    def ja32(self, target: Target) -> Self:
        """Unconditional jump with a 32-bit offset in ``imm`` (``gotol``, cpu v4)."""
        return self._emit("ja32", Class.JMP32 | JmpOp.JA, target=target)

    def call(self, helper: str | int) -> Self:
        """Call a kernel helper by id or name (``"map_lookup_elem"`` or ``"bpf_..."``)."""
        if isinstance(helper, str):
            hid = HELPERS.get(helper.removeprefix("bpf_"))
            if hid is None:
                raise AsmError(f"unknown helper {helper!r}")
            helper = hid
        return self._emit("call", Class.JMP | JmpOp.CALL, imm=helper)

    def call_local(self, target: Target) -> Self:
        """bpf-to-bpf call of the subprogram at ``target`` (a label)."""
        return self._emit("call_local", Class.JMP | JmpOp.CALL, 0, CallSrc.PSEUDO, target=target)

    def call_kfunc(self, btf_id: int) -> Self:
        return self._emit("call_kfunc", Class.JMP | JmpOp.CALL, 0, CallSrc.KFUNC, imm=btf_id)

    def callx(self, reg: int) -> Self:
        """Indirect call through the address in ``reg`` (encoded in dst)."""
        return self._emit("callx", Class.JMP | JmpOp.CALL | Source.X, reg)

    def exit(self) -> Self:
        return self._emit("exit", Class.JMP | JmpOp.EXIT)

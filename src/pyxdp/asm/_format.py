"""Disassembler: one instruction to text in either syntax, and whole programs with labels.

The printed text is chosen so that it assembles back to the identical instruction (the
round-trip property the tests check), which is why invalid instructions are printed as a
raw ``.insn`` line (with the reason as a comment) instead of a misleading mnemonic.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyxdp.asm._common import uses_target
from pyxdp.errors import AsmError
from pyxdp.isa import (
    FETCH,
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
    decode,
)

_ALU_NAMES = {int(v): k for k, v in {
    "add": AluOp.ADD, "sub": AluOp.SUB, "mul": AluOp.MUL, "div": AluOp.DIV, "or": AluOp.OR,
    "and": AluOp.AND, "lsh": AluOp.LSH, "rsh": AluOp.RSH, "mod": AluOp.MOD, "xor": AluOp.XOR,
    "mov": AluOp.MOV, "arsh": AluOp.ARSH}.items()}
_ALU_SYMS = {AluOp.ADD: "+=", AluOp.SUB: "-=", AluOp.MUL: "*=", AluOp.DIV: "/=",
             AluOp.OR: "|=", AluOp.AND: "&=", AluOp.LSH: "<<=", AluOp.RSH: ">>=",
             AluOp.MOD: "%=", AluOp.XOR: "^=", AluOp.MOV: "=", AluOp.ARSH: "s>>="}
_JMP_NAMES = {JmpOp.JEQ: "jeq", JmpOp.JGT: "jgt", JmpOp.JGE: "jge", JmpOp.JSET: "jset",
              JmpOp.JNE: "jne", JmpOp.JSGT: "jsgt", JmpOp.JSGE: "jsge", JmpOp.JLT: "jlt",
              JmpOp.JLE: "jle", JmpOp.JSLT: "jslt", JmpOp.JSLE: "jsle"}
_JMP_SYMS = {JmpOp.JEQ: "==", JmpOp.JGT: ">", JmpOp.JGE: ">=", JmpOp.JSET: "&",
             JmpOp.JNE: "!=", JmpOp.JSGT: "s>", JmpOp.JSGE: "s>=", JmpOp.JLT: "<",
             JmpOp.JLE: "<=", JmpOp.JSLT: "s<", JmpOp.JSLE: "s<="}
_SIZE_LETTER = {Size.B: "b", Size.H: "h", Size.W: "w", Size.DW: "dw"}
_ATOMIC_NAMES = {AtomicOp.ADD: "add", AtomicOp.OR: "or", AtomicOp.AND: "and",
                 AtomicOp.XOR: "xor"}
_LOCK_SYMS = {AtomicOp.ADD: "+=", AtomicOp.OR: "|=", AtomicOp.AND: "&=", AtomicOp.XOR: "^="}
_SYNTAXES = ("llvm", "ubpf")


def _rel(value: int) -> str:
    return f"+{value}" if value >= 0 else str(value)


def _off(off: int) -> str:
    return f"+ {off}" if off >= 0 else f"- {-off}"


def _raw(insn: Instruction, comment: str) -> str:
    why = insn.problem()
    text = f".insn {insn.opcode:#04x}, {insn.dst}, {insn.src}, {insn.off}, {insn.imm}"
    return text + (f"  {comment} {why}" if why else "")


# -- uBPF ------------------------------------------------------------------------------------
def _ubpf_mem(reg: int, off: int) -> str:
    return f"[%r{reg}]" if off == 0 else f"[%r{reg}{_rel(off)}]"


def _ubpf(insn: Instruction, target: str | None) -> str:
    c, cls, d, s = insn.opcode, insn.opcode & 7, insn.dst, insn.src
    if cls in (Class.ALU, Class.ALU64):
        w = "32" if cls == Class.ALU else ""
        op = insn.op
        if op == AluOp.NEG:
            return f"neg{w} %r{d}"
        if op == AluOp.END:
            kind = "bswap" if cls == Class.ALU64 else ("be" if c & 0x08 else "le")
            return f"{kind}{insn.imm} %r{d}"
        if op == AluOp.MOV and insn.off:
            return f"movsx{insn.off}{w or '64'} %r{d}, %r{s}"
        name = ("s" if insn.off == 1 else "") + _ALU_NAMES[op]
        arg = f"%r{s}" if c & 0x08 else str(insn.imm)
        return f"{name}{w} %r{d}, {arg}"
    if cls in (Class.JMP, Class.JMP32):
        op = insn.op
        tgt = target or _rel(insn.branch_offset)
        if op == JmpOp.EXIT:
            return "exit"
        if op == JmpOp.CALL:
            if c & 0x08:
                return f"call %r{d}"
            if s == CallSrc.PSEUDO:
                return f"call local {target or _rel(insn.imm)}"
            return f"call runtime {insn.imm}" if s == CallSrc.KFUNC else f"call {insn.imm}"
        if op == JmpOp.JA:
            return f"ja32 {tgt}" if cls == Class.JMP32 else f"ja {tgt}"
        w = "32" if cls == Class.JMP32 else ""
        arg = f"%r{s}" if c & 0x08 else str(insn.imm)
        return f"{_JMP_NAMES[JmpOp(op)]}{w} %r{d}, {arg}, {tgt}"
    sz = _SIZE_LETTER[insn.size]
    if c == LD_IMM64:
        extra = f", src={s}" if s else ""
        return f"lddw %r{d}, {insn.imm & (1 << 64) - 1:#x}{extra}"
    if cls == Class.LD:
        if insn.mode == Mode.ABS:
            return f"ldabs{sz} {insn.imm}"
        return f"ldind{sz} %r{s}, {insn.imm}"
    if cls == Class.LDX:
        return f"ldx{'s' if insn.mode == Mode.MEMSX else ''}{sz} %r{d}, {_ubpf_mem(s, insn.off)}"
    if cls == Class.ST:
        return f"st{sz} {_ubpf_mem(d, insn.off)}, {insn.imm}"
    if insn.mode == Mode.MEM:
        return f"stx{sz} {_ubpf_mem(d, insn.off)}, %r{s}"
    w = "32" if insn.size == Size.W else ""
    imm = insn.imm
    if imm in (AtomicOp.XCHG, AtomicOp.CMPXCHG):
        name = "xchg" if imm == AtomicOp.XCHG else "cmpxchg"
    else:
        name = ("fetch " if imm & FETCH else "") + _ATOMIC_NAMES[AtomicOp(imm & ~FETCH)]
    return f"lock {name}{w} {_ubpf_mem(d, insn.off)}, %r{s}"


# -- LLVM ------------------------------------------------------------------------------------
def _llvm_mem(insn: Instruction, reg: int, signed: bool = False) -> str:
    width = {Size.B: 8, Size.H: 16, Size.W: 32, Size.DW: 64}[insn.size]
    return f"*({'s' if signed else 'u'}{width} *)(r{reg} {_off(insn.off)})"


def _llvm_atomic(insn: Instruction) -> str:
    r = "w" if insn.size == Size.W else "r"
    d, s, imm = insn.dst, insn.src, insn.imm
    addr = f"r{d} {_off(insn.off)}"
    if imm == AtomicOp.XCHG:
        name = "xchg32_32" if r == "w" else "xchg_64"
        return f"{r}{s} = {name}({addr}, {r}{s})"
    if imm == AtomicOp.CMPXCHG:
        name = "cmpxchg32_32" if r == "w" else "cmpxchg_64"
        return f"{r}0 = {name}({addr}, {r}0, {r}{s})"
    base = _ATOMIC_NAMES[AtomicOp(imm & ~FETCH)]
    ptr = f"(u{32 if r == 'w' else 64} *)({addr})"
    if imm & FETCH:
        return f"{r}{s} = atomic_fetch_{base}({ptr}, {r}{s})"
    return f"lock *{ptr} {_LOCK_SYMS[AtomicOp(imm)]} {r}{s}"


def _llvm_lddw(insn: Instruction) -> str:
    d, s, imm = insn.dst, insn.src, insn.imm
    lo, hi = imm & 0xFFFFFFFF, (imm >> 32) & 0xFFFFFFFF
    if s == PseudoSrc.IMM64:
        return f"r{d} = {imm} ll"
    if s == PseudoSrc.MAP_FD and hi == 0:
        return f"r{d} = map[id:{lo}]"
    if s == PseudoSrc.MAP_VALUE:
        return f"r{d} = map[id:{lo}][0]+{hi}"
    return f"ld_pseudo r{d}, {s}, {imm}"


def _llvm(insn: Instruction, target: str | None) -> str:
    c, cls, d, s = insn.opcode, insn.opcode & 7, insn.dst, insn.src
    if cls in (Class.ALU, Class.ALU64):
        r = "w" if cls == Class.ALU else "r"
        op = insn.op
        if op == AluOp.NEG:
            return f"{r}{d} = -{r}{d}"
        if op == AluOp.END:
            kind = "bswap" if cls == Class.ALU64 else ("be" if c & 0x08 else "le")
            return f"r{d} = {kind}{insn.imm} r{d}"
        if op == AluOp.MOV and insn.off:
            return f"{r}{d} = (s{insn.off}){r}{s}"
        sym = _ALU_SYMS[AluOp(op)]
        if insn.off == 1:
            sym = "s" + sym
        arg = f"{r}{s}" if c & 0x08 else str(insn.imm)
        return f"{r}{d} {sym} {arg}"
    if cls in (Class.JMP, Class.JMP32):
        op = insn.op
        tgt = target or _rel(insn.branch_offset)
        if op == JmpOp.EXIT:
            return "exit"
        if op == JmpOp.CALL:
            if c & 0x08:
                return f"callx r{d}"
            if s == CallSrc.PSEUDO:
                return f"call {target}" if target else f"call pc{_rel(insn.imm)}"
            return f"call kfunc {insn.imm}" if s == CallSrc.KFUNC else f"call {insn.imm}"
        if op == JmpOp.JA:
            return f"gotol {tgt}" if cls == Class.JMP32 else f"goto {tgt}"
        r = "w" if cls == Class.JMP32 else "r"
        arg = f"{r}{s}" if c & 0x08 else str(insn.imm)
        return f"if {r}{d} {_JMP_SYMS[JmpOp(op)]} {arg} goto {tgt}"
    if c == LD_IMM64:
        return _llvm_lddw(insn)
    if cls == Class.LD:
        width = {Size.B: 8, Size.H: 16, Size.W: 32}[insn.size]
        if insn.mode == Mode.ABS:
            return f"r0 = *(u{width} *)skb[{insn.imm}]"
        return f"r0 = *(u{width} *)skb[r{s} {_off(insn.imm)}]"
    if cls == Class.LDX:
        return f"r{d} = {_llvm_mem(insn, s, insn.mode == Mode.MEMSX)}"
    if cls == Class.ST:
        return f"{_llvm_mem(insn, d)} = {insn.imm}"
    if insn.mode == Mode.MEM:
        return f"{_llvm_mem(insn, d)} = r{s}"
    return _llvm_atomic(insn)


def format_insn(insn: Instruction, syntax: str = "llvm", target: str | None = None) -> str:
    """One instruction as text; ``target`` replaces a branch's numeric offset by a label."""
    check_syntax(syntax, allow_auto=False)
    if insn.problem() is not None:
        return _raw(insn, "#" if syntax == "ubpf" else ";")
    return (_llvm if syntax == "llvm" else _ubpf)(insn, target if uses_target(insn) else None)


def check_syntax(syntax: str, allow_auto: bool = True) -> None:
    allowed = (*_SYNTAXES, "auto") if allow_auto else _SYNTAXES
    if syntax not in allowed:
        raise AsmError(f"unknown syntax {syntax!r} (expected one of {', '.join(allowed)})")


def disassemble(insns_or_bytes: Iterable[Instruction] | bytes | bytearray | memoryview,
                syntax: str = "llvm", labels: bool = False) -> str:
    """Disassemble a program to text, one instruction per line.

    Bytes are decoded leniently so that invalid instructions still show (as ``.insn``).
    With ``labels``, branch and local-call targets become ``L<slot>:`` labels; targets that
    do not land on an instruction boundary keep their numeric offset.
    """
    check_syntax(syntax, allow_auto=False)
    if isinstance(insns_or_bytes, bytes | bytearray | memoryview):
        insns = decode(insns_or_bytes, strict=False)
    else:
        insns = list(insns_or_bytes)
    starts, slot = [], 0
    for insn in insns:
        starts.append(slot)
        slot += insn.slots
    boundaries = {*starts, slot}
    names: dict[int, str] = {}
    if labels:
        for insn, at in zip(insns, starts):
            if uses_target(insn) and insn.problem() is None:
                dest = at + 1 + (insn.imm if insn.is_pseudo_call else insn.branch_offset)
                if dest in boundaries:
                    names[dest] = f"L{dest}"
    lines = []
    for insn, at in zip(insns, starts):
        if at in names:
            lines.append(f"{names[at]}:")
        dest = at + 1 + (insn.imm if insn.is_pseudo_call else insn.branch_offset)
        target = names.get(dest) if uses_target(insn) else None
        lines.append(format_insn(insn, syntax, target))
    if slot in names:
        lines.append(f"{names[slot]}:")
    return "\n".join(lines) + ("\n" if lines else "")

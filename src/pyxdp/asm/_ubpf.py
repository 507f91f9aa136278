"""Assembler for the uBPF / bpf_conformance syntax (FORMAT.md §1.3).

Operands are whitespace-separated with one trailing comma stripped, exactly as upstream, so
``add %r0,%r1`` (no space) is rejected with a clear message rather than guessed at.
Extensions (documented, printed by the disassembler so every valid instruction round-trips):
``ldabs{b,h,w} imm``, ``ldind{b,h,w} %src, imm``, ``lddw %rX, imm, src=N`` (pseudo sources),
``call local +N`` and ``.insn opcode, dst, src, off, imm``.
"""

from __future__ import annotations

import re

from pyxdp.asm._common import (
    INT16,
    INT32,
    LABEL_RE,
    Pos,
    Program,
    check_range,
    make,
    parse_int,
    wrap,
)
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
    Size,
    Source,
)

ALU_OPS: dict[str, AluOp] = {
    "add": AluOp.ADD, "sub": AluOp.SUB, "mul": AluOp.MUL, "div": AluOp.DIV, "or": AluOp.OR,
    "and": AluOp.AND, "lsh": AluOp.LSH, "rsh": AluOp.RSH, "mod": AluOp.MOD, "xor": AluOp.XOR,
    "mov": AluOp.MOV, "arsh": AluOp.ARSH, "sdiv": AluOp.DIV, "smod": AluOp.MOD,
}
JMP_OPS: dict[str, JmpOp] = {
    "jeq": JmpOp.JEQ, "jgt": JmpOp.JGT, "jge": JmpOp.JGE, "jset": JmpOp.JSET,
    "jne": JmpOp.JNE, "jsgt": JmpOp.JSGT, "jsge": JmpOp.JSGE, "jlt": JmpOp.JLT,
    "jle": JmpOp.JLE, "jslt": JmpOp.JSLT, "jsle": JmpOp.JSLE,
}
SIZES: dict[str, Size] = {"b": Size.B, "h": Size.H, "w": Size.W, "dw": Size.DW}
LOCK_OPS: dict[str, AtomicOp] = {
    "add": AtomicOp.ADD, "or": AtomicOp.OR, "and": AtomicOp.AND, "xor": AtomicOp.XOR,
    "xchg": AtomicOp.XCHG, "cmpxchg": AtomicOp.CMPXCHG,
}
_ALU_RE = re.compile(r"(add|sub|mul|div|sdiv|or|and|lsh|rsh|mod|smod|xor|mov|arsh|neg)(32|64)?\Z")
_JMP_RE = re.compile(r"(j[a-z]+?)(32)?\Z")
_MOVSX_RE = re.compile(r"movsx(8|16|32)(32|64)\Z")
_END_RE = re.compile(r"(le|be|bswap|swap)(16|32|64)\Z")
_MEM_RE = re.compile(r"(ldxs|ldx|stx|st|ldabs|ldind)(dw|b|h|w)\Z")
_MEMOP_RE = re.compile(r"\[(%r\w*)(?:([+-])(\w+))?\]\Z")
_REG_RE = re.compile(r"%r(\d+)\Z")
Tok = tuple[str, int]  # token text and 1-based column


def _tokens(line: str) -> list[Tok]:
    """Split on whitespace, keeping columns, and strip one trailing comma per token."""
    out = []
    for m in re.finditer(r"\S+", line):
        text = m.group()
        out.append((text[:-1] if text.endswith(",") else text, m.start() + 1))
    return out


class _Line:
    """One source line being assembled: its tokens and how to complain about them."""

    def __init__(self, pos: Pos, toks: list[Tok]) -> None:
        self.pos = pos
        self.mnem, col = toks[0]
        self.ops = toks[1:]
        self.col = col

    def err(self, message: str, tok: Tok | None = None) -> AsmError:
        return self.pos.at(tok[1] if tok else self.col).error(message)

    def want(self, n: int, form: str) -> None:
        if len(self.ops) != n:
            hint = ""
            if any("," in t[0] for t in self.ops):
                hint = " (separate operands with ', ': a comma and a space)"
            raise self.err(f"invalid number of operands for {self.mnem}: expected {n}"
                           f" ({self.mnem} {form}), found {len(self.ops)}{hint}")

    def reg(self, i: int) -> int:
        tok = self.ops[i]
        m = _REG_RE.match(tok[0])
        if not m:
            raise self.err(f"expected a register like %r1, found {tok[0]!r}", tok)
        n = int(m.group(1))
        if n > 15:
            raise self.err(f"invalid register {tok[0]!r} (registers are %r0..%r10)", tok)
        return n

    def is_reg(self, i: int) -> bool:
        return self.ops[i][0].startswith("%")

    def num(self, i: int, what: str = "an immediate") -> int:
        return parse_int(self.ops[i][0], self.pos.at(self.ops[i][1]), what)

    def imm32(self, i: int) -> int:
        """Hex is unsigned up to 0xffffffff and reinterpreted; decimal must fit int32."""
        tok = self.ops[i]
        value = self.num(i)
        where = self.pos.at(tok[1])
        if "0x" in tok[0].lower():
            if tok[0].startswith("-"):
                return check_range(value, INT32[0], 0, where, "immediate")
            return wrap(check_range(value, 0, 0xFFFFFFFF, where, "immediate"), 32)
        return check_range(value, *INT32, where, "immediate")

    def imm64(self, i: int) -> int:
        tok = self.ops[i]
        value = self.num(i)
        where = self.pos.at(tok[1])
        if "0x" in tok[0].lower() and not tok[0].startswith("-"):
            return wrap(check_range(value, 0, (1 << 64) - 1, where, "immediate"), 64)
        return check_range(value, -(1 << 63), (1 << 63) - 1, where, "immediate")

    def mem(self, i: int) -> tuple[int, int]:
        """``[%rN]``, ``[%rN+off]`` or ``[%rN-off]`` -> (register, signed 16-bit offset)."""
        tok = self.ops[i]
        m = _MEMOP_RE.match(tok[0])
        if not m:
            raise self.err(f"expected a memory operand like [%r1+8], found {tok[0]!r}", tok)
        reg = self.reg_text(m.group(1), tok)
        if m.group(3) is None:
            return reg, 0
        where = self.pos.at(tok[1])
        mag = parse_int(m.group(3), where, "an offset")
        if m.group(3).lower().startswith("0x"):
            check_range(mag, 0, 0xFFFF, where, "offset")
            off = -mag if m.group(2) == "-" else wrap(mag, 16)
        else:
            off = -mag if m.group(2) == "-" else mag
        return reg, check_range(off, *INT16, where, "offset")

    def reg_text(self, text: str, tok: Tok) -> int:
        m = _REG_RE.match(text)
        if not m or int(m.group(1)) > 15:
            raise self.err(f"expected a register like %r1, found {text!r}", tok)
        return int(m.group(1))

    def target(self, i: int, wide: bool = False) -> tuple[int, str | None]:
        """A jump target: ``+N``/``-N``/``N`` (relative slots) or a label name."""
        text, col = self.ops[i]
        if LABEL_RE.match(text):
            return 0, text
        lo, hi = ((-(1 << 31), (1 << 31) - 1) if wide else INT16)
        value = parse_int(text, self.pos.at(col), "a label or a +N/-N offset")
        return check_range(value, lo, hi, self.pos.at(col), "jump offset"), None


def _alu(ln: _Line, name: str, width: str | None) -> tuple[Instruction, str | None]:
    cls = Class.ALU if width == "32" else Class.ALU64
    if name == "neg":
        ln.want(1, "%dst")
        return make(ln.pos, cls | AluOp.NEG, ln.reg(0)), None
    ln.want(2, "%dst, %src|imm")
    op, off = ALU_OPS[name], 1 if name in ("sdiv", "smod") else 0
    if ln.is_reg(1):
        return make(ln.pos, cls | op | Source.X, ln.reg(0), ln.reg(1), off), None
    return make(ln.pos, cls | op, ln.reg(0), 0, off, ln.imm32(1)), None


def _memory(ln: _Line, kind: str, size: Size) -> tuple[Instruction, str | None]:
    if kind in ("ldx", "ldxs"):
        ln.want(2, "%dst, [%src+off]")
        src, off = ln.mem(1)
        mode = Mode.MEMSX if kind == "ldxs" else Mode.MEM
        if mode == Mode.MEMSX and size == Size.DW:
            raise ln.err("ldxsdw does not exist (a 64-bit load needs no sign extension)")
        return make(ln.pos, Class.LDX | mode | size, ln.reg(0), src, off), None
    if kind == "st":
        ln.want(2, "[%dst+off], imm")
        dst, off = ln.mem(0)
        return make(ln.pos, Class.ST | Mode.MEM | size, dst, 0, off, ln.imm32(1)), None
    if kind == "stx":
        ln.want(2, "[%dst+off], %src")
        dst, off = ln.mem(0)
        return make(ln.pos, Class.STX | Mode.MEM | size, dst, ln.reg(1), off), None
    if size == Size.DW:
        raise ln.err(f"{ln.mnem} does not exist (legacy packet loads are b, h or w)")
    if kind == "ldabs":
        ln.want(1, "imm")
        return make(ln.pos, Class.LD | Mode.ABS | size, imm=ln.imm32(0)), None
    ln.want(2, "%src, imm")
    return make(ln.pos, Class.LD | Mode.IND | size, 0, ln.reg(0), 0, ln.imm32(1)), None


def _lock(ln: _Line) -> tuple[Instruction, str | None]:
    words = [t[0] for t in ln.ops]
    fetch = bool(words) and words[0] == "fetch"
    rest = ln.ops[1:] if fetch else ln.ops
    if len(rest) != 3:
        raise ln.err("invalid number of operands for lock: expected"
                     " 'lock [fetch] op[32] [%dst+off], %src'")
    m = re.match(r"(add|or|and|xor|xchg|cmpxchg)(32)?\Z", rest[0][0])
    if not m or (fetch and m.group(1) in ("xchg", "cmpxchg")):
        raise ln.err(f"expected an atomic operation (add, or, and, xor, xchg, cmpxchg),"
                     f" found {rest[0][0]!r}", rest[0])
    sub = _Line(ln.pos, rest)
    dst, off = sub.mem(0)
    imm = LOCK_OPS[m.group(1)] | (FETCH if fetch else 0)
    size = Size.W if m.group(2) else Size.DW
    return make(ln.pos, Class.STX | Mode.ATOMIC | size, dst, sub.reg(1), off, imm), None


def _call(ln: _Line) -> tuple[Instruction, str | None]:
    call = Class.JMP | JmpOp.CALL
    if len(ln.ops) == 1 and ln.is_reg(0):
        return make(ln.pos, Class.JMP | JmpOp.CALL | Source.X, ln.reg(0)), None
    if len(ln.ops) == 2 and ln.ops[0][0] == "local":
        imm, label = ln.target(1, wide=True)
        return make(ln.pos, call, 0, CallSrc.PSEUDO, 0, imm), label
    if len(ln.ops) == 2 and ln.ops[0][0] == "runtime":
        return make(ln.pos, call, 0, CallSrc.KFUNC, 0, ln.imm32(1)), None
    ln.want(1, "N | %reg | local label | runtime N")
    return make(ln.pos, call, 0, 0, 0, ln.imm32(0)), None


def _jump(ln: _Line, name: str, width: str | None) -> tuple[Instruction, str | None]:
    if name == "ja":
        ln.want(1, "target")
        wide = width == "32"
        rel, label = ln.target(0, wide=wide)
        if wide:
            return make(ln.pos, Class.JMP32 | JmpOp.JA, imm=rel), label
        return make(ln.pos, Class.JMP | JmpOp.JA, off=rel), label
    if name not in JMP_OPS:
        raise ln.err(f"unknown mnemonic {ln.mnem!r}")
    ln.want(3, "%dst, %src|imm, target")
    cls = Class.JMP32 if width == "32" else Class.JMP
    rel, label = ln.target(2)
    if ln.is_reg(1):
        return make(ln.pos, cls | JMP_OPS[name] | Source.X, ln.reg(0), ln.reg(1), rel), label
    return make(ln.pos, cls | JMP_OPS[name], ln.reg(0), 0, rel, ln.imm32(1)), label


def _lddw(ln: _Line) -> tuple[Instruction, str | None]:
    if len(ln.ops) == 3 and ln.ops[2][0].startswith("src="):
        src = parse_int(ln.ops[2][0][4:], ln.pos.at(ln.ops[2][1]), "a pseudo source")
        check_range(src, 0, 15, ln.pos.at(ln.ops[2][1]), "pseudo source")
        return make(ln.pos, LD_IMM64, ln.reg(0), src, 0, ln.imm64(1)), None
    ln.want(2, "%dst, imm64")
    return make(ln.pos, LD_IMM64, ln.reg(0), 0, 0, ln.imm64(1)), None


def _raw(ln: _Line) -> tuple[Instruction, str | None]:
    ln.want(5, "opcode, dst, src, off, imm")
    code, dst, src, off = (ln.num(i) for i in range(4))
    return make(ln.pos, code, dst, src, off, ln.num(4)), None


def _insn(ln: _Line) -> tuple[Instruction, str | None]:
    mn = ln.mnem
    if mn == "exit":
        ln.want(0, "")
        return make(ln.pos, Class.JMP | JmpOp.EXIT), None
    if mn == "call":
        return _call(ln)
    if mn == "lock":
        return _lock(ln)
    if mn == "lddw":
        return _lddw(ln)
    if mn == ".insn":
        return _raw(ln)
    if m := _ALU_RE.match(mn):
        return _alu(ln, m.group(1), m.group(2))
    if m := _MOVSX_RE.match(mn):
        ln.want(2, "%dst, %src")
        cls = Class.ALU if m.group(2) == "32" else Class.ALU64
        return make(ln.pos, cls | AluOp.MOV | Source.X, ln.reg(0), ln.reg(1),
                    int(m.group(1))), None
    if m := _END_RE.match(mn):
        ln.want(1, "%dst")
        kind = m.group(1)
        code = (Class.ALU64 | AluOp.END if kind in ("bswap", "swap")
                else Class.ALU | AluOp.END | (Source.X if kind == "be" else Source.K))
        return make(ln.pos, code, ln.reg(0), imm=int(m.group(2))), None
    if m := _MEM_RE.match(mn):
        return _memory(ln, m.group(1), SIZES[m.group(2)])
    if m := _JMP_RE.match(mn):
        return _jump(ln, m.group(1), m.group(2))
    raise ln.err(f"unknown mnemonic {mn!r}")


def assemble_ubpf(text: str) -> list[Instruction]:
    """Assemble bpf_conformance / uBPF assembly text."""
    prog = Program()
    for lineno, raw in enumerate(text.splitlines(), 1):
        toks = _tokens(raw.split("#", 1)[0])
        pos = Pos(lineno, None, raw)
        if toks and toks[0][0].endswith(":"):
            name, col = toks[0]
            prog.label(name[:-1], pos.at(col))
            toks = toks[1:]
        if not toks:
            continue
        ln = _Line(pos, toks)
        insn, label = _insn(ln)
        prog.add(insn, label, pos.at(ln.col))
    return prog.resolve()

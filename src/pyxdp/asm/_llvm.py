"""Assembler for the LLVM / ``llvm-objdump -d`` / ``bpftool prog dump xlated`` syntax.

A small recursive-descent parser over the tokens of one line.  It accepts the spellings of
LLVM 14 and newer (``s/=``, ``(s8)``, ``bswap16``, ``gotol``, ``*(s8 *)``) and bpftool's
(``goto pc+N``, ``call bpf_map_lookup_elem#1``, ``map[id:5]``, ``atomic64_fetch_add``).
Extensions printed by the disassembler: ``call kfunc N``, ``ld_pseudo rD, SRC, IMM64`` and
``.insn opcode, dst, src, off, imm``.
"""

from __future__ import annotations

from pyxdp.asm._common import LABEL_RE, Pos, Program, check_range, make
from pyxdp.asm._lexer import Tok, clean_line, imm32, imm64, tokenize
from pyxdp.asm._llvm_assign import AssignParser
from pyxdp.isa import (
    HELPERS,
    LD_IMM64,
    AtomicOp,
    CallSrc,
    Class,
    Instruction,
    JmpOp,
    Mode,
    Size,
    Source,
)

_JMP = {"==": JmpOp.JEQ, "!=": JmpOp.JNE, ">": JmpOp.JGT, ">=": JmpOp.JGE, "<": JmpOp.JLT,
        "<=": JmpOp.JLE, "s>": JmpOp.JSGT, "s>=": JmpOp.JSGE, "s<": JmpOp.JSLT,
        "s<=": JmpOp.JSLE, "&": JmpOp.JSET}
_LOCK = {"+=": AtomicOp.ADD, "|=": AtomicOp.OR, "&=": AtomicOp.AND, "^=": AtomicOp.XOR}
Result = tuple[Instruction, str | None]


class Parser(AssignParser):
    """Parses the tokens of one line into one instruction (plus an optional label target)."""

    # -- statements ----------------------------------------------------------------------
    def statement(self) -> Result:
        tok = self.peek()
        word = tok.text if tok.kind == "id" else ""
        handler = {"exit": self.exit_, "goto": self.goto, "gotol": self.goto, "ja": self.goto,
                   "call": self.call, "callx": self.callx, "if": self.cond, "lock": self.lock,
                   "ld_pseudo": self.ld_pseudo, ".insn": self.raw}.get(word)
        if handler:
            self.next()
            result = handler(tok)
        elif tok.text == "*":
            result = self.store()
        elif self.is_reg():
            result = self.assign()
        else:
            raise self.fail("an instruction", tok)
        self.end()
        return result

    def exit_(self, tok: Tok) -> Result:
        return make(self.pos, Class.JMP | JmpOp.EXIT), None

    def goto(self, tok: Tok) -> Result:
        if tok.text == "gotol":
            rel, label = self.target(wide=True)
            return make(self.pos, Class.JMP32 | JmpOp.JA, imm=rel), label
        rel, label = self.target()
        return make(self.pos, Class.JMP | JmpOp.JA, off=rel), label

    def callx(self, tok: Tok) -> Result:
        return make(self.pos, Class.JMP | JmpOp.CALL | Source.X, self.reg("r")[0]), None

    def call(self, tok: Tok) -> Result:
        code = Class.JMP | JmpOp.CALL
        nxt = self.peek()
        if self.is_reg():
            return self.callx(tok)
        if nxt.text == "pc":
            rel, _ = self.target(wide=True)
            return make(self.pos, code, 0, CallSrc.PSEUDO, 0, rel), None
        if nxt.text == "kfunc":
            self.next()
            value, first = self.number("a BTF id")
            imm = imm32(value, self.pos.at(first.col))
            return make(self.pos, code, 0, CallSrc.KFUNC, 0, imm), None
        if nxt.kind == "id":
            self.next()
            if self.accept("#"):
                value, first = self.number("a helper id")
                known = HELPERS.get(nxt.text.removeprefix("bpf_"))
                helper = known if known is not None else imm32(value, self.pos.at(first.col))
                return make(self.pos, code, imm=helper), None
            known = HELPERS.get(nxt.text.removeprefix("bpf_"))
            if known is not None:
                return make(self.pos, code, imm=known), None
            return make(self.pos, code, 0, CallSrc.PSEUDO), nxt.text
        value, first = self.number("a helper id, helper name, pc+N or label")
        return make(self.pos, code, imm=imm32(value, self.pos.at(first.col))), None

    def cond(self, tok: Tok) -> Result:
        dst, width = self.reg()
        op_tok = self.next()
        if op_tok.text not in _JMP:
            raise self.fail("a comparison (==, !=, >, >=, <, <=, s>, s>=, s<, s<=, &)", op_tok)
        is_reg, value = self.operand(width)
        self.expect("goto")
        rel, label = self.target()
        cls = Class.JMP32 if width == "w" else Class.JMP
        if is_reg:
            return make(self.pos, cls | _JMP[op_tok.text] | Source.X, dst, value, rel), label
        return make(self.pos, cls | _JMP[op_tok.text], dst, 0, rel, value), label

    def lock(self, tok: Tok) -> Result:
        self.expect("*")
        _, size = self.ptr_type()
        dst, off = self.address()
        op_tok = self.next()
        if op_tok.text not in _LOCK:
            raise self.fail("an atomic operator (+=, |=, &=, ^=)", op_tok)
        src, _ = self.reg("w" if size == Size.W else "r")
        return self.atomic(size, dst, src, off, _LOCK[op_tok.text]), None

    def atomic(self, size: Size, dst: int, src: int, off: int, imm: int) -> Instruction:
        if size not in (Size.W, Size.DW):
            raise self.err("atomic operations are 32 or 64 bits wide")
        return make(self.pos, Class.STX | Mode.ATOMIC | size, dst, src, off, imm)

    def store(self) -> Result:
        self.expect("*")
        signed, size = self.ptr_type()
        if signed:
            raise self.err("stores take an unsigned pointer type (u8, u16, u32, u64)")
        dst, off = self.address()
        self.expect("=")
        if self.is_reg():
            return make(self.pos, Class.STX | Mode.MEM | size, dst, self.reg()[0], off), None
        value, first = self.number("a register or an immediate")
        imm = imm32(value, self.pos.at(first.col))
        return make(self.pos, Class.ST | Mode.MEM | size, dst, 0, off, imm), None

    def ld_pseudo(self, tok: Tok) -> Result:
        dst, _ = self.reg()
        self.expect(",")
        src, first = self.number("a pseudo source")
        check_range(src, 0, 15, self.pos.at(first.col), "pseudo source")
        self.expect(",")
        value, first = self.number("a 64-bit immediate")
        return make(self.pos, LD_IMM64, dst, src, 0, imm64(value, self.pos.at(first.col))), None

    def raw(self, tok: Tok) -> Result:
        fields = []
        for k in range(5):
            if k:
                self.expect(",")
            fields.append(self.number("a number")[0])
        return make(self.pos, *fields), None



def assemble_llvm(text: str) -> list[Instruction]:
    """Assemble LLVM / llvm-objdump / bpftool-style text (see the module docstring)."""
    prog = Program()
    for lineno, raw in enumerate(text.splitlines(), 1):
        pos = Pos(lineno, None, raw)
        cleaned = clean_line(raw)
        if cleaned is None:
            continue
        if cleaned.label is not None:
            if LABEL_RE.match(cleaned.label):
                prog.label(cleaned.label, pos.at(cleaned.col))
            elif not cleaned.body:
                raise pos.at(1).error(f"invalid label name {cleaned.label!r}")
        body = cleaned.body
        if not body or (body.startswith(".") and not body.startswith(".insn")):
            continue  # empty, or an assembler directive from `clang -S` output
        parser = Parser(tokenize(body, cleaned.col, pos), pos, cleaned.hint)
        insn, label = parser.statement()
        prog.add(insn, label, pos.at(cleaned.col))
    return prog.resolve()

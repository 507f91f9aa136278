"""The ``rX = ...`` / ``rX op= ...`` half of the LLVM-syntax parser: ALU, moves, byte swaps,
loads, ``LD_IMM64`` (constants and bpftool map references) and the function-style atomics.
"""

from __future__ import annotations

import re

from pyxdp.asm._common import INT16, check_range, make
from pyxdp.asm._lexer import imm32, imm64
from pyxdp.asm._llvm_base import ParserBase
from pyxdp.isa import (
    LD_IMM64,
    AluOp,
    AtomicOp,
    Class,
    Instruction,
    Mode,
    PseudoSrc,
    Size,
    Source,
)

ALU = {"+=": AluOp.ADD, "-=": AluOp.SUB, "*=": AluOp.MUL, "/=": AluOp.DIV, "|=": AluOp.OR,
       "&=": AluOp.AND, "<<=": AluOp.LSH, ">>=": AluOp.RSH, "%=": AluOp.MOD, "^=": AluOp.XOR,
       "s>>=": AluOp.ARSH, "s/=": AluOp.DIV, "s%=": AluOp.MOD}
_ATOMIC_FN = re.compile(
    r"atomic(?P<a64>64)?_(?:fetch_(?P<op>add|or|and|xor)|(?P<x>xchg|cmpxchg))\Z"
    r"|(?P<ll>xchg|cmpxchg)(?P<llw>_64|32_32)\Z")
_FETCH_OPS = {"add": AtomicOp.FETCH_ADD, "or": AtomicOp.FETCH_OR, "and": AtomicOp.FETCH_AND,
              "xor": AtomicOp.FETCH_XOR}
_END = re.compile(r"(be|le|bswap)(16|32|64)\Z")
Result = tuple[Instruction, str | None]


class AssignParser(ParserBase):
    """Parses statements that start with a destination register."""

    def assign(self) -> Result:
        dst, width = self.reg()
        op_tok = self.next()
        cls = Class.ALU if width == "w" else Class.ALU64
        if op_tok.text in ALU:
            off = 1 if op_tok.text in ("s/=", "s%=") else 0
            is_reg, value = self.operand(width)
            if is_reg:
                return make(self.pos, cls | ALU[op_tok.text] | Source.X, dst, value, off), None
            return make(self.pos, cls | ALU[op_tok.text], dst, 0, off, value), None
        if op_tok.text != "=":
            raise self.fail("an assignment operator (=, +=, -=, ...)", op_tok)
        return self.rhs(dst, width, cls), None

    def rhs(self, dst: int, width: str, cls: int) -> Instruction:
        tok = self.peek()
        if tok.text == "-" and self.is_reg(1):
            self.next()
            self.same_reg(dst, width)
            return make(self.pos, cls | AluOp.NEG, dst)
        if tok.text == "(" and self.peek(1).kind == "id":
            return self.movsx(dst, width, cls)
        if tok.text == "*":
            return self.load(dst)
        if tok.kind == "id" and (m := _END.match(tok.text)):
            self.next()
            self.same_reg(dst, None)
            if m.group(1) == "bswap":
                return make(self.pos, Class.ALU64 | AluOp.END, dst, imm=int(m.group(2)))
            code = Class.ALU | AluOp.END | (Source.X if m.group(1) == "be" else Source.K)
            return make(self.pos, code, dst, imm=int(m.group(2)))
        if tok.kind == "id" and tok.text == "map":
            return self.map_ref(dst)
        if tok.kind == "id" and (m := _ATOMIC_FN.match(tok.text)):
            self.next()
            return self.atomic_fn(dst, width, m)
        if self.is_reg():
            return make(self.pos, cls | AluOp.MOV | Source.X, dst, self.reg(width)[0])
        value, first = self.number("a register, an immediate or an expression")
        if self.accept("ll") or self.hint == LD_IMM64:
            return make(self.pos, LD_IMM64, dst, 0, 0, imm64(value, self.pos.at(first.col)))
        return make(self.pos, cls | AluOp.MOV, dst, 0, 0, imm32(value, self.pos.at(first.col)))

    def same_reg(self, dst: int, width: str | None) -> None:
        tok = self.peek()
        reg, _ = self.reg(width)
        if reg != dst:
            raise self.err(f"this instruction works in place: expected r{dst}, found"
                           f" {tok.text!r}", tok)

    def movsx(self, dst: int, width: str, cls: int) -> Instruction:
        self.expect("(")
        tok = self.next()
        m = re.match(r"s(8|16|32)\Z", tok.text)
        if not m:
            raise self.fail("a sign-extension type (s8, s16, s32)", tok)
        self.expect(")")
        src, _ = self.reg(width)
        return make(self.pos, cls | AluOp.MOV | Source.X, dst, src, int(m.group(1)))

    def load(self, dst: int) -> Instruction:
        self.expect("*")
        signed, size = self.ptr_type()
        if self.peek().text == "skb":
            return self.skb_load(dst, signed, size)
        src, off = self.address()
        mode = Mode.MEMSX if signed else Mode.MEM
        if signed and size == Size.DW:
            raise self.err("there is no sign-extending 64-bit load; use u64")
        return make(self.pos, Class.LDX | mode | size, dst, src, off)

    def skb_load(self, dst: int, signed: bool, size: Size) -> Instruction:
        """Legacy packet loads ``*(u8 *)skb[imm]`` and ``*(u8 *)skb[rX + imm]`` (dst is r0)."""
        self.next()
        if signed or size == Size.DW or dst != 0:
            raise self.err("legacy packet loads are r0 = *(u8|u16|u32 *)skb[...]")
        self.expect("[")
        src, mode, imm = 0, Mode.ABS, 0
        if self.is_reg():
            src, mode = self.reg("r")[0], Mode.IND
            if self.peek().text in ("+", "-"):
                imm, first = self.number("an offset")
                imm = imm32(imm, self.pos.at(first.col))
        else:
            value, first = self.number("an offset or a register")
            imm = imm32(value, self.pos.at(first.col))
        self.expect("]")
        return make(self.pos, Class.LD | mode | size, 0, src, 0, imm)

    def map_ref(self, dst: int) -> Instruction:
        """bpftool's ``map[id:N]`` (pseudo map fd) and ``map[id:N][0]+OFF`` (map value)."""
        self.next()
        self.expect("[")
        self.expect("id")
        self.expect(":")
        map_id, first = self.number("a map id")
        if not 0 <= map_id <= 0xFFFFFFFF:
            raise self.err("map id must fit in 32 bits", first)
        self.expect("]")
        if not self.accept("["):
            return make(self.pos, LD_IMM64, dst, PseudoSrc.MAP_FD, 0, imm64(map_id, self.pos))
        zero, first = self.number("value index 0")
        if zero != 0:
            raise self.err("only value index [0] exists in a map value reference", first)
        self.expect("]")
        off = 0
        if self.accept("+"):
            off, first = self.number("a value offset")
            if not 0 <= off <= 0xFFFFFFFF:
                raise self.err("map value offset must fit in 32 bits", first)
        return make(self.pos, LD_IMM64, dst, PseudoSrc.MAP_VALUE, 0,
                    imm64(map_id | off << 32, self.pos))

    def atomic_fn(self, dst: int, width: str, m: re.Match[str]) -> Instruction:
        """``atomic_fetch_add((u64 *)(r1 + 0), r2)``, ``xchg_64(r1 + 0, r2)``,
        ``cmpxchg_64(r1 + 0, r0, r2)`` and bpftool's ``atomic64_*`` spellings."""
        self.expect("(")
        size = None
        if self.peek().text == "(":
            _, size = self.ptr_type()
            base, off = self.address()
        else:
            base, _ = self.reg("r")
            off = 0
            if self.peek().text in ("+", "-"):
                off, first = self.number("an offset")
                check_range(off, *INT16, self.pos.at(first.col), "offset")
        if size is None:
            size = Size.W if (m.group("llw") == "32_32" or width == "w") else Size.DW
        if m.group("a64") or m.group("llw") == "_64":
            size = Size.DW
        r = "w" if size == Size.W else "r"
        kind = m.group("x") or m.group("ll")
        self.expect(",")
        if kind == "cmpxchg":
            self.same_reg(0, r)
            self.expect(",")
            if dst != 0:
                raise self.err("cmpxchg always returns into r0")
        src_tok = self.peek()
        src, _ = self.reg(r)
        self.expect(")")
        if kind != "cmpxchg" and src != dst:
            raise self.err(f"the result register must be the source register r{src}", src_tok)
        imm = (AtomicOp.CMPXCHG if kind == "cmpxchg" else AtomicOp.XCHG if kind
               else _FETCH_OPS[m.group("op")])
        if size not in (Size.W, Size.DW):
            raise self.err("atomic operations are 32 or 64 bits wide")
        return make(self.pos, Class.STX | Mode.ATOMIC | size, base, src, off, imm)

"""Token-level helpers and operand parsers shared by the LLVM-syntax statement parsers."""

from __future__ import annotations

import re

from pyxdp.asm._common import INT16, INT32, Pos, check_range, parse_int
from pyxdp.asm._lexer import Tok, imm32
from pyxdp.errors import AsmError
from pyxdp.isa import Size

_WIDTH = {"8": Size.B, "16": Size.H, "32": Size.W, "64": Size.DW}
_REG = re.compile(r"([rw])(\d+)\Z")
Target = tuple[int, str | None]


class ParserBase:
    """Cursor over the tokens of one line, with the operand grammar (registers, numbers,
    addresses, targets) that every statement form shares."""

    def __init__(self, toks: list[Tok], pos: Pos, hint: int | None) -> None:
        self.toks, self.i, self.pos, self.hint = toks, 0, pos, hint

    # -- token helpers -------------------------------------------------------------------
    def peek(self, k: int = 0) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Tok:
        tok = self.peek()
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def err(self, message: str, tok: Tok | None = None) -> AsmError:
        return self.pos.at((tok or self.peek()).col).error(message)

    def fail(self, what: str, tok: Tok | None = None) -> AsmError:
        tok = tok or self.peek()
        found = "end of line" if tok.kind == "end" else repr(tok.text)
        return self.err(f"expected {what}, found {found}", tok)

    def accept(self, text: str) -> bool:
        if self.peek().kind in ("op", "id") and self.peek().text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> Tok:
        if not self.accept(text):
            raise self.fail(repr(text))
        return self.toks[self.i - 1]

    def is_reg(self, k: int = 0) -> bool:
        return self.peek(k).kind == "id" and bool(_REG.match(self.peek(k).text))

    def reg(self, width: str | None = None) -> tuple[int, str]:
        """A register ``rN``/``wN``; ``width`` ("r" or "w") demands that spelling."""
        tok = self.next()
        m = _REG.match(tok.text) if tok.kind == "id" else None
        if not m:
            raise self.fail("a register", tok)
        n = int(m.group(2))
        if n > 15:
            raise self.err(f"invalid register {tok.text!r} (registers are r0..r10)", tok)
        if width and m.group(1) != width:
            raise self.err(f"expected a {'32' if width == 'w' else '64'}-bit register"
                           f" {width}{n}, found {tok.text!r}", tok)
        return n, m.group(1)

    def number(self, what: str = "a number") -> tuple[int, Tok]:
        """A signed integer: an optional ``+``/``-`` token, then a decimal or hex number."""
        first = self.peek()
        sign = self.next().text if first.text in ("+", "-") else ""
        tok = self.next()
        if tok.kind != "num":
            raise self.fail(what, tok)
        return parse_int(sign + tok.text, self.pos.at(first.col), what), first

    def end(self) -> None:
        if self.peek().kind != "end":
            raise self.fail("end of instruction")

    # -- operands ------------------------------------------------------------------------
    def target(self, wide: bool = False) -> Target:
        """``+N``, ``-N``, ``pc+N`` or a label."""
        tok = self.peek()
        if tok.kind == "id" and tok.text != "pc":
            self.next()
            return 0, tok.text
        self.accept("pc")
        if self.peek().text not in ("+", "-") and self.peek().kind != "num":
            raise self.fail("a jump target (+N, -N or a label)")
        value, first = self.number("a jump offset")
        lo, hi = INT32 if wide else INT16
        return check_range(value, lo, hi, self.pos.at(first.col), "jump offset"), None

    def address(self) -> tuple[int, int]:
        """``(rN + off)`` or ``(rN - off)`` or ``(rN)`` -> (register, offset)."""
        self.expect("(")
        reg, _ = self.reg("r")
        off = 0
        if self.peek().text in ("+", "-"):
            off, first = self.number("an offset")
            check_range(off, *INT16, self.pos.at(first.col), "offset")
        self.expect(")")
        return reg, off

    def ptr_type(self) -> tuple[bool, Size]:
        """``(u32 *)`` / ``(s8 *)`` after the opening ``*`` -> (signed, size)."""
        self.expect("(")
        tok = self.next()
        m = re.match(r"([us])(8|16|32|64)\Z", tok.text) if tok.kind == "id" else None
        if not m:
            raise self.fail("a pointer type like u32", tok)
        self.expect("*")
        self.expect(")")
        return m.group(1) == "s", _WIDTH[m.group(2)]

    def operand(self, width: str) -> tuple[bool, int]:
        """A register of ``width`` or a 32-bit immediate -> (is_register, value)."""
        if self.is_reg():
            return True, self.reg(width)[0]
        value, first = self.number("a register or an immediate")
        return False, imm32(value, self.pos.at(first.col))

"""Assembly errors name the line, the column, the line text and what was expected."""

from __future__ import annotations

import pytest

from pyxdp.asm import AsmError, assemble, detect_syntax, disassemble, format_insn
from pyxdp.isa import Instruction


@pytest.mark.parametrize(("text", "syntax", "line", "column", "message"), [
    ("mov %r0, 1\nadd %r0,%r1\n", "ubpf", 2, 1, "separate operands with ', '"),
    ("ldxw %r0,", "ubpf", 1, 1, "invalid number of operands for ldxw: expected 2"),
    ("ldxw %r0, %r1", "ubpf", 1, 11, "expected a memory operand like [%r1+8], found '%r1'"),
    ("exit\n  ldxw %r0, [%r1+x]", "ubpf", 2, 13, "expected an offset, found 'x'"),
    ("jeq %r1, 5, nowhere", "ubpf", 1, 1, "undefined label 'nowhere'"),
    ("a:\na:\nexit", "ubpf", 2, 1, "duplicate label 'a'"),
    ("mov32 %r0", "ubpf", 1, 1, "invalid number of operands for mov32"),
    ("r0 = foo", "llvm", 1, 6, "expected a register, an immediate or an expression, found 'foo'"),
    ("r0 += w1", "llvm", 1, 7, "expected a 64-bit register r1, found 'w1'"),
    ("if r1 >> r2 goto +1", "llvm", 1, 8, "expected a register or an immediate, found '>'"),
    ("if r1 = r2 goto +1", "llvm", 1, 7, "expected a comparison"),
    ("if r1 > r2 goto", "llvm", 1, 16, "expected a jump target (+N, -N or a label), found end of line"),
    ("r0 = *(u32 *)(r1 + 4) extra", "llvm", 1, 23, "expected end of instruction, found 'extra'"),
    ("r1 = -r2", "llvm", 1, 7, "works in place: expected r1"),
    ("r0 = 0x100000000", "llvm", 1, 6, "immediate 4294967296 is out of range"),
    ("r3 = atomic_fetch_add((u64 *)(r1 + 0), r2)", "llvm", 1, 40, "must be the source register"),
    ("r0 = @", "llvm", 1, 6, "unexpected character '@'"),
    ("goto +40000", "llvm", 1, 6, "jump offset 40000 is out of range"),
])
def test_error_positions(text: str, syntax: str, line: int, column: int, message: str) -> None:
    with pytest.raises(AsmError) as info:
        assemble(text, syntax)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    assert message in err.reason
    assert err.text == text.splitlines()[line - 1]
    assert f"line {line}, column {column}" in str(err)


def test_far_label_is_out_of_range() -> None:
    text = "ja far\n" + "mov %r0, 0\n" * 33000 + "far:\nexit\n"
    with pytest.raises(AsmError, match="out of range") as info:
        assemble(text, "ubpf")
    assert info.value.line == 1
    assert assemble(text.replace("ja far", "ja32 far"), "ubpf")[0].imm == 33000


def test_bad_syntax_name_and_type() -> None:
    with pytest.raises(AsmError, match="unknown syntax"):
        assemble("exit", "gas")
    with pytest.raises(AsmError, match="must be a str"):
        assemble(b"exit")  # type: ignore[arg-type]
    with pytest.raises(AsmError, match="unknown syntax"):
        disassemble([], "gas")


def test_detect_syntax() -> None:
    assert detect_syntax("# c\nexit\nmov %r0, 1") == "ubpf"
    assert detect_syntax("ldxw %r0, [%r1]") == "ubpf"
    assert detect_syntax("lock fetch add [r1], r2") == "ubpf"
    assert detect_syntax("r0 = 1") == "llvm"
    assert detect_syntax("exit") == "llvm"
    assert detect_syntax("  5:\t95 00 00 00 00 00 00 00\texit\n  6: if r1 > 2 goto +1") == "llvm"


def test_invalid_instruction_prints_as_raw_with_reason() -> None:
    insn = Instruction(0x07, 0, 0, 1, 1)
    assert format_insn(insn, "ubpf") == (
        ".insn 0x07, 0, 0, 1, 1  # unused field off must be zero (is 1)")
    assert format_insn(insn, "llvm").startswith(".insn 0x07, 0, 0, 1, 1  ; unused field off")
    assert assemble(format_insn(insn, "llvm")) == [insn]


def test_empty_text_is_an_empty_program() -> None:
    assert assemble("") == [] and assemble("# nothing\n\n", "ubpf") == []
    assert disassemble([]) == ""

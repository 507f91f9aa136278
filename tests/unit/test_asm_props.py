"""Property tests: random valid instructions round-trip through text in both syntaxes, and
random or mutated input only ever raises the documented error types."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxdp.asm import assemble, disassemble
from pyxdp.errors import AsmError, DecodeError
from pyxdp.isa import LD_IMM64, Instruction, decode, encode

_UNUSED = re.compile(r"unused field (\w+) must be zero")
SYNTAXES = ("ubpf", "llvm")
_SETTINGS = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])


def _repair(insn: Instruction) -> Instruction:
    """Zero the fields ``problem()`` says are unused, so most random draws become valid."""
    for _ in range(4):
        why = insn.problem()
        m = _UNUSED.match(why or "")
        if not m:
            break
        fields = {"opcode": insn.opcode, "dst": insn.dst, "src": insn.src, "off": insn.off,
                  "imm": insn.imm, m.group(1): 0}
        insn = Instruction(**fields)
    return insn


_regs = st.integers(0, 10)
_offs = st.one_of(st.sampled_from([0, 1, 8, 16, 32, -1]), st.integers(-(1 << 15), (1 << 15) - 1))
_imms = st.one_of(st.sampled_from([0, 1, 16, 32, 64, -1, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1,
                                   0xE1, 0xF1, -(1 << 31)]),
                  st.integers(-(1 << 31), (1 << 31) - 1))
# Opcodes that have at least one valid form (found by trying the field shapes they need).
VALID_OPCODES = sorted({
    code for code in range(256) if code != LD_IMM64
    for dst, src, off, imm in ((0, 0, 0, 0), (0, 0, 0, 16), (0, 0, 0, 0xE1), (0, 1, 0, 0))
    if Instruction(code, dst, src, off, imm).problem() is None})
_lddw = st.builds(Instruction, st.just(LD_IMM64), _regs, st.integers(0, 6), st.just(0),
                  st.integers(-(1 << 63), (1 << 63) - 1))
valid_insns = st.sampled_from([*VALID_OPCODES, LD_IMM64]).flatmap(
    lambda code: _lddw if code == LD_IMM64 else st.builds(
        Instruction, st.just(code), _regs, _regs, _offs, _imms)
).map(_repair).filter(lambda i: i.problem() is None)
any_insns = st.builds(Instruction, st.integers(0, 255), st.integers(0, 15), st.integers(0, 15),
                      _offs, _imms).filter(lambda i: i.opcode != LD_IMM64)


@_SETTINGS
@given(st.lists(valid_insns, min_size=1, max_size=12))
def test_valid_programs_round_trip_through_both_syntaxes(insns: list[Instruction]) -> None:
    assert decode(encode(insns)) == insns
    for syntax in SYNTAXES:
        for labels in (False, True):
            text = disassemble(insns, syntax, labels=labels)
            assert assemble(text, syntax) == insns, text
        assert assemble(disassemble(insns, syntax)) == insns  # auto-detect agrees


@_SETTINGS
@given(st.lists(any_insns, min_size=1, max_size=8))
def test_invalid_instructions_round_trip_as_raw_insn(insns: list[Instruction]) -> None:
    for syntax in SYNTAXES:
        assert assemble(disassemble(insns, syntax), syntax) == insns


@_SETTINGS
@given(st.lists(valid_insns, min_size=1, max_size=10))
def test_text_round_trip_is_stable(insns: list[Instruction]) -> None:
    for syntax in SYNTAXES:
        text = disassemble(insns, syntax, labels=True)
        once = assemble(text)
        twice = assemble(disassemble(once, syntax))
        assert encode(twice) == encode(once)
        # bytes go through the lenient decoder and come out as the same text
        assert disassemble(encode(once), syntax, labels=True) == text


_alphabet = st.sampled_from([*"r%w0123456789abcdefxls=+-*()[],:#;/<>&|^ \t\n", "goto", "if",
                             "lock", "exit", "call", "ll", "map", "\x00", "é"])


@_SETTINGS
@given(st.lists(_alphabet, max_size=40).map("".join), st.sampled_from(("auto", *SYNTAXES)))
def test_random_text_only_raises_asm_error(text: str, syntax: str) -> None:
    try:
        insns = assemble(text, syntax)
    except AsmError as exc:
        assert exc.reason
        return
    assert all(isinstance(i, Instruction) for i in insns)


@_SETTINGS
@given(st.lists(valid_insns, min_size=1, max_size=6), st.sampled_from(SYNTAXES),
       st.data())
def test_mutated_programs_only_raise_asm_error(insns: list[Instruction], syntax: str,
                                               data: st.DataObject) -> None:
    text = list(disassemble(insns, syntax, labels=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(("insert", "delete", "replace")))
        char = data.draw(_alphabet)
        if action == "insert":
            text[i:i] = [char]
        elif i < len(text):
            text[i:i + 1] = [] if action == "delete" else [char]
    try:
        assemble("".join(text), data.draw(st.sampled_from(("auto", *SYNTAXES))))
    except AsmError as exc:
        assert exc.line is None or exc.line >= 1


@_SETTINGS
@given(st.binary(max_size=64), st.booleans())
def test_random_bytes_only_raise_decode_error(data: bytes, strict: bool) -> None:
    try:
        insns = decode(data, strict=strict)
    except DecodeError as exc:
        assert exc.reason and (exc.offset is None or 0 <= exc.offset <= len(data))
        return
    assert all(i.problem() is None for i in insns) or not strict
    for syntax in SYNTAXES:  # whatever decodes also disassembles and re-assembles
        assert assemble(disassemble(insns, syntax), syntax) == insns


@pytest.mark.parametrize("syntax", ["ubpf", "llvm", "auto"])
def test_pathological_inputs_are_asm_errors(syntax: str) -> None:
    for text in ["(" * 5000, "r0 = " + "-" * 3000 + "1", "[" * 100, "if", "lock", "*", "call",
                 "r0 = map[id:99999999999]", "r0 = 1" + "0" * 500, "jeq %r1, 1"]:
        with pytest.raises(AsmError):
            assemble(text, syntax)

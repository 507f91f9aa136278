"""The .data parser (FORMAT.md §1.1) and the assembler against every bpf_conformance file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxdp.asm import assemble, assemble_bytes
from pyxdp.asm.conformance import Case, CaseError, load_case, parse_case, program_bytes
from pyxdp.errors import AsmError, DecodeError
from pyxdp.isa import decode, encode

CONF = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "bpf_conformance"
_MISSING = pytest.mark.skipif(not CONF.is_dir(), reason=f"conformance suite not found at {CONF}")


def _files(sub: str, pattern: str) -> list[Path]:
    return sorted((CONF / sub).glob(pattern)) if CONF.is_dir() else []


# -- parse rules --------------------------------------------------------------------------
def test_sections_comments_and_last_result_wins() -> None:
    text = ("# header\n-- asm\nmov %r0, 1 # set\n\nexit\n-- mem\n00 01\nff\n"
            "-- result\n0x5\n0x11\n")
    case = parse_case(text, "t")
    assert case == Case(name="t", asm="mov %r0, 1 \nexit\n", raw=None, mem=b"\x00\x01\xff",
                        result=0x11, error=None)


def test_decimal_result_and_crlf() -> None:
    case = parse_case("-- asm\r\nexit\r\n-- result\r\n17\r\n")
    assert case.result == 17
    assert case.asm == "exit\n"


def test_negative_decimal_result_wraps_like_stoull() -> None:
    assert parse_case("-- asm\nexit\n-- result\n-1\n").result == (1 << 64) - 1


def test_raw_u64_tokens_replace_asm() -> None:
    case = parse_case("-- asm\nmov %r0, 9\n-- raw\n0x00000001000000b7 149\n-- result\n0x1\n")
    assert case.raw == bytes.fromhex("b700000001000000") + (149).to_bytes(8, "little")
    assert program_bytes(case) == case.raw


def test_raw_eight_byte_lines() -> None:
    case = parse_case("-- raw\n07 00 01 00 01 00 00 00\n95 00 00 00 00 00 00 00\n-- error\n")
    assert case.raw == bytes.fromhex("0700010001000000" "9500000000000000")
    assert case.error == ""  # present but empty: still "must be rejected"


def test_directive_substring_order() -> None:
    # "-- asm @ x" is ASM; "-- error pattern" is ERROR; "-- c" and "no register offset" drop
    case = parse_case("-- asm @ x\nexit\n-- c\nint x;\n-- no register offset\nfoo\n"
                      "-- error pattern\nboom\n")
    assert case.asm == "exit\n"
    assert case.error == "boom"


def test_hash_cut_applies_inside_c_blocks_and_lines_of_spaces_are_kept() -> None:
    case = parse_case("-- asm\nexit\n   \n-- result\n0x0\n")
    assert case.asm == "exit\n   \n"


def test_unknown_directive_is_case_error() -> None:
    with pytest.raises(CaseError, match="unknown directive"):
        parse_case("-- asm\nexit\n-- no jit\n")
    assert issubclass(CaseError, ValueError)


def test_bad_numbers_are_case_errors() -> None:
    with pytest.raises(CaseError, match="result"):
        parse_case("-- result\nzz\n")
    with pytest.raises(CaseError, match="mem"):
        parse_case("-- mem\nqq\n")


def test_program_bytes_assembles_and_rejects_empty() -> None:
    assert program_bytes(parse_case("-- asm\nmov %r0, 1\nexit\n")) == bytes.fromhex(
        "b700000001000000" "9500000000000000")
    with pytest.raises(CaseError, match="no program"):
        program_bytes(parse_case("-- result\n0x0\n", "e"))


# -- the real suite -----------------------------------------------------------------------
@_MISSING
@pytest.mark.parametrize("path", _files("tests", "*.data"), ids=lambda p: p.stem)
def test_every_case_assembles(path: Path) -> None:
    case = load_case(path)
    assert case.result is not None
    code = program_bytes(case)
    assert len(code) % 8 == 0 and code
    insns = decode(code)  # every conformance program is valid eBPF
    assert encode(insns) == code
    if case.asm is not None:
        assert assemble(case.asm) == assemble(case.asm, "ubpf")  # auto-detects ubpf


@_MISSING
def test_suite_is_complete() -> None:
    assert len(_files("tests", "*.data")) >= 200  # 313 upstream minus the rfc9669_ ones
    assert len(_files("negative", "unused-*.data")) == 45


@_MISSING
def test_lddw_asm_and_raw_agree() -> None:
    case = load_case(CONF / "tests" / "lddw.data")
    assert case.asm and case.raw
    assert assemble_bytes(case.asm, "ubpf") == case.raw
    assert case.raw[:8] == bytes.fromhex("1800000088776655")


_NEGATIVE_REASONS = {
    "invalid_imm32_dec_range": "out of range",
    "invalid_imm32_hex_range": "out of range",
    "invalid_label": "undefined label 'NOT_A_LABEL'",
    "invalid_lock": "number of operands for lock",
    "invalid_lock2": "number of operands for lock",
    "invalid_mnemonic": "unknown mnemonic 'ldxq'",
    "invalid_offset": "expected a memory operand",
    "invalid_offset_range": "offset 65536 is out of range",
    "invalid_operand_count": "number of operands for lddw",
    "invalid_register": "invalid register '%r50'",
    "invalid_unknown_directive": "unknown directive",
    "empty": "no program",
    "empty_instructions": "no program",
}


@_MISSING
@pytest.mark.parametrize(
    "path", [*_files("negative", "invalid_*.data"), *_files("negative", "empty*.data")],
    ids=lambda p: p.stem)
def test_negative_files_raise_clear_errors(path: Path) -> None:
    with pytest.raises((AsmError, CaseError)) as info:
        program_bytes(load_case(path))
    assert _NEGATIVE_REASONS[path.stem] in str(info.value)
    if isinstance(info.value, AsmError):
        assert info.value.line == 1 and info.value.text


@_MISSING
@pytest.mark.parametrize("path", _files("negative", "unused-*.data"), ids=lambda p: p.stem)
def test_unused_field_files_are_rejected_by_strict_decode(path: Path) -> None:
    case = load_case(path)
    assert case.raw is not None and len(case.raw) == 16 and case.error == ""
    field = {"offset": "off"}.get(path.stem.rsplit("-", 1)[1], path.stem.rsplit("-", 1)[1])
    with pytest.raises(DecodeError) as info:
        decode(case.raw)
    assert info.value.offset == 0
    assert field in info.value.reason
    assert len(decode(case.raw, strict=False)) == 2

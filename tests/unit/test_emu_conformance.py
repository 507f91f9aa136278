"""Every bpf_conformance case runs through the assembler and the emulator's translator."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxdp import emu
from pyxdp.asm.conformance import load_case, program_bytes
from pyxdp.errors import EmulatorError
from pyxdp.isa import decode

ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "bpf_conformance"
CASES = sorted((ROOT / "tests").glob("*.data")) if ROOT.is_dir() else []
needs_suite = pytest.mark.skipif(not ROOT.is_dir(), reason=f"conformance suite not at {ROOT}")


def _run(path: Path) -> tuple[int, int | None]:
    case = load_case(path)
    prog = emu.load(decode(program_bytes(case)))
    return prog.run(case.mem if case.mem else None), case.result


@needs_suite
def test_suite_is_complete() -> None:
    assert len(CASES) >= 200


@needs_suite
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_conformance_case(path: Path) -> None:
    got, expected = _run(path)
    assert expected is not None
    assert got == expected, f"r0={got:#x}, expected {expected:#x}"


@needs_suite
def test_interpreter_agrees_on_the_suite() -> None:
    """The slow reference interpreter gives the same r0 where it models everything."""
    checked = 0
    for path in CASES:
        case = load_case(path)
        insns = decode(program_bytes(case))
        if any(i.is_helper_call or i.opcode == 0x8D for i in insns):
            continue
        assert emu.interpret(insns, case.mem or None) == case.result, path.name
        checked += 1
    assert checked > 150


@needs_suite
def test_negative_error_case_is_rejected_as_invalid() -> None:
    case = load_case(ROOT / "negative" / "error.data")
    assert case.error == "Invalid"
    with pytest.raises(EmulatorError, match="Invalid"):
        emu.load(decode(program_bytes(case))).run(case.mem or None)


@needs_suite
def test_wrong_high_bits_expectation_is_not_met() -> None:
    got, expected = _run(ROOT / "negative" / "incorrect_return_value_high_bits.data")
    assert got != expected
    assert got == 0x8877665544332211

"""The bpf_conformance plugin protocol, driven with in-memory streams."""

from __future__ import annotations

import io

from pyxdp.asm import assemble
from pyxdp.emu.plugin import conformance_plugin
from pyxdp.isa import encode


def _call(program_text: str, argv: list[str]) -> tuple[int, str, str]:
    raw = encode(assemble(program_text, syntax="ubpf"))
    stdin = io.StringIO(" ".join(f"{b:02x}" for b in raw))
    out, err = io.StringIO(), io.StringIO()
    rc = conformance_plugin(argv, stdin, out, err)
    return rc, out.getvalue(), err.getvalue()


def test_prints_r0_in_hex() -> None:
    rc, out, err = _call("mov %r0, -1\nexit", [])
    assert (rc, out.strip(), err) == (0, "ffffffffffffffff", "")


def test_memory_argument_is_r1_with_length_in_r2() -> None:
    rc, out, _ = _call("ldxh %r0, [%r1+1]\nadd %r0, %r2\nexit", ["aa  bb  11  "])
    assert rc == 0
    assert int(out, 16) == 0x11BB + 3


def test_invalid_program_exits_nonzero_with_message() -> None:
    rc, out, err = _call("or %r0, %r10\nexit", [])
    assert rc != 0 and out == ""
    assert "Invalid" in err


def test_runtime_fault_is_an_error() -> None:
    rc, _, err = _call("ldxw %r0, [%r1+100]\nexit", ["00 01 02 03"])
    assert rc == 1
    assert "pc=0" in err


def test_garbage_input_is_reported() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert conformance_plugin([], io.StringIO("zz"), out, err) == 1
    assert err.getvalue()

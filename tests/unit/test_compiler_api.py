"""Public API: compile_function on an imported module, typed control-plane codecs, CLI."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pyxdp.cli import main
from pyxdp.compiler import compile_function
from pyxdp.compiler.lang import LpmKey4, Struct, u8

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_compile_function_of_imported_module() -> None:
    spec = importlib.util.spec_from_file_location("ex_count", EXAMPLES / "count_protocols.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["ex_count"] = mod
    try:
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        obj = compile_function(mod.count_protocols)
    finally:
        del sys.modules["ex_count"]
    assert obj.program().name == "count_protocols"
    assert obj.spec.maps["counts"].max_entries == 256
    assert obj.program().line_info


def test_struct_codec_round_trip() -> None:
    codec = LpmKey4.codec()
    raw = codec.encode(LpmKey4(prefixlen=24, addr=0xC0000200))
    assert raw == (24).to_bytes(4, "little") + bytes([192, 0, 2, 0])
    assert codec.decode(raw) == LpmKey4(prefixlen=24, addr=0xC0000200)


@pytest.mark.parametrize(("bits", "hdrlen", "message"), [
    ({"lo": ("arr", 0, 4)}, None, "'arr' is not an integer field"),
    ({"lo": ("nope", 0, 4)}, None, "'nope' is not an integer field"),
    ({"lo": ("x", 6, 4)}, None, "do not fit the 8-bit field 'x'"),
    ({"lo": ("x", 0, 0)}, None, "do not fit"),
    ({}, ("nope", 4, 0), "'nope' is not an integer or bit field"),
    ({}, ("arr", 4, 0), "'arr' is not an integer or bit field"),
])
def test_struct_bits_and_hdrlen_are_checked_at_declaration(bits, hdrlen, message) -> None:
    # these used to pass silently and crash the compiler later (KeyError / AttributeError)
    with pytest.raises(TypeError, match=message):
        type("H", (Struct,), {"__annotations__": {"arr": u8[2], "x": u8}, "_packed_": True,
                              "_bits_": bits, "_hdrlen_": hdrlen})


def test_struct_bit_and_hdrlen_fields_accepted() -> None:
    h = type("H", (Struct,), {"__annotations__": {"arr": u8[2], "x": u8}, "_packed_": True,
                              "_bits_": {"lo": ("x", 0, 4), "hi": ("x", 4, 4)},
                              "_hdrlen_": ("lo", 4, 0)})
    assert set(h.__pyxdp_type__.bits) == {"lo", "hi"}


def test_cli_compile(tmp_path, capsys) -> None:
    out = tmp_path / "prog.o"
    assert main(["compile", str(EXAMPLES / "swap_macs.py"), "-o", str(out),
                 "--dump-after", "typed"]) == 0
    assert out.read_bytes()[:4] == b"\x7fELF"
    assert "after typed" in capsys.readouterr().out

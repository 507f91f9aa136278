"""Every full-program example in docs/dialect.md compiles (so the reference cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyxdp.compiler import compile_module

DOC = Path(__file__).resolve().parents[2] / "docs" / "dialect.md"
MARK = re.compile(r"<!-- program -->\n```python\n(.*?)```", re.S)


def programs() -> list[str]:
    return MARK.findall(DOC.read_text())


def test_the_reference_has_program_examples() -> None:
    assert len(programs()) >= 4
    text = DOC.read_text()
    from pyxdp.compiler import lang
    # every builtin, map kind and decorator the dialect exports has its entry on the page
    for name in (*lang.BUILTINS, "subprog", "SpinLock", "PerfEventArray", "RingBuf",
                 "buff_len", "load_bytes", "store_bytes", "xdp.frags", "@tc"):
        assert f"{name}" in text, name


@pytest.mark.parametrize("source", programs(), ids=lambda s: re.search(
    r"def (\w+)\(ctx\)", s).group(1) if re.search(r"def (\w+)\(ctx\)", s) else "block")
def test_every_program_block_compiles(source: str) -> None:
    obj = compile_module(source)
    names = re.findall(r"^@(?:xdp|tc)\S*\ndef (\w+)", source, re.M)
    assert names
    for n in names:
        assert obj.program(n).instructions


@pytest.mark.parametrize("stmt", ["csum_replace2(1, 2, 3)", "bswap32(7)", "u16(5)"])
def test_discarded_pure_results_are_refused_as_the_page_says(tmp_path, stmt: str) -> None:
    from pyxdp.errors import CompileError

    assert "discarded" in DOC.read_text()
    src = tmp_path / "bad.py"
    src.write_text("from pyxdp.compiler.lang import *\n\n@xdp\ndef p(ctx):\n"
                   f"    {stmt}\n    return XDP_PASS\n")
    with pytest.raises(CompileError, match="discarded"):
        compile_module(str(src))

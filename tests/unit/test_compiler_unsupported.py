"""The table of constructs outside the dialect: each one is rejected with a CompileError
that names the file, the line and what to write instead (never silently compiled)."""

from __future__ import annotations

import pytest

from pyxdp.compiler import UNSUPPORTED, compile_module
from pyxdp.errors import CompileError

TEMPLATE = '''from pyxdp.compiler.lang import *

COUNT = 0


def twice(x):
    return x * 2


def recurse(n):
    return recurse(n)


@xdp
def prog(ctx):
    {stmt}
    return XDP_PASS
'''
STMT_LINE = 16


@pytest.mark.parametrize(("construct", "stmt", "fragment"), UNSUPPORTED,
                         ids=[row[0] for row in UNSUPPORTED])
def test_unsupported_construct(construct: str, stmt: str, fragment: str) -> None:
    with pytest.raises(CompileError) as ei:
        compile_module(TEMPLATE.format(stmt=stmt))
    err = ei.value
    assert fragment in str(err), (construct, str(err))
    assert err.filename == "<source>" and err.line is not None and err.column is not None
    if construct != "recursion":
        assert STMT_LINE <= err.line <= STMT_LINE + stmt.count("\n"), (construct, err.line)
    assert err.hint or "hint" not in str(err)


def test_table_is_documented() -> None:
    from pathlib import Path

    import pyxdp.compiler
    readme = (Path(pyxdp.compiler.__file__).parent / "README.md").read_text()
    for construct, _stmt, _fragment in UNSUPPORTED:
        assert f"| {construct} |" in readme, construct


def test_every_message_has_a_hint() -> None:
    missing = []
    for construct, stmt, _ in UNSUPPORTED:
        try:
            compile_module(TEMPLATE.format(stmt=stmt))
        except CompileError as e:
            if not e.hint and construct not in ("unknown attribute", "assigning a module constant"):
                missing.append(construct)
    assert not missing, missing

"""docs/dialect.md cannot drift from the compiler: every ```python program block compiles,
and the claims the page makes about byte order and refusals hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyxdp.compiler import compile_module
from pyxdp.errors import CompileError

DOC = Path(__file__).resolve().parents[2] / "docs" / "dialect.md"


def programs() -> list[str]:
    return re.findall(r"```python program\n(.*?)```", DOC.read_text(), re.S)


def test_the_page_has_programs() -> None:
    assert len(programs()) >= 4


@pytest.mark.parametrize("i", range(len(programs())))
def test_every_program_block_compiles(tmp_path, i: int) -> None:
    src = tmp_path / f"doc_prog_{i}.py"
    src.write_text(programs()[i])
    obj = compile_module(str(src))
    assert obj.spec.programs and all(p.instructions for p in obj.spec.programs.values())


def test_the_icmp_example_answers_with_a_valid_checksum() -> None:
    """The page's echo responder, run in the emulator on a real echo request: XDP_TX and a
    reply whose ICMP checksum verifies (the byte-order rule the page states)."""
    import tempfile

    from pyxdp.emu import EmuBackend
    from pyxdp.packets.build import checksum, ethernet, icmp, ipv4

    src = next(p for p in programs() if "def icmp_echo" in p)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "echo.py"
        path.write_text(src)
        obj = compile_module(str(path))
    req = ethernet(ipv4(icmp(b"ping" * 8, type=8, ident=7, seq=1), src="198.18.0.1",
                        dst="198.18.0.2", proto=1))
    with EmuBackend().load(obj.spec) as coll:
        r = coll.programs["icmp_echo"].run_packet(req)
    assert r.verdict.name == "TX"
    reply = r.packet
    ihl = (reply[14] & 0xF) * 4
    body = reply[14 + ihl:]
    assert body[0] == 0 and checksum(body) == 0


@pytest.mark.parametrize("stmt", ["csum_replace2(1, 2, 3)", "bswap32(7)", "u16(5)"])
def test_discarded_pure_results_are_refused_as_the_page_says(tmp_path, stmt: str) -> None:
    src = tmp_path / "bad.py"
    src.write_text("from pyxdp.compiler.lang import *\n\n@xdp\ndef p(ctx):\n"
                   f"    {stmt}\n    return XDP_PASS\n")
    with pytest.raises(CompileError, match="discarded"):
        compile_module(str(src))

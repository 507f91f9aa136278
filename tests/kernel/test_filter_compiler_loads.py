"""The kernel verifier accepts the filter's load shape: a packet load at a variable offset
made of two unbounded parts (``base + i`` in a loop), bounded by the compiler."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxdp.compiler import compile_module
from pyxdp.kernel import KernelBackend

pytestmark = pytest.mark.kernel

SUM_OFFSET = (Path(__file__).resolve().parents[1] / "data" / "py" / "sum_offset.py").read_text()


def test_variable_sum_offset_load_passes_the_verifier() -> None:
    with KernelBackend().load(compile_module(SUM_OFFSET).spec) as coll:
        prog = coll.programs["prog"]
        coll.maps["table"][0] = (14).to_bytes(4, "little")
        assert prog.test_run(bytes(range(64))).retval == 2
        coll.maps["table"][0] = (62).to_bytes(4, "little")
        assert prog.test_run(bytes(range(64))).retval == 1

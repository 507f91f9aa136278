"""The ``emu_features`` benchmark's code paths run on tiny sizes (no timing asserted): every
side sampled once per round, a comparison per case, positive samples."""

from __future__ import annotations

import pytest

from pyxdp.bench import emu_features

pytestmark = pytest.mark.kernel


def test_emu_features_compares_every_case_with_test_run() -> None:
    r = emu_features.measure(rounds=5, runs=20, log=lambda _m: None)
    assert [c.name for c in r.comparisons] == [c.title for c in emu_features.CASES]
    for case in emu_features.CASES:
        for side in (f"emu {case.key}", f"kernel {case.key}"):
            samples = r.sides[side]["samples"]
            assert len(samples) == 5 and all(x > 0 for x in samples)

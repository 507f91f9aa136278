"""bench/chain_speed on tiny sizes: every side sampled each round, every promised row."""

from __future__ import annotations

import pytest

from pyxdp.bench import chain_speed

pytestmark = pytest.mark.kernel


def test_chain_speed_rows_and_sides() -> None:
    r = chain_speed.measure(repeat=1000, rounds=5, obj_path=chain_speed.STAGES_OBJ)
    for side in ("alone", "bare", "chain1", "chain2", "chain4", "capture_on", "capture_off"):
        samples = r.sides[side]["samples"]
        assert len(samples) == 5 and all(x > 0 for x in samples), side
    names = {c.name for c in r.comparisons}
    assert {f"chain of {k} vs the {k} programs alone" for k in (1, 2, 4)} <= names
    assert "capture on vs off (2 stages)" in names
    depth = next(t for t in r.tables if t.title == "Chain depth")
    assert [row[0] for row in depth.rows] == [1, 2, 4]

"""bench/faults on tiny sizes: every table row the results promise, each check a boolean
or count taken from the real bed (no timing asserted)."""

from __future__ import annotations

import pytest

from pyxdp.bench import faults

pytestmark = [pytest.mark.netns, pytest.mark.kernel]


def test_faults_tables_and_checks() -> None:
    r = faults.measure(kills=1, reloads=2, prefixes=2000, log=lambda _m: None)
    titles = [t.title for t in r.tables]
    assert titles[0].startswith("kill -9") and "Reloads under traffic" in titles
    (kill,) = r.extra["kills"]
    assert kill["attached"] and kill["judging"] and kill["reopened"]
    assert kill["state_names_running_program"] and kill["temp_files_left"] == 0
    rl = r.extra["reloads"]
    assert rl["generations"] == 3 and rl["judged_by_neither"] == 0
    assert r.extra["restart"]["equal"]
    assert [x["x_cap"] for x in r.extra["exhaustion"]] == [0.5, 5, 100]
    assert all(x["limit_held"] for x in r.extra["exhaustion"])

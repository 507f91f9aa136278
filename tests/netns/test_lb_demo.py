"""``pyxdp demo lb`` as root: the kernel bed's phases show what the demo claims."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.netns


def test_the_client_never_notices_a_planned_drain_and_a_crash_is_taken_out() -> None:
    from pyxdp.apps.lb import demo

    phases = {p["phase"]: p for p in demo.run_kernel_demo(seconds=1.0, log=lambda _: None)}
    three = phases["three reals"]["answered"]
    assert set(three) == {"b1", "b2", "b3"}, three
    for name in ("three reals", "b2 drained (maintenance)", "b2 drained, its service stopped",
                 "b2 back and restored"):
        p = phases[name]
        # a refused or reset connection would be one sent to a drained or stopped real: none;
        # a loaded CI machine may time out one request (2 s) for reasons of its own
        assert set(p["errors"]) <= {"timeout"} and p["failed"] <= 1, (name, p)
        assert sum(p["answered"].values()) > 0
    for name in ("b2 drained (maintenance)", "b2 drained, its service stopped"):
        assert "b2" not in phases[name]["answered"], phases[name]
    assert "b2" in phases["b2 back and restored"]["answered"]
    # an unannounced crash: only requests of the detection window (fall x interval,
    # 0.4 s of the 1 s phase) fail, fewer than b3's third of the phase; then none
    crash = phases["b3 crashed (health check)"]
    total = crash["failed"] + sum(crash["answered"].values())
    assert "b3" not in crash["answered"] and crash["failed"] < total / 3, crash
    back = phases["b3 back (health check)"]
    assert back["failed"] == 0 and "b3" in back["answered"], back

"""The switch benchmark's code paths run on tiny sizes and give a complete document (no
timing is asserted: every side sampled once per round, the comparisons present, every
sample positive)."""

from __future__ import annotations

import pytest

from pyxdp.bench import switch_speed

pytestmark = pytest.mark.netns


def test_switch_speed_samples_both_sides_every_round() -> None:
    r = switch_speed.SwitchSpeed(20_000, 0.5, 5, log=lambda _m: None,
                                 tcp_bytes=2 << 20).run()
    names = {c.name for c in r.comparisons}
    assert names == {"Mpps 64 B: pyxdp switch vs Linux bridge",
                     "Mpps 1500 B: pyxdp switch vs Linux bridge",
                     "TCP Gbit/s: pyxdp switch vs Linux bridge"}
    for key, side in r.sides.items():
        assert len(side["samples"]) == 5, key
        assert all(x > 0 for x in side["samples"]), key
    assert "program cost/pyxdp switch" in r.sides

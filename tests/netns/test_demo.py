"""The README's main job, as root: a TCP service, a spoofed SYN flood, the XDP filter."""

from __future__ import annotations

import pytest

from pyxdp.apps import demo

pytestmark = [pytest.mark.netns, pytest.mark.kernel]


def test_kernel_demo_shows_the_flood_hurting_and_the_filter_helping() -> None:
    lines: list[str] = []
    calm, flood, filtered = demo.run_kernel_demo(seconds=1.5, log=lines.append, live=False)
    assert [p.name for p in (calm, flood, filtered)] == ["calm", "flood, no filter",
                                                         "flood, XDP filter"]
    assert calm.client.answered > 0.8 * 500 * 1.5        # the paced client is served
    assert flood.flood_sent > 0 and filtered.flood_sent > 0
    assert flood.client.rps < 0.5 * calm.client.rps      # the SYN queue is full
    assert filtered.client.rps > 0.8 * calm.client.rps   # XDP keeps the flood out
    stats = filtered.stats
    assert stats["blocked-prefix"][0] > 10_000 and stats["syn-flood"][0] > 10_000
    assert stats["@passed"][0] >= filtered.client.answered
    demo.summary([calm, flood, filtered], log=lines.append)
    assert any("with the filter" in ln for ln in lines)

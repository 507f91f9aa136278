"""The README's main job, as root: a real service, a real flood, a real XDP filter."""

from __future__ import annotations

import pytest

from pyxdp import demo

pytestmark = [pytest.mark.netns, pytest.mark.kernel]


def test_kernel_demo_filters_the_flood_and_keeps_the_service_answering() -> None:
    lines: list[str] = []
    calm, flood, filtered = demo.run_kernel_demo(seconds=1.0, log=lines.append)
    assert [p.name for p in (calm, flood, filtered)] == ["calm", "flood, no filter",
                                                         "flood, XDP filter"]
    assert calm.answered > 100
    assert flood.flood_pps > 0 and filtered.flood_pps > 0
    # the filter dropped flood frames and let the client's requests through
    assert filtered.dropped > 10_000
    assert filtered.passed >= filtered.answered > 0
    assert any("answered/s" in ln for ln in lines)

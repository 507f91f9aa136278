"""The pytest plugin's fixtures: a ready bed, and an empty one, both cleaned up."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.netns
_seen: list[str] = []


def test_xdp_bed_fixture_gives_the_pair(xdp_bed) -> None:
    assert set(xdp_bed.interfaces) == {("gen", "veth0"), ("sink", "veth1")}
    _seen.append(xdp_bed.ns_name("gen"))
    assert os.path.exists(f"/run/netns/{_seen[-1]}")


def test_previous_bed_is_gone_and_empty_bed_builds(xdp_testbed) -> None:
    assert _seen and not os.path.exists(f"/run/netns/{_seen[-1]}")
    xdp_testbed.namespace("a")
    xdp_testbed.namespace("b")
    a, b = xdp_testbed.veth("a", "x0", "b", "x1", ipv6=("2001:db8:1::1/64", "2001:db8:1::2/64"))
    assert a.ip6 == "2001:db8:1::1" and b.ifindex > 0

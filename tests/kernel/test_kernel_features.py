"""Feature probes against the running kernel."""

from __future__ import annotations

import pytest

from pyxdp._uapi import MapType, ProgType
from pyxdp.errors import NotSupportedError
from pyxdp.isa import HELPERS
from pyxdp.kernel import features

pytestmark = pytest.mark.kernel


def test_core_features_present() -> None:
    assert features.has_prog_type(ProgType.XDP)
    assert features.has_prog_type(ProgType.SOCKET_FILTER)
    for mt in (MapType.HASH, MapType.ARRAY, MapType.LPM_TRIE, MapType.PERCPU_ARRAY,
               MapType.ARRAY_OF_MAPS, MapType.RINGBUF, MapType.DEVMAP, MapType.XSKMAP,
               MapType.SK_STORAGE, MapType.QUEUE):
        assert features.has_map_type(mt), mt
    assert features.has_helper(ProgType.XDP, HELPERS["map_lookup_elem"])
    assert features.has_helper(ProgType.XDP, HELPERS["redirect_map"])
    assert features.has_helper(ProgType.XDP, HELPERS["xdp_adjust_head"])


def test_absent_features() -> None:
    assert not features.has_helper(ProgType.XDP, 100_000)
    assert not features.has_helper(ProgType.XDP, HELPERS["skb_store_bytes"])  # skb-only
    assert not features.has_prog_type(ProgType.UNSPEC)
    assert not features.has_map_type(MapType.UNSPEC)


def test_cached_and_require() -> None:
    features.has_prog_type(ProgType.XDP)
    assert features.has_prog_type.cache_info().hits >= 1
    features.require_prog_type(ProgType.XDP)
    with pytest.raises(NotSupportedError, match="UNSPEC"):
        features.require_map_type(MapType.UNSPEC, "9.9")


def test_probe_all_report() -> None:
    report = features.probe_all()
    assert report["prog_types"]["XDP"] is True
    assert report["map_types"]["HASH"] is True
    assert "map_lookup_elem" in report["helpers"]["XDP"]
    assert "skb_store_bytes" not in report["helpers"]["XDP"]
    assert report["kernel"]

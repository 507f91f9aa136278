"""The fleet store against a real etcd (one member on loopback, started here): a policy of a
million prefixes is stored in chunks under etcd's request limit and read back intact, where
one value of that size is refused by etcd itself; a damaged chunk is detected."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from collections.abc import Iterator

import pytest

from pyxdp.fleet import store
from pyxdp.fleet.cluster import Cluster
from pyxdp.fleet.etcd import Client, EtcdError
from pyxdp.fleet.store import FleetError

pytestmark = pytest.mark.netns   # a service started by the test (etcd), as root in CI


@pytest.fixture
def etcd() -> Iterator[Client]:
    if shutil.which("etcd") is None:
        if os.environ.get("PYXDP_REQUIRE_KERNEL") == "1":
            pytest.fail("etcd is not installed (scripts/install.sh installs etcd-server)")
        pytest.skip("etcd is not installed")
    with Cluster(1) as cluster:
        yield cluster.client(timeout=30)


def million() -> str:
    """A rule of 1,000,000 distinct source prefixes: every /32 of 198.18.0.0/17 and
    /64s of 2001:db8::/32 for the rest (documentation ranges only)."""
    v4 = [f'"198.18.{(i >> 8) & 127}.{i & 255}/32"' for i in range(1 << 15)]
    v6 = [f'"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::/64"' for i in range(1_000_000 - len(v4))]
    return f'[[rule]]\nname = "million"\nsrc = [{", ".join(v4 + v6)}]\n'


def test_million_prefix_policy_is_chunked(etcd: Client) -> None:
    text = million()
    data = text.encode()
    assert len(data) > 16 << 20
    # one value of that size is over etcd's request limit: the reason for chunks
    with pytest.raises(EtcdError):
        etcd.put("too-big", data[: 4 << 20])
    assert store.validate("filter", text) == 1
    v = store.write_policy(etcd, "edge", text, check=False)
    assert v == 1
    chunks, _ = etcd.get(store.k_version("edge", v) + "chunk/", prefix=True)
    assert len(chunks) == math.ceil(len(data) / store.CHUNK) > 30
    assert max(len(kv.value) for kv in chunks) <= store.CHUNK
    p = store.read_policy(etcd, "edge", v)
    assert p.sha256 == hashlib.sha256(data).hexdigest() and p.text == text
    # a chunk changed behind the store's back is refused, never applied half-right
    last = sorted(chunks, key=lambda kv: kv.key)[-1]
    etcd.put(last.key, last.value[:-1] + b"X")
    with pytest.raises(FleetError, match="sha256"):
        store.read_policy(etcd, "edge", v)
    etcd.delete(last.key)
    with pytest.raises(FleetError, match="chunks in etcd"):
        store.read_policy(etcd, "edge", v)

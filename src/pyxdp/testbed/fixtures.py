"""pytest fixtures for XDP test beds (a ``pytest11`` plugin: installed with pyxdp).

* ``xdp_bed`` — a :func:`pyxdp.testbed.pair` (namespaces ``gen``/``sink``, ``veth0`` <->
  ``veth1``, IPv4 and IPv6 addresses from the test ranges), deleted after the test whatever
  happens; skips with a reason when not root, unless ``PYXDP_REQUIRE_KERNEL=1``.
* ``xdp_testbed`` — an empty :class:`pyxdp.testbed.Testbed` to build your own topology in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pyxdp.testbed import Testbed, pair


def _need_root() -> None:
    if os.geteuid() == 0:
        return
    msg = "XDP test beds need root (network namespaces and veth)"
    if os.environ.get("PYXDP_REQUIRE_KERNEL") == "1":
        pytest.fail(f"PYXDP_REQUIRE_KERNEL=1 but {msg}")
    pytest.skip(msg)


@pytest.fixture
def xdp_bed() -> Iterator[Testbed]:
    _need_root()
    with pair() as tb:
        yield tb


@pytest.fixture
def xdp_testbed() -> Iterator[Testbed]:
    _need_root()
    with Testbed() as tb:
        yield tb

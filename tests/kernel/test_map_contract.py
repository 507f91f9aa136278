"""One contract, two backends: every test here runs against an emulated map
(``pyxdp.emu.create_map``) and a kernel map (``pyxdp.kernel.Map.create``).

Where the backends legitimately differ the tests assert the common denominator:

* errors: the kernel raises :class:`~pyxdp.errors.BpfError` (an ``OSError``), the emulator
  :class:`~pyxdp.emu.EmuMapError` (a ``MapError``); both are ``PyxdpError`` and both carry
  ``.errno`` (EEXIST, ENOENT, E2BIG), which is what the tests check.  A missing key is a
  plain ``KeyError`` in both.
* LRU eviction: the kernel's LRU is approximate (per-CPU free lists), the emulator's exact,
  so only "inserting past capacity never fails, the newest key survives and the size stays
  within ``max_entries``" is asserted.
* per-CPU maps: the emulator is created with the kernel's possible-CPU count so the value
  lists have the same length.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pyxdp import emu, kernel
from pyxdp.errors import PyxdpError
from pyxdp.kernel import possible_cpus
from pyxdp.maps import MapSpec, UpdateFlags
from pyxdp.spec import MapType

pytestmark = pytest.mark.kernel

Factory = Callable[..., Any]


class Flow(ctypes.Structure):
    _fields_ = [("saddr", ctypes.c_uint32), ("dport", ctypes.c_uint16),
                ("proto", ctypes.c_uint8), ("pad", ctypes.c_uint8)]


@pytest.fixture(params=["emu", "kernel"])
def make(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """``make(spec, key_type=None, value_type=None)`` on one backend; closes kernel maps."""
    created: list[Any] = []

    def factory(spec: MapSpec, key_type: Any = None, value_type: Any = None) -> Any:
        if request.param == "emu":
            m = emu.create_map(spec, key_type, value_type, ncpus=possible_cpus())
        else:
            m = kernel.Map.create(spec, key_type, value_type)
        created.append(m)
        return m
    try:
        yield factory
    finally:
        for m in created:
            close = getattr(m, "close", None)
            if close is not None:
                close()


def _errno_of(excinfo: pytest.ExceptionInfo[BaseException]) -> int:
    assert isinstance(excinfo.value, PyxdpError)
    return excinfo.value.errno  # type: ignore[attr-defined,no-any-return]


# -- hash ------------------------------------------------------------------------------------

def test_hash_basics(make: Factory) -> None:
    m = make(MapSpec("h", MapType.HASH, 4, 8, 8))
    assert len(m) == 0 and list(m) == []
    m[1] = 10
    m.update(2, 20)
    assert m[1] == 10 and m.lookup(2) == 20
    assert 1 in m and 3 not in m
    assert m.get(3) is None and m.get(3, "x") == "x"
    with pytest.raises(KeyError):
        m[3]
    with pytest.raises(KeyError):
        del m[3]
    assert sorted(m) == [1, 2] and sorted(m.keys()) == [1, 2]
    assert sorted(m.items()) == [(1, 10), (2, 20)]
    assert sorted(m.values()) == [10, 20]
    assert len(m) == 2
    del m[1]
    assert list(m.items()) == [(2, 20)]


def test_update_flags(make: Factory) -> None:
    m = make(MapSpec("h", MapType.HASH, 4, 8, 8))
    m.update(1, 1, UpdateFlags.NOEXIST)
    with pytest.raises(PyxdpError) as ei:
        m.update(1, 2, UpdateFlags.NOEXIST)
    assert _errno_of(ei) == errno.EEXIST
    with pytest.raises(PyxdpError) as ei:
        m.update(2, 2, UpdateFlags.EXIST)
    assert _errno_of(ei) == errno.ENOENT
    m.update(1, 3, UpdateFlags.EXIST)
    assert m[1] == 3 and len(m) == 1


def test_full_hash_map(make: Factory) -> None:
    m = make(MapSpec("h", MapType.HASH, 4, 8, 2))
    m[1] = 1
    m[2] = 2
    with pytest.raises(PyxdpError) as ei:
        m[3] = 3
    assert _errno_of(ei) == errno.E2BIG
    m[2] = 22        # replacing an existing key of a full map is fine
    assert dict(m.items()) == {1: 1, 2: 22}


def test_batch_operations_and_clear(make: Factory) -> None:
    m = make(MapSpec("h", MapType.HASH, 4, 8, 16))
    assert m.update_batch([(k, k * k) for k in range(5)]) == 5
    assert m.lookup_batch([0, 3, 9]) == [0, 9, None]
    assert m.delete_batch([1, 2, 42]) == 2
    assert sorted(m.items()) == [(0, 0), (3, 9), (4, 16)]
    m.clear()
    assert len(m) == 0 and list(m.items()) == []


def test_lru_hash_evicts_instead_of_failing(make: Factory) -> None:
    m = make(MapSpec("lru", MapType.LRU_HASH, 4, 8, 8))
    for k in range(32):
        m[k] = k
    assert 0 < len(m) <= 8
    assert m[31] == 31
    assert all(m[k] == k for k in m)


def test_percpu_hash(make: Factory) -> None:
    n = possible_cpus()
    m = make(MapSpec("ph", MapType.PERCPU_HASH, 4, 8, 4))
    m[7] = list(range(1, n + 1))
    assert m[7] == list(range(1, n + 1))
    assert list(m.items()) == [(7, list(range(1, n + 1)))]
    with pytest.raises(KeyError):
        m[8]
    del m[7]
    assert len(m) == 0


# -- arrays ----------------------------------------------------------------------------------

def test_array(make: Factory) -> None:
    m = make(MapSpec("a", MapType.ARRAY, 4, 8, 4))
    assert len(m) == 4 and list(m) == [0, 1, 2, 3]
    assert list(m.values()) == [0, 0, 0, 0]
    m[2] = 0xDEAD
    assert m[2] == 0xDEAD
    with pytest.raises(KeyError):
        m[4]
    with pytest.raises(PyxdpError) as ei:
        m.update(4, 1)
    assert _errno_of(ei) == errno.E2BIG
    with pytest.raises(PyxdpError) as ei:
        m.update(1, 1, UpdateFlags.NOEXIST)
    assert _errno_of(ei) == errno.EEXIST
    m.clear()                 # arrays are zeroed, not emptied
    assert list(m.items()) == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_percpu_array(make: Factory) -> None:
    n = possible_cpus()
    m = make(MapSpec("pa", MapType.PERCPU_ARRAY, 4, 8, 2))
    assert m[0] == [0] * n
    m[1] = [5] * n
    assert m[1] == [5] * n
    assert m.lookup_batch([0, 1]) == [[0] * n, [5] * n]
    m.clear()
    assert m[1] == [0] * n


# -- LPM trie --------------------------------------------------------------------------------

def test_lpm_trie_with_ipaddress_keys(make: Factory) -> None:
    m = make(MapSpec("lpm", MapType.LPM_TRIE, 8, 4, 16, flags=1))
    m["198.18.0.0/15"] = 1
    m[ipaddress.ip_network("10.0.0.0/8")] = 2
    m["10.1.0.0/16"] = 3
    assert m["198.18.0.0/15"] == 1
    assert m[ipaddress.ip_network("10.1.0.0/16")] == 3
    assert len(m) == 3
    assert sorted(m.items()) == sorted([
        ((15, ipaddress.IPv4Address("198.18.0.0")), 1),
        ((8, ipaddress.IPv4Address("10.0.0.0")), 2),
        ((16, ipaddress.IPv4Address("10.1.0.0")), 3)])
    # a lookup of a /32 finds the longest matching prefix
    assert m["10.1.2.3/32"] == 3 and m["10.200.0.1/32"] == 2 and m["198.19.255.1/32"] == 1
    with pytest.raises(KeyError):
        m["192.0.2.1/32"]
    del m["10.1.0.0/16"]
    assert m["10.1.2.3/32"] == 2


# -- typed keys and values ------------------------------------------------------------------

def test_typed_keys_and_values(make: Factory) -> None:
    m = make(MapSpec("flows", MapType.HASH, 8, 16, 8), key_type=Flow, value_type="<QQ")
    m[Flow(0x0A000001, 53, 17, 0)] = (3, 300)
    key, value = next(iter(m.items()))
    assert (key.saddr, key.dport, key.proto) == (0x0A000001, 53, 17)
    assert value == (3, 300)
    assert m[Flow(0x0A000001, 53, 17, 0)] == (3, 300)
    b = make(MapSpec("raw", MapType.HASH, 3, 2, 4), key_type=bytes, value_type=bytes)
    b[b"abc"] = b"\x01\x02"
    assert b[b"abc"] == b"\x01\x02" and list(b) == [b"abc"]
    i = make(MapSpec("ints", MapType.HASH, 2, 4, 4), key_type=int, value_type=int)
    i[0xBEEF] = 0xFFFFFFFF
    assert i[0xBEEF] == 0xFFFFFFFF


def test_bad_values_are_rejected_before_reaching_the_backend(make: Factory) -> None:
    m = make(MapSpec("h", MapType.HASH, 4, 8, 4))
    with pytest.raises(PyxdpError):
        m[1] = b"too long for eight"
    with pytest.raises(PyxdpError):
        m[-1 << 40] = 1
    assert len(m) == 0

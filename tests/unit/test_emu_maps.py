"""Emulated maps speak the shared MapBase protocol with kernel semantics."""

from __future__ import annotations

import errno

import pytest

from pyxdp import emu
from pyxdp.errors import MapError
from pyxdp.maps import MapBase, MapSpec, UpdateFlags
from pyxdp.spec import MapType


def make(t: MapType, ks: int = 4, vs: int = 8, n: int = 4, **kw: object) -> emu.EmuMap:
    return emu.create_map(MapSpec("m", t, ks, vs, n), **kw)  # type: ignore[arg-type]


def test_array_semantics() -> None:
    m = make(MapType.ARRAY)
    assert isinstance(m, MapBase)
    assert m[3] == 0
    m[1] = 42
    assert m[1] == 42 and list(m.keys()) == [0, 1, 2, 3]
    with pytest.raises(KeyError):
        m.lookup(4)
    with pytest.raises(MapError) as ei:
        del m[1]
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(MapError) as ei:
        m.update(9, 1)
    assert ei.value.errno == errno.E2BIG
    with pytest.raises(MapError):
        m.update(0, 1, UpdateFlags.NOEXIST)


def test_percpu_array_one_value_per_cpu() -> None:
    m = make(MapType.PERCPU_ARRAY, vs=4, ncpus=3)
    m[0] = [1, 2, 3]
    assert m[0] == [1, 2, 3]
    m[1] = 7
    assert m[1] == [7, 7, 7]


def test_hash_flags_and_full() -> None:
    m = make(MapType.HASH, n=2)
    m[1] = 10
    with pytest.raises(MapError) as ei:
        m.update(1, 11, UpdateFlags.NOEXIST)
    assert ei.value.errno == errno.EEXIST
    with pytest.raises(MapError) as ei:
        m.update(5, 11, UpdateFlags.EXIST)
    assert ei.value.errno == errno.ENOENT
    m[2] = 20
    with pytest.raises(MapError) as ei:
        m[3] = 30
    assert ei.value.errno == errno.E2BIG
    del m[1]
    with pytest.raises(KeyError):
        del m[1]
    assert dict(m.items()) == {2: 20}


def test_lru_hash_evicts_least_recently_used() -> None:
    m = make(MapType.LRU_HASH, n=2)
    m[1] = 1
    m[2] = 2
    assert m.lookup(1) == 1
    m.update(1, 1)          # touch 1 again
    m[3] = 3
    assert 2 not in m and 1 in m and 3 in m


def test_percpu_hash_program_update_touches_only_current_cpu() -> None:
    m = make(MapType.PERCPU_HASH, vs=4, ncpus=2)
    assert m.emu_update((1).to_bytes(4, "little"), (9).to_bytes(4, "little"), 0, 1) == 0
    assert m[1] == [0, 9]


def test_lpm_trie_longest_prefix_and_order() -> None:
    m = emu.create_map(MapSpec("lpm", MapType.LPM_TRIE, 8, 4, 16), value_type=int)
    m["10.0.0.0/8"] = 8
    m["10.1.0.0/16"] = 16
    m["192.168.0.0/16"] = 1
    assert m[(32, "10.1.2.3")] == 16
    assert m[(32, "10.2.2.3")] == 8
    with pytest.raises(KeyError):
        m.lookup((32, "11.0.0.1"))
    # the VM side does the same longest-prefix match
    key = (32).to_bytes(4, "little") + bytes([10, 1, 9, 9])
    buf, off = m.emu_lookup(key, 0)
    assert int.from_bytes(buf[off:off + 4], "little") == 16
    keys = [str(k[1]) + "/" + str(k[0]) for k in m]
    assert keys == ["10.1.0.0/16", "10.0.0.0/8", "192.168.0.0/16"]
    del m["10.1.0.0/16"]
    assert m[(32, "10.1.2.3")] == 8


def test_devmap_cpumap_xskmap_are_sparse() -> None:
    for t in (MapType.DEVMAP, MapType.CPUMAP, MapType.XSKMAP):
        m = make(t, vs=4)
        assert len(m) == 0
        m[2] = 7
        assert m[2] == 7 and list(m.keys()) == [2]
        del m[2]
        with pytest.raises(MapError):
            m[9] = 1
    h = make(MapType.DEVMAP_HASH, vs=4)
    h[1000] = 3
    assert h[1000] == 3


def test_prog_array_holds_programs() -> None:
    m = make(MapType.PROG_ARRAY, vs=4)
    from pyxdp.asm import assemble
    p = emu.load(assemble("r0 = 2\nexit"))
    m[0] = p
    assert m[0] == p.fd
    with pytest.raises(MapError):
        m[1] = 123456


def test_ringbuf_drain_and_no_keys() -> None:
    rb = emu.create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, 4096))
    assert isinstance(rb, emu.RingBuf)
    assert rb.drain() == []
    with pytest.raises(MapError):
        rb.lookup(b"")
    with pytest.raises(MapError):
        emu.create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, 1000))


def test_initial_contents_are_loaded() -> None:
    spec = MapSpec("d", MapType.ARRAY, 4, 4, 1, contents=[(bytes(4), (5).to_bytes(4, "little"))])
    assert emu.create_map(spec)[0] == 5


def test_unsupported_type_is_a_map_error() -> None:
    with pytest.raises(MapError):
        make(MapType.STACK_TRACE)

"""Kernel maps through the shared map protocol: every op against the real kernel."""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os

import pytest
from kinsns import bpftool, counter_spec, lpm_verdict_spec

from pyxdp.abi import MapType
from pyxdp.errors import BpfError, MapError
from pyxdp.kernel import Map, Program, possible_cpus, test_run
from pyxdp.maps import MapSpec, UpdateFlags

pytestmark = pytest.mark.kernel


def spec(type_: MapType, key: int = 4, value: int = 8, entries: int = 16, **kw) -> MapSpec:
    return MapSpec(name=f"t_{type_.name.lower()}", type=type_, key_size=key,
                   value_size=value, max_entries=entries, **kw)


def eth_ipv4(dst: str) -> bytes:
    """A minimal Ethernet + IPv4 header addressed to ``dst``."""
    ip = bytearray(20)
    ip[0], ip[9] = 0x45, 17
    ip[12:16] = ipaddress.IPv4Address("198.18.0.1").packed
    ip[16:20] = ipaddress.IPv4Address(dst).packed
    return bytes(12) + b"\x08\x00" + bytes(ip) + bytes(26)


@pytest.mark.parametrize("type_", [MapType.HASH, MapType.LRU_HASH])
def test_hash_crud_and_iterate(type_: MapType) -> None:
    with Map.create(spec(type_)) as m:
        for i in range(10):
            m[i] = i * 100
        assert m[3] == 300
        assert m.get(42) is None
        assert 3 in m and 42 not in m
        assert dict(m.items()) == {i: i * 100 for i in range(10)}
        assert sorted(m.keys()) == list(range(10))
        assert len(m) == 10
        del m[3]
        with pytest.raises(KeyError):
            m[3]
        with pytest.raises(KeyError):
            del m[3]
        m.update(4, 7, UpdateFlags.EXIST)
        assert m[4] == 7
        m.clear()
        assert len(m) == 0


def test_array_semantics() -> None:
    with Map.create(spec(MapType.ARRAY, entries=4)) as m:
        assert list(m.items()) == [(0, 0), (1, 0), (2, 0), (3, 0)]
        m[2] = 99
        assert m[2] == 99
        with pytest.raises(BpfError) as exc:
            m[4] = 1                                  # past the end
        assert exc.value.errno == errno.E2BIG
        assert exc.value.command == "BPF_MAP_UPDATE_ELEM"
        with pytest.raises(BpfError) as exc:
            del m[2]                                  # arrays cannot lose keys
        assert exc.value.errno == errno.EINVAL
        assert exc.value.command == "BPF_MAP_DELETE_ELEM"


def test_lru_evicts_instead_of_failing() -> None:
    with Map.create(spec(MapType.LRU_HASH, entries=8)) as m:
        for i in range(200):
            m[i] = i
        assert 0 < len(m) <= 8
        assert m[199] == 199


@pytest.mark.parametrize("type_", [MapType.PERCPU_ARRAY, MapType.PERCPU_HASH,
                                   MapType.LRU_PERCPU_HASH])
def test_percpu_values_are_lists_per_possible_cpu(type_: MapType) -> None:
    ncpu = possible_cpus()
    with open("/sys/devices/system/cpu/possible") as f:
        assert ncpu == int(f.read().strip().split(",")[-1].split("-")[-1]) + 1
    with Map.create(spec(type_, value=4)) as m:
        m[1] = list(range(10, 10 + ncpu))
        assert m[1] == list(range(10, 10 + ncpu))
        m[2] = 5                                      # one value for every CPU
        assert m[2] == [5] * ncpu
        m.update_batch([(3, [7] * ncpu), (4, list(range(ncpu)))])
        assert m[3] == [7] * ncpu and m[4] == list(range(ncpu))
        assert dict(m.dump())[4] == list(range(ncpu))


def test_percpu_counter_written_by_program() -> None:
    with Map.create(spec(MapType.PERCPU_ARRAY, entries=1)) as m, \
            Program.load(counter_spec(), maps={"counters": m}) as p:
        test_run(p, eth_ipv4("198.18.0.2"), repeat=7)
        assert sum(m[0]) == 7 and len(m[0]) == possible_cpus()


def test_lpm_trie_longest_prefix_in_kernel() -> None:
    with Map.create(spec(MapType.LPM_TRIE, key=8, value=4, entries=16)) as routes:
        routes["198.18.0.0/15"] = 1                     # XDP_DROP
        routes[ipaddress.ip_network("198.18.7.0/24")] = 3  # XDP_TX
        routes[(32, ipaddress.IPv4Address("198.19.0.9"))] = 4
        assert routes["198.18.7.0/24"] == 3
        assert sorted(routes.keys()) == sorted([
            (15, ipaddress.IPv4Address("198.18.0.0")), (24, ipaddress.IPv4Address("198.18.7.0")),
            (32, ipaddress.IPv4Address("198.19.0.9"))])
        with Program.load(lpm_verdict_spec(), maps={"routes": routes}) as prog:
            verdict = {dst: test_run(prog, eth_ipv4(dst)).retval
                       for dst in ("198.18.7.5", "198.18.8.5", "198.19.0.9", "203.0.113.1")}
        assert verdict == {"198.18.7.5": 3, "198.18.8.5": 1, "198.19.0.9": 4, "203.0.113.1": 2}
        # lookups from user space are longest-prefix matches too
        assert routes["198.18.9.9/32"] == 1
        del routes["198.18.7.0/24"]
        assert routes["198.18.7.0/24"] == 1
        assert (24, ipaddress.IPv4Address("198.18.7.0")) not in set(routes.keys())
        with pytest.raises(KeyError):
            routes["203.0.113.0/24"]
        with pytest.raises(KeyError):
            del routes["198.18.7.0/24"]


def test_lpm_rejects_bad_prefix_before_the_kernel() -> None:
    with Map.create(spec(MapType.LPM_TRIE, key=8, value=4)) as routes, \
            pytest.raises(MapError):
        routes[(33, ipaddress.IPv4Address("198.18.0.0"))] = 1


def test_batch_ops_equal_single_ops() -> None:
    pairs = [(i, i * i) for i in range(1000)]
    with Map.create(spec(MapType.HASH, entries=2000)) as batch, \
            Map.create(spec(MapType.HASH, entries=2000)) as single:
        assert batch.update_batch(pairs) == 1000
        for k, v in pairs:
            single[k] = v
        assert dict(batch.items()) == dict(single.items()) == dict(pairs)
        assert dict(batch.dump(chunk=64)) == dict(pairs)
        assert batch.lookup_batch([1, 2, 5000]) == [1, 4, None]
        assert batch.delete_batch([1, 2, 5000, 3]) == 3          # the missing key is skipped
        for k in (1, 2, 3):
            del single[k]
        assert dict(batch.items()) == dict(single.items())
        drained = dict(batch.dump(delete=True))
        assert drained == dict(single.items()) and len(batch) == 0


def test_batch_on_array_and_fallback_to_single_ops() -> None:
    with Map.create(spec(MapType.ARRAY, entries=8)) as arr:
        arr.update_batch([(i, 10 + i) for i in range(8)])
        assert arr.dump() == [(i, 10 + i) for i in range(8)]
    # LPM tries have no batch lookup on older kernels and queues have no keys at all:
    # whatever this kernel says, the typed results must be right.
    with Map.create(spec(MapType.LPM_TRIE, key=8, value=4)) as lpm:
        lpm.update_batch([("198.18.0.0/16", 1), ("198.18.1.0/24", 2)])
        assert dict(lpm.dump()) == {(16, ipaddress.IPv4Address("198.18.0.0")): 1,
                                    (24, ipaddress.IPv4Address("198.18.1.0")): 2}
        assert lpm.delete_batch(["198.18.0.0/16", "10.0.0.0/8"]) == 1


def test_batch_update_full_map_raises_e2big() -> None:
    with Map.create(spec(MapType.HASH, entries=4)) as m:
        with pytest.raises(BpfError) as exc:
            m.update_batch([(i, i) for i in range(10)])
        assert exc.value.errno == errno.E2BIG
        assert exc.value.command == "BPF_MAP_UPDATE_BATCH"
        assert len(m) == 4


def test_errors_full_exists_and_sizes() -> None:
    with Map.create(spec(MapType.HASH, entries=2)) as m:
        m[1], m[2] = 1, 2
        with pytest.raises(BpfError) as exc:
            m[3] = 3
        assert exc.value.errno == errno.E2BIG and exc.value.command == "BPF_MAP_UPDATE_ELEM"
        assert isinstance(exc.value, OSError)
        with pytest.raises(BpfError) as exc:
            m.update(1, 5, UpdateFlags.NOEXIST)
        assert exc.value.errno == errno.EEXIST
        with pytest.raises(BpfError) as exc:
            m.update(9, 5, UpdateFlags.EXIST)     # only lookup/delete map ENOENT to KeyError
        assert exc.value.errno == errno.ENOENT
    with pytest.raises(BpfError) as exc:
        Map.create(spec(MapType.HASH, key=0))
    assert exc.value.errno == errno.EINVAL and exc.value.command == "BPF_MAP_CREATE"
    with Map.create(spec(MapType.HASH)) as m, pytest.raises(MapError):
        m._update(b"\x00" * 3, b"\x00" * 8, 0)     # never hand the kernel a short buffer


def test_freeze_then_write_is_eperm() -> None:
    with Map.create(spec(MapType.ARRAY, entries=2, contents=[(bytes(4), (7).to_bytes(8, "little"))])) as m:
        m.freeze()
        assert m[0] == 7
        with pytest.raises(BpfError) as exc:
            m[0] = 1
        assert exc.value.errno == errno.EPERM and exc.value.command == "BPF_MAP_UPDATE_ELEM"


def test_spec_freeze_and_contents() -> None:
    s = spec(MapType.ARRAY, value=4, entries=2, freeze=True,
             contents=[((1).to_bytes(4, "little"), (5).to_bytes(4, "little"))])
    with Map.create(s) as m:
        assert m[1] == 5
        with pytest.raises(BpfError):
            m[1] = 6


def test_info_and_typed_codecs() -> None:
    class Val(ctypes.Structure):
        _fields_ = [("pkts", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]

    with Map.create(spec(MapType.HASH, value=16, entries=5), value_type=Val) as m:
        info = m.info()
        assert (info.type, info.key_size, info.value_size, info.max_entries) == (
            MapType.HASH, 4, 16, 5)
        assert info.name == "t_hash" and info.id > 0
        m[1] = Val(3, 400)
        assert (m[1].pkts, m[1].bytes) == (3, 400)


def test_pin_bpftool_from_pin_unpin(pin_dir: str) -> None:
    path = os.path.join(pin_dir, "counters")
    with Map.create(spec(MapType.HASH)) as m:
        m[5] = 55
        m.pin(path)
        seen = bpftool("map", "show", "pinned", path)
        assert seen["id"] == m.info().id and seen["type"] == "hash"
        with Map.from_pin(path) as again:
            assert again[5] == 55
            again[6] = 66
        assert m[6] == 66
        with Map.from_id(m.id) as by_id:
            assert by_id.spec.key_size == 4 and by_id[5] == 55
        m.unpin()
        assert not os.path.exists(path)
    with pytest.raises(BpfError) as exc:
        Map.from_pin(path)
    assert exc.value.errno == errno.ENOENT and exc.value.command == "BPF_OBJ_GET"


def test_prog_array_values_are_fds_in_ids_out() -> None:
    from kinsns import ret, tail_call_spec

    with Map.create(spec(MapType.PROG_ARRAY, value=4, entries=4)) as jumps, \
            Program.load(ret(1)) as drop, \
            Program.load(tail_call_spec(), maps={"jumps": jumps}) as caller:
        assert test_run(caller, bytes(64)).retval == 2   # empty slot: falls through
        jumps[0] = drop
        assert jumps[0] == drop.id
        assert test_run(caller, bytes(64)).retval == 1   # tail call into `drop`
        del jumps[0]
        assert test_run(caller, bytes(64)).retval == 2


@pytest.mark.parametrize("outer", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_map_in_map(outer: MapType) -> None:
    inner_spec = spec(MapType.ARRAY, entries=4)
    with Map.create(spec(outer, value=4, entries=4, inner=inner_spec)) as om, \
            Map.create(inner_spec) as a, Map.create(inner_spec) as b:
        om[0] = a
        om[1] = b.fd
        assert om[0] == a.id and om[1] == b.id
        assert sorted(om.values()) == sorted([a.id, b.id])
        with Map.from_id(om[1]) as again:
            again[2] = 22
        assert b[2] == 22
        if outer == MapType.HASH_OF_MAPS:
            del om[0]
            assert 0 not in om
    with Map.create(inner_spec) as tmpl, \
            Map.create(spec(outer, value=4, entries=1), inner_map_fd=tmpl) as om2:
        assert om2.info().type == outer
    with pytest.raises(MapError):
        Map.create(spec(outer, value=4, entries=1))


def test_from_pin_of_a_program_names_path_and_kind(pin_dir: str) -> None:
    """A pinned program opened as a map: a clear MapError, not the program's info read
    as a map's (garbage sizes, once a MemoryError in ``map dump``)."""
    from kinsns import ret

    path = os.path.join(pin_dir, "not_a_map")
    with Program.load(ret(2)) as p:
        p.pin(path)
        before = set(os.listdir("/proc/self/fd"))
        with pytest.raises(MapError, match=rf"{path} is a BPF program, not a BPF map"):
            Map.from_pin(path)
        assert set(os.listdir("/proc/self/fd")) <= before       # the fd was closed again
        with pytest.raises(MapError, match=r"fd \d+ is a BPF program, not a BPF map"):
            Map.from_fd(p.fd.dup())


def test_from_fd_of_a_plain_file_is_refused() -> None:
    from pyxdp.kernel import Fd

    with pytest.raises(MapError, match=r"is not a BPF map but a file /dev/null"):
        Map.from_fd(Fd(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)))


def test_closed_map_never_reaches_a_reused_fd_number() -> None:
    from pyxdp.kernel import Map
    from pyxdp.maps import MapSpec

    a = Map.create(MapSpec("a", MapType.HASH, 4, 8, 4))
    a.close()
    with Map.create(MapSpec("b", MapType.HASH, 4, 8, 4)) as b:  # likely the same fd number
        with pytest.raises(ValueError, match="closed"):
            a[1] = 0xDEAD
        with pytest.raises(ValueError, match="closed"):
            a.get(1)
        assert len(b) == 0


@pytest.mark.parametrize("mtype", [MapType.DEVMAP, MapType.CPUMAP])
def test_batch_ops_fall_back_where_the_kernel_has_none(mtype) -> None:
    from pyxdp.kernel import Map
    from pyxdp.maps import MapSpec

    with Map.create(MapSpec("nobatch", mtype, 4, 4, 4)) as m:
        if mtype == MapType.CPUMAP:
            assert m.update_batch([(0, 192)]) == 1  # queue size of CPU 0's kthread
        else:
            assert m.update_batch([(0, 1), (1, 1)]) == 2  # ifindex 1: lo
        assert m.delete_batch([0]) == 1
        assert 0 not in m

"""Feature probes against the running kernel."""

from __future__ import annotations

import errno
import functools
import gzip
import os

import pytest

from pyxdp.abi import MapType, ProgType
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


# -- every type the running kernel is new enough for must probe as present ------------------
# (first kernel, the config option it depends on beyond CONFIG_BPF_SYSCALL/NET, if any)
MAP_TYPES_SINCE: dict[MapType, tuple[tuple[int, int], str | None]] = {
    MapType.HASH: ((3, 19), None), MapType.ARRAY: ((3, 19), None),
    MapType.PROG_ARRAY: ((4, 2), None), MapType.PERF_EVENT_ARRAY: ((4, 3), None),
    MapType.PERCPU_HASH: ((4, 6), None), MapType.PERCPU_ARRAY: ((4, 6), None),
    MapType.STACK_TRACE: ((4, 6), "CONFIG_PERF_EVENTS"),
    MapType.CGROUP_ARRAY: ((4, 8), "CONFIG_CGROUPS"),
    MapType.LRU_HASH: ((4, 10), None), MapType.LRU_PERCPU_HASH: ((4, 10), None),
    MapType.LPM_TRIE: ((4, 11), None), MapType.ARRAY_OF_MAPS: ((4, 12), None),
    MapType.HASH_OF_MAPS: ((4, 12), None), MapType.DEVMAP: ((4, 14), None),
    MapType.SOCKMAP: ((4, 14), "CONFIG_BPF_STREAM_PARSER"), MapType.CPUMAP: ((4, 15), None),
    MapType.XSKMAP: ((4, 18), "CONFIG_XDP_SOCKETS"),
    MapType.SOCKHASH: ((4, 18), "CONFIG_BPF_STREAM_PARSER"),
    MapType.CGROUP_STORAGE: ((4, 19), "CONFIG_CGROUP_BPF"),
    MapType.REUSEPORT_SOCKARRAY: ((4, 19), None),
    MapType.PERCPU_CGROUP_STORAGE: ((4, 20), "CONFIG_CGROUP_BPF"),
    MapType.QUEUE: ((4, 20), None), MapType.STACK: ((4, 20), None),
    MapType.SK_STORAGE: ((5, 2), None), MapType.DEVMAP_HASH: ((5, 4), None),
    MapType.STRUCT_OPS: ((5, 6), "CONFIG_BPF_JIT"), MapType.RINGBUF: ((5, 8), None),
    MapType.INODE_STORAGE: ((5, 10), "CONFIG_BPF_LSM"), MapType.TASK_STORAGE: ((5, 11), None),
    MapType.BLOOM_FILTER: ((5, 16), None), MapType.USER_RINGBUF: ((6, 1), None),
    MapType.CGRP_STORAGE: ((6, 2), "CONFIG_CGROUPS"), MapType.ARENA: ((6, 9), "CONFIG_MMU"),
}
PROG_TYPES_SINCE: dict[ProgType, tuple[tuple[int, int], str | None]] = {
    ProgType.SOCKET_FILTER: ((3, 19), None), ProgType.KPROBE: ((4, 1), "CONFIG_KPROBE_EVENTS"),
    ProgType.SCHED_CLS: ((4, 1), "CONFIG_NET_CLS_BPF"),
    ProgType.SCHED_ACT: ((4, 1), "CONFIG_NET_ACT_BPF"),
    ProgType.TRACEPOINT: ((4, 7), "CONFIG_TRACING"), ProgType.XDP: ((4, 8), None),
    ProgType.PERF_EVENT: ((4, 9), "CONFIG_PERF_EVENTS"),
    ProgType.CGROUP_SKB: ((4, 10), "CONFIG_CGROUP_BPF"),
    ProgType.CGROUP_SOCK: ((4, 10), "CONFIG_CGROUP_BPF"),
    ProgType.LWT_IN: ((4, 10), "CONFIG_LWTUNNEL_BPF"),
    ProgType.LWT_OUT: ((4, 10), "CONFIG_LWTUNNEL_BPF"),
    ProgType.LWT_XMIT: ((4, 10), "CONFIG_LWTUNNEL_BPF"), ProgType.SOCK_OPS: ((4, 13), None),
    ProgType.SK_SKB: ((4, 14), "CONFIG_BPF_STREAM_PARSER"),
    ProgType.CGROUP_DEVICE: ((4, 15), "CONFIG_CGROUP_BPF"),
    ProgType.SK_MSG: ((4, 17), "CONFIG_BPF_STREAM_PARSER"),
    ProgType.RAW_TRACEPOINT: ((4, 17), "CONFIG_TRACING"),
    ProgType.CGROUP_SOCK_ADDR: ((4, 17), "CONFIG_CGROUP_BPF"),
    ProgType.LWT_SEG6LOCAL: ((4, 18), "CONFIG_IPV6_SEG6_BPF"),
    ProgType.LIRC_MODE2: ((4, 18), "CONFIG_BPF_LIRC_MODE2"),
    ProgType.SK_REUSEPORT: ((4, 19), None), ProgType.FLOW_DISSECTOR: ((4, 20), None),
    ProgType.CGROUP_SYSCTL: ((5, 2), "CONFIG_CGROUP_BPF"),
    ProgType.RAW_TRACEPOINT_WRITABLE: ((5, 2), "CONFIG_TRACING"),
    ProgType.CGROUP_SOCKOPT: ((5, 3), "CONFIG_CGROUP_BPF"),
    ProgType.TRACING: ((5, 5), "CONFIG_BPF_JIT"), ProgType.STRUCT_OPS: ((5, 6), "CONFIG_BPF_JIT"),
    ProgType.EXT: ((5, 6), "CONFIG_BPF_JIT"), ProgType.LSM: ((5, 7), "CONFIG_BPF_LSM"),
    ProgType.SK_LOOKUP: ((5, 9), None), ProgType.SYSCALL: ((5, 14), None),
    ProgType.NETFILTER: ((6, 4), "CONFIG_NETFILTER_BPF_LINK"),
}


def _kernel_release() -> tuple[int, int]:
    major, minor = os.uname().release.split("-")[0].split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()))


@functools.cache
def _kernel_config() -> dict[str, str] | None:
    """The running kernel's config (None if neither /boot nor /proc has it)."""
    for path, opener in ((f"/boot/config-{os.uname().release}", open),
                         ("/proc/config.gz", gzip.open)):
        try:
            with opener(path, "rt") as f:
                return dict(line.strip().split("=", 1) for line in f if "=" in line
                            and not line.startswith("#"))
        except OSError:
            continue
    return None


def _config_off(option: str | None) -> bool:
    cfg = _kernel_config()
    return option is not None and cfg is not None and cfg.get(option) not in ("y", "m")


def _refused_by_policy(mtype: MapType) -> bool:
    """A map create refused with EPERM although we hold CAP_BPF and CAP_SYS_ADMIN is a
    security policy of this machine (some sandboxes forbid arenas), not an absent type;
    every other errno still counts as a wrong probe."""
    return features._create_probe_map(mtype)[1] == errno.EPERM


def test_every_map_type_of_this_kernel_probes_present() -> None:
    """Absence is only believed when the kernel predates the type or lacks its config."""
    missing = [m.name for m, (since, option) in MAP_TYPES_SINCE.items()
               if _kernel_release() >= since and not _config_off(option)
               and not features.has_map_type(m) and not _refused_by_policy(m)]
    assert not missing, f"probes say absent on {os.uname().release}: {missing}"
    assert set(MAP_TYPES_SINCE) == set(MapType) - {MapType.UNSPEC}   # table kept complete


def test_every_prog_type_of_this_kernel_probes_present() -> None:
    """As above; a load refused with EPERM although we hold CAP_BPF/CAP_PERFMON is a
    security policy of this machine (some sandboxes forbid tracing), not an absent type."""
    missing = []
    for p, (since, option) in PROG_TYPES_SINCE.items():
        if _kernel_release() < since or _config_off(option) or features.has_prog_type(p):
            continue
        _, err = features._load_probe(p, [features._MOV_R0_0, features._EXIT], log=False)
        if err is not None and err.errno == errno.EPERM:
            continue
        missing.append(p.name)
    assert not missing, f"probes say absent on {os.uname().release}: {missing}"
    assert set(PROG_TYPES_SINCE) == set(ProgType) - {ProgType.UNSPEC}


def test_newer_types_that_need_special_probe_arguments() -> None:
    """The three that plain probes got wrong: BTF-described cgroup storage, the arena
    (MMAPABLE, no key/value), netfilter (expected attach type BPF_NETFILTER)."""
    rel = _kernel_release()
    if rel >= (6, 2):
        assert features.has_map_type(MapType.CGRP_STORAGE)
    if rel >= (6, 9):
        assert features.has_map_type(MapType.ARENA) or _refused_by_policy(MapType.ARENA)
    if rel >= (6, 4) and not _config_off("CONFIG_NETFILTER_BPF_LINK"):
        assert features.has_prog_type(ProgType.NETFILTER)

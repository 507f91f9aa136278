"""The kernel layer: live BPF objects through the ``bpf()`` system call (ctypes only).

* :class:`Map` — the shared map protocol on a kernel map (single, batch, per-CPU, LPM,
  map-in-map), pinning, info, freeze.
* :class:`Program` — load instructions or a :class:`~pyxdp.spec.ProgramSpec` (map refs
  patched from live maps); verifier errors with the full log; info, tag, xlated dump.
* :func:`test_run` — BPF_PROG_TEST_RUN; :class:`XdpMd` is the XDP context.
* :class:`Link` / :func:`create_xdp_link` — fd-owned attachments with atomic update.
* :class:`KernelBackend` — the kernel side of :mod:`pyxdp.backend` (load a spec, run a
  packet), the same protocol as :class:`pyxdp.emu.EmuBackend`.
* :mod:`pyxdp.kernel.features` — probes for program/map types and helpers.
* :func:`list_programs` / :func:`list_maps` / :func:`list_links` — what is loaded.

Every object owns an :class:`Fd`; nothing here runs at import time.
"""

from pyxdp.kernel._fd import Fd, fd_number
from pyxdp.kernel._info import (
    LinkInfo,
    MapInfo,
    ProgInfo,
    list_links,
    list_maps,
    list_programs,
)
from pyxdp.kernel._link import (
    BPF_F_REPLACE,
    XDP_FLAGS_DRV_MODE,
    XDP_FLAGS_HW_MODE,
    XDP_FLAGS_SKB_MODE,
    XDP_FLAGS_UPDATE_IF_NOEXIST,
    Link,
    create_xdp_link,
)
from pyxdp.kernel._map import BPF_F_NO_PREALLOC, Map
from pyxdp.kernel._pin import (
    BPF_F_RDONLY,
    BPF_F_WRONLY,
    DEFAULT_BPFFS,
    ensure_bpffs,
    is_bpffs,
    obj_get,
    obj_pin,
    unpin,
)
from pyxdp.kernel._prog import Program, failing_insn, patch_map_refs
from pyxdp.kernel._stats import enable_stats
from pyxdp.kernel._sys import bpf, possible_cpus
from pyxdp.kernel._testrun import (
    BPF_F_TEST_RUN_ON_CPU,
    BPF_F_TEST_SKB_CHECKSUM_COMPLETE,
    BPF_F_TEST_XDP_LIVE_FRAMES,
    TestRunResult,
    XdpMd,
    test_run,
)
from pyxdp.kernel.backend import KernelBackend
from pyxdp.kernel.loader import Collection, load_collection

__all__ = [
    "BPF_F_NO_PREALLOC", "BPF_F_RDONLY", "BPF_F_REPLACE", "BPF_F_TEST_RUN_ON_CPU",
    "BPF_F_TEST_SKB_CHECKSUM_COMPLETE", "BPF_F_TEST_XDP_LIVE_FRAMES", "BPF_F_WRONLY",
    "Collection", "KernelBackend", "load_collection",
    "DEFAULT_BPFFS", "XDP_FLAGS_DRV_MODE", "XDP_FLAGS_HW_MODE", "XDP_FLAGS_SKB_MODE",
    "XDP_FLAGS_UPDATE_IF_NOEXIST", "Fd", "Link", "LinkInfo", "Map", "MapInfo", "ProgInfo",
    "Program", "TestRunResult", "XdpMd", "bpf", "create_xdp_link", "enable_stats", "ensure_bpffs",
    "failing_insn", "fd_number", "is_bpffs", "list_links", "list_maps", "list_programs",
    "obj_get", "obj_pin", "patch_map_refs", "possible_cpus", "test_run", "unpin",
]

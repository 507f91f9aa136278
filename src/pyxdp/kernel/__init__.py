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
* :func:`list_programs` / :func:`list_maps` / :func:`list_links` — what is loaded;
  :func:`annotate_xlated` — a program's xlated instructions as bpftool shows them.
* :class:`Collection` / :func:`load_collection` / :func:`load_pinned` — whole objects,
  pinned by one naming rule (:meth:`Collection.pin`).

Every object owns an :class:`Fd`; nothing here runs at import time.  :class:`Map`,
:class:`Program` and the loader (which pull in the ISA, specs and BTF) are imported on first
use, so that ``pyxdp prog list`` and friends start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pyxdp.kernel._fd import Fd, fd_number
from pyxdp.kernel._info import (
    LinkInfo,
    MapInfo,
    ProgInfo,
    list_links,
    list_maps,
    list_programs,
)
from pyxdp.kernel._pin import (
    BPF_F_RDONLY,
    BPF_F_WRONLY,
    DEFAULT_BPFFS,
    ensure_bpffs,
    is_bpffs,
    obj_get,
    obj_pin,
    pin_name,
    unpin,
)
from pyxdp.kernel._sys import bpf, possible_cpus

# name -> module, imported by __getattr__ on first use (PEP 562)
_LAZY = {
    **dict.fromkeys(("BPF_F_REPLACE", "XDP_FLAGS_DRV_MODE", "XDP_FLAGS_HW_MODE",
                     "XDP_FLAGS_SKB_MODE", "XDP_FLAGS_UPDATE_IF_NOEXIST", "Link",
                     "create_xdp_link"), "pyxdp.kernel._link"),
    **dict.fromkeys(("BPF_F_TEST_RUN_ON_CPU", "BPF_F_TEST_SKB_CHECKSUM_COMPLETE",
                     "BPF_F_TEST_XDP_LIVE_FRAMES", "TestRunResult", "XdpMd", "test_run"),
                    "pyxdp.kernel._testrun"),
    "enable_stats": "pyxdp.kernel._stats",
    "BPF_F_NO_PREALLOC": "pyxdp.kernel._map", "Map": "pyxdp.kernel._map",
    "Program": "pyxdp.kernel._prog", "failing_insn": "pyxdp.kernel._prog",
    "patch_map_refs": "pyxdp.kernel._prog",
    "Collection": "pyxdp.kernel.loader", "load_collection": "pyxdp.kernel.loader",
    "load_pinned": "pyxdp.kernel.loader", "KernelBackend": "pyxdp.kernel.backend",
    "XlatedLine": "pyxdp.kernel._xlated", "annotate_xlated": "pyxdp.kernel._xlated",
}

if TYPE_CHECKING:
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
    from pyxdp.kernel._prog import Program, failing_insn, patch_map_refs
    from pyxdp.kernel._stats import enable_stats
    from pyxdp.kernel._testrun import (
        BPF_F_TEST_RUN_ON_CPU,
        BPF_F_TEST_SKB_CHECKSUM_COMPLETE,
        BPF_F_TEST_XDP_LIVE_FRAMES,
        TestRunResult,
        XdpMd,
        test_run,
    )
    from pyxdp.kernel._xlated import XlatedLine, annotate_xlated
    from pyxdp.kernel.backend import KernelBackend
    from pyxdp.kernel.loader import Collection, load_collection, load_pinned


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BPF_F_NO_PREALLOC", "BPF_F_RDONLY", "BPF_F_REPLACE", "BPF_F_TEST_RUN_ON_CPU",
    "BPF_F_TEST_SKB_CHECKSUM_COMPLETE", "BPF_F_TEST_XDP_LIVE_FRAMES", "BPF_F_WRONLY",
    "Collection", "KernelBackend", "load_collection", "load_pinned", "pin_name", "XlatedLine",
    "annotate_xlated",
    "DEFAULT_BPFFS", "XDP_FLAGS_DRV_MODE", "XDP_FLAGS_HW_MODE", "XDP_FLAGS_SKB_MODE",
    "XDP_FLAGS_UPDATE_IF_NOEXIST", "Fd", "Link", "LinkInfo", "Map", "MapInfo", "ProgInfo",
    "Program", "TestRunResult", "XdpMd", "bpf", "create_xdp_link", "enable_stats", "ensure_bpffs",
    "failing_insn", "fd_number", "is_bpffs", "list_links", "list_maps", "list_programs",
    "obj_get", "obj_pin", "patch_map_refs", "possible_cpus", "test_run", "unpin",
]

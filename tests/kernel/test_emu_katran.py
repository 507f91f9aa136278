"""Katran's balancer (map-in-map per-CPU LRUs, consistent-hash rings, IPIP encapsulation)
runs in the emulator and gives the kernel's output bytes.

Katran is not part of pyxdp: its sources are a reference checkout (``PYXDP_KATRAN``,
default ``/work/shared/references/katran``) built with its ``build.sh`` into a temporary
directory; without the checkout or clang the tests skip.  One VIP (198.18.0.10:80/tcp) is
served by two reals; every ring slot names one of them; the per-CPU LRU maps are stored in
``lru_mapping`` (an ``ARRAY_OF_MAPS``), or left out so the program falls back to
``fallback_cache``.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyxdp.abi import XdpAction
from pyxdp.backend import Backend
from pyxdp.elf import load_object
from pyxdp.packets import build
from pyxdp.spec import ObjectSpec

KATRAN = Path(os.environ.get("PYXDP_KATRAN", "/work/shared/references/katran"))
RING_SIZE = 65537
VIP, REALS = "198.18.0.10", ("198.18.1.1", "198.18.1.2")
SPORTS = (1000, 1001, 1002, 40000)


@pytest.fixture(scope="module")
def balancer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectSpec]:
    if not (KATRAN / "build.sh").exists() or shutil.which("clang") is None:
        pytest.skip(f"no Katran checkout at {KATRAN} (PYXDP_KATRAN) or no clang")
    out = tmp_path_factory.mktemp("katran")
    subprocess.run(["sh", str(KATRAN / "build.sh"), str(out)], check=True,
                   capture_output=True)
    yield load_object(out / "balancer.o")


def _configure(backend: Backend, coll: Any, ncpus: int) -> list[Any]:
    maps = coll.maps
    maps["ctl_array"][0] = b"\x02\x00\x00\x00\x00\xaa\x00\x00"      # next-hop MAC
    vip = socket.inet_aton(VIP) + bytes(12) + struct.pack("<HBx", socket.htons(80), 6)
    maps["vip_map"][vip] = struct.pack("<II", 0, 0)                  # flags, vip_num 0
    for i, real in enumerate(REALS, 1):
        maps["reals"][i] = socket.inet_aton(real) + bytes(16)
    keys = b"".join(struct.pack("<I", i) for i in range(RING_SIZE))
    values = b"".join(struct.pack("<I", 1 + (i & 1)) for i in range(RING_SIZE))
    maps["ch_rings"].update_batch_raw(keys, values)
    lrus = []
    template = maps["lru_mapping"].spec.inner
    for cpu in range(ncpus):
        lru = backend.create_map(template)
        maps["lru_mapping"][cpu] = lru
        lrus.append(lru)
    return lrus


def _frame(sport: int) -> bytes:
    return build.ethernet(build.ipv4(build.tcp(b"hello", sport=sport, dport=80, flags="S"),
                                     src="198.18.0.1", dst=VIP),
                          src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _run(backend: Backend, obj: ObjectSpec, with_lru: bool
         ) -> tuple[list[tuple[int, bytes]], int]:
    from pyxdp.kernel import possible_cpus

    with backend.load(obj) as coll:
        lrus = _configure(backend, coll, possible_cpus() if with_lru else 0)
        try:
            prog = coll.programs["balancer_ingress"]
            out = [(r.retval, r.packet) for r in
                   (prog.run_packet(_frame(sport)) for sport in SPORTS)]
            cached = sum(len(list(lru.keys())) for lru in lrus)
        finally:
            for cpu in range(len(lrus)):
                del coll.maps["lru_mapping"][cpu]
            for lru in lrus:
                lru.close()
        return out, cached


@pytest.mark.parametrize("with_lru", [True, False], ids=["per-cpu-lru", "fallback-lru"])
def test_balancer_encapsulates_to_a_real(backend: Backend, balancer: ObjectSpec,
                                          with_lru: bool) -> None:
    out, cached = _run(backend, balancer, with_lru)
    assert cached == (4 if with_lru else 0)        # one LRU entry per new flow
    for sport, (retval, packet) in zip(SPORTS, out):
        assert retval == XdpAction.TX
        assert packet[:6] == b"\x02\x00\x00\x00\x00\xaa"     # to the next hop
        outer = packet[14:34]
        assert outer[9] == socket.IPPROTO_IPIP
        assert socket.inet_ntoa(outer[16:20]) in REALS
        assert packet[34:] == _frame(sport)[14:]                 # the client's packet


@pytest.mark.kernel
@pytest.mark.parametrize("with_lru", [True, False], ids=["per-cpu-lru", "fallback-lru"])
def test_balancer_output_is_the_kernels(balancer: ObjectSpec, with_lru: bool) -> None:
    from pyxdp.emu import EmuBackend
    from pyxdp.kernel import KernelBackend, possible_cpus

    kernel, _ = _run(KernelBackend(), balancer, with_lru)
    emulated, _ = _run(EmuBackend(ncpus=possible_cpus()), balancer, with_lru)
    assert emulated == kernel

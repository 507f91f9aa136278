"""The kernel side of :mod:`pyxdp.backend`: real maps and programs through ``bpf()``.

``KernelBackend().load(spec)`` is :func:`~pyxdp.kernel.load_collection` (libbpf's order,
CO-RE, pinning by name); its programs run packets with ``BPF_PROG_TEST_RUN``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyxdp.btf import Btf
from pyxdp.kernel._map import Map
from pyxdp.kernel.loader import Collection, load_collection
from pyxdp.maps import MapSpec
from pyxdp.spec import ObjectSpec


class KernelBackend:
    """Loads into the running kernel (root or CAP_BPF + CAP_NET_ADMIN)."""

    name = "kernel"

    def __init__(self, *, vmlinux: Btf | None = None, log_level: int = 0) -> None:
        self.vmlinux = vmlinux      # CO-RE target BTF (default: the running kernel's)
        self.log_level = log_level

    def create_map(self, spec: MapSpec) -> Map:
        return Map.create(spec)

    def load(self, obj: ObjectSpec, *, pin_path: str | None = None,
             maps: Mapping[str, Map] | None = None) -> Collection:
        return load_collection(obj, pin_path, vmlinux=self.vmlinux, log_level=self.log_level,
                               maps=maps)

    def __repr__(self) -> str:
        return "<KernelBackend>"


__all__ = ["KernelBackend"]

"""The running kernel's BTF: ``/sys/kernel/btf/vmlinux`` and split BTF of modules.

Parsing vmlinux takes a moment, so the result is cached per path and file identity.
"""

from __future__ import annotations

import os

from pyxdp.btf._btf import Btf
from pyxdp.errors import BtfError

VMLINUX = "/sys/kernel/btf/vmlinux"
_cache: dict[tuple[str, int, int], Btf] = {}


def _read(path: str) -> tuple[bytes, tuple[str, int, int]]:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            return f.read(), (path, st.st_ino, st.st_mtime_ns)
    except OSError as e:
        raise BtfError(f"cannot read BTF from {path}: {e.strerror}") from None


def load_vmlinux(path: str = VMLINUX) -> Btf:
    """The kernel's base BTF (parsed once per process)."""
    data, key = _read(path)
    btf = _cache.get(key)
    if btf is None:
        btf = _cache[key] = Btf.parse(data)
    return btf


def load_split(path: str, base: Btf | None = None) -> Btf:
    """Split BTF (e.g. ``/sys/kernel/btf/<module>``) on top of ``base`` (default vmlinux)."""
    data, _ = _read(path)
    return Btf.parse(data, base=base if base is not None else load_vmlinux())

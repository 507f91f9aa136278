"""The running kernel's BTF: ``/sys/kernel/btf/vmlinux`` and split BTF of modules.

vmlinux BTF is read lazily (:class:`~pyxdp.btf._lazy.LazyBtf`: an index by name and kind,
types decoded when used), once per process and file identity.  The index is kept between
processes in a cache file keyed by the BTF's SHA-256 (``$PYXDP_CACHE_DIR``, else
``/var/cache/pyxdp`` for root, else ``$XDG_CACHE_HOME/pyxdp`` or ``~/.cache/pyxdp``;
``PYXDP_CACHE_DIR=off`` disables it): a new process then skips even the index walk.
"""

from __future__ import annotations

import os

from pyxdp.btf._btf import Btf
from pyxdp.btf._lazy import LazyBtf, load_index, save_index
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


def cache_dir() -> str | None:
    """Where the BTF index cache lives (None: disabled)."""
    env = os.environ.get("PYXDP_CACHE_DIR")
    if env is not None:
        return None if env.lower() in ("", "0", "off", "no") else env
    if os.geteuid() == 0:
        return "/var/cache/pyxdp"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyxdp")


def _lazy(data: bytes) -> LazyBtf:
    import hashlib

    where = cache_dir()
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(where, f"btf-{digest[:32]}.idx") if where else None
    index = load_index(path, digest) if path else None
    btf = LazyBtf(data, index, digest)
    if path and index is None:
        save_index(path, btf)
    return btf


def load_vmlinux(path: str = VMLINUX) -> Btf:
    """The kernel's base BTF (indexed once per process, decoded on demand)."""
    data, key = _read(path)
    btf = _cache.get(key)
    if btf is None:
        btf = _cache[key] = _lazy(data)
    return btf


def load_split(path: str, base: Btf | None = None) -> Btf:
    """Split BTF (e.g. ``/sys/kernel/btf/<module>``) on top of ``base`` (default vmlinux)."""
    data, _ = _read(path)
    return Btf.parse(data, base=base if base is not None else load_vmlinux())

"""Pinning: giving kernel objects a name in a bpf filesystem so they outlive the process.

bpffs is not always mounted (containers, minimal systems), so :func:`ensure_bpffs` mounts
it on demand instead of making every caller handle ``ENOENT``/``EPERM`` from ``OBJ_PIN``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

from pyxdp.abi import BPF_F_RDONLY, BPF_F_WRONLY, BPF_FS_MAGIC, Cmd
from pyxdp.kernel._fd import Fd, fd_number
from pyxdp.kernel._sys import ObjAttr, bpf, bytes_addr

DEFAULT_BPFFS = "/sys/fs/bpf"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]


def is_bpffs(path: str) -> bool:
    """Whether ``path`` lies on a mounted bpf filesystem (``statfs`` magic)."""
    return _statfs_magic(path) == BPF_FS_MAGIC


def _statfs_magic(path: str) -> int | None:
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.statfs(os.fsencode(path), buf) != 0:
        return None
    return int.from_bytes(buf.raw[:8], "little")  # f_type is the first (long) field


def ensure_bpffs(path: str = DEFAULT_BPFFS) -> str:
    """Make sure a bpf filesystem is mounted at ``path`` (mount it if not); returns ``path``."""
    if is_bpffs(path):
        return path
    os.makedirs(path, exist_ok=True)
    if _libc.mount(b"bpf", os.fsencode(path), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot mount bpffs at {path}: {os.strerror(err)}", path)
    return path


def pin_name(name: str) -> str:
    """The bpffs file name for an object called ``name``.

    bpffs refuses names with a dot (``xdp_prog.rodata``), so dots become underscores, as
    libbpf's ``bpf_object__pin_maps`` does; a slash would make a subdirectory and becomes
    an underscore too.
    """
    return name.replace(".", "_").replace("/", "_") or "_"


def make_pin_dir(path: str) -> list[str]:
    """Create the pin directory ``path`` (and missing parents) and check that it is on a
    bpf filesystem; returns the directories this call created, outermost first.

    Not on bpffs: raises :class:`~pyxdp.errors.PyxdpError` and removes what it created.
    """
    from pyxdp.errors import PyxdpError

    path = os.path.abspath(path)
    missing = []
    d = path
    while not os.path.exists(d):
        missing.append(d)
        d = os.path.dirname(d)
    missing.reverse()
    created: list[str] = []
    try:
        for d in missing:
            try:
                os.mkdir(d)
            except OSError as e:
                raise PyxdpError(f"cannot create pin directory {d}: {e.strerror}") from None
            created.append(d)
        if not os.path.isdir(path):
            raise PyxdpError(f"{path}: not a directory (a pin directory is needed)")
        if not is_bpffs(path):
            raise PyxdpError(f"{path}: not on a bpf filesystem (pins must live on bpffs,"
                             f" e.g. under {DEFAULT_BPFFS})")
    except BaseException:
        remove_dirs(created)
        raise
    return created


def remove_dirs(dirs: list[str]) -> None:
    """Remove ``dirs`` (as :func:`make_pin_dir` returned them) innermost first, each only if
    it is empty; never fails."""
    for d in reversed(dirs):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def obj_pin(fd: object, path: str) -> None:
    """Pin the object behind ``fd`` at ``path`` (BPF_OBJ_PIN); the path must be on bpffs."""
    raw = os.fsencode(path)
    attr = ObjAttr(pathname=bytes_addr(raw), bpf_fd=fd_number(fd))
    bpf(Cmd.OBJ_PIN, attr)


def obj_get(path: str, flags: int = 0) -> Fd:
    """Open a pinned object (BPF_OBJ_GET); ``flags`` may be BPF_F_RDONLY / BPF_F_WRONLY."""
    raw = os.fsencode(path)
    attr = ObjAttr(pathname=bytes_addr(raw), file_flags=flags)
    return Fd(bpf(Cmd.OBJ_GET, attr))


def unpin(path: str, missing_ok: bool = False) -> None:
    """Remove a pin (the object lives on while anything else holds it)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        if not missing_ok:
            raise


__all__ = ["BPF_FS_MAGIC", "BPF_F_RDONLY", "BPF_F_WRONLY", "DEFAULT_BPFFS", "ensure_bpffs",
           "is_bpffs", "make_pin_dir", "obj_get", "obj_pin", "pin_name", "remove_dirs",
           "unpin"]

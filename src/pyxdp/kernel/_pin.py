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


def private_bpffs_reason(path: str) -> str | None:
    """Why pins under ``path`` would vanish when this process's mount namespace goes, or
    None.

    ``ip netns exec`` (and ``unshare -m``) run a command in a mount namespace of its own,
    where ``/sys`` is remounted and a bpffs mounted there (by iproute2 or by
    :func:`ensure_bpffs`) is a fresh instance that only that namespace sees: it is
    destroyed with the namespace, and a bpf_link pinned in it with it, so an attachment
    "kept by its pin" disappears as the command exits.  Detected as: the nearest ancestor
    process in another mount namespace (the shell that ran ``ip netns exec``) does not see
    the same bpffs at the same place.  None when no such ancestor can be read.
    """
    try:
        mine_ns = os.stat("/proc/self/ns/mnt").st_ino
        where = _existing_parent(path)
        mine_dev = os.stat(where).st_dev
    except OSError:
        return None
    pid = os.getpid()
    for _ in range(64):                      # the ancestor chain, bounded
        pid = _parent_of(pid)
        if pid <= 1:
            return None
        try:
            if os.stat(f"/proc/{pid}/ns/mnt").st_ino == mine_ns:
                continue
        except OSError:
            return None                      # not ours to read: cannot tell
        try:
            theirs: int | None = os.stat(f"/proc/{pid}/root{where}").st_dev
        except FileNotFoundError:
            theirs = None
        except OSError:
            return None
        if theirs == mine_dev:
            return None
        return (f"{path} is on a bpf filesystem private to this process's mount namespace"
                " (as under `ip netns exec` or `unshare -m`): pins made there, and the"
                " attachment they hold, vanish when that namespace ends")
    return None


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def _existing_parent(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
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
           "is_bpffs", "make_pin_dir", "obj_get", "obj_pin", "pin_name", "private_bpffs_reason",
           "remove_dirs", "unpin"]

"""The one place where pyxdp enters the kernel: the ``bpf()`` system call.

Every command goes through :func:`bpf`, so errno handling is written once: a negative
return always becomes :class:`~pyxdp.errors.BpfError` carrying the errno and the command
name, never a silent ``-1``.  The ``bpf_attr`` union is modelled as one small ctypes
structure *per command* holding only the fields we use, laid out exactly as in the uapi
``linux/bpf.h``; ctypes zero-initialises them, and the kernel zero-extends an attr shorter
than its own union, so "only the fields used" is both correct and forward compatible.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import os

from pyxdp.abi import (  # re-exported: the kernel layer's modules import them from here
    BPF_OBJ_NAME_LEN,
    ENOTSUPP,
    BtfLoadAttr,
    Cmd,
    GetIdAttr,
    InfoAttr,
    LinkCreateAttr,
    LinkDetachAttr,
    LinkInfoStruct,
    LinkUpdateAttr,
    MapBatchAttr,
    MapCreateAttr,
    MapElemAttr,
    MapInfoStruct,
    ObjAttr,
    ProgInfoStruct,
    ProgLoadAttr,
    TestRunAttr,
)
from pyxdp.errors import BpfError

# __NR_bpf differs per architecture; these are the two we support.
_NR_BPF = {"x86_64": 321, "amd64": 321, "aarch64": 280, "arm64": 280}


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]


def _nr_bpf() -> int:
    machine = os.uname().machine.lower()     # platform.machine(), without its import
    try:
        return _NR_BPF[machine]
    except KeyError:
        raise OSError(_errno.ENOSYS, f"pyxdp does not know __NR_bpf on {machine}") from None


NR_BPF = _nr_bpf()
_CMD_NAMES = {int(c): f"BPF_{c.name}" for c in Cmd}


def bpf(cmd: int, attr: ctypes.Structure, size: int | None = None) -> int:
    """Run one ``bpf(cmd, &attr, sizeof(attr))``; returns the result (often a new fd).

    Raises :class:`BpfError` with the errno and the command name on any failure.
    ``EINTR`` is retried, except for ``BPF_PROG_TEST_RUN``: a signal can stop a test run
    part-way (frames already sent, maps already changed), so repeating it is not safe.
    """
    ref = ctypes.byref(attr)
    n = ctypes.sizeof(attr) if size is None else size
    while True:
        ret = _syscall(NR_BPF, cmd, ref, n)
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err != _errno.EINTR or cmd == Cmd.PROG_TEST_RUN:
            raise BpfError(err, _CMD_NAMES.get(int(cmd), f"cmd {int(cmd)}"))


def addr(buf: ctypes.Array | ctypes.Structure | None) -> int:
    """Address of a ctypes buffer as the ``__aligned_u64`` the kernel wants (0 for None)."""
    return 0 if buf is None else ctypes.addressof(buf)


def bytes_addr(data: bytes) -> int:
    """Address of an immutable ``bytes`` object's contents, for inputs the kernel only reads.

    Avoids copying large batch inputs; the caller must keep ``data`` alive during the call.
    """
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0


def obj_name(name: str) -> bytes:
    """A kernel object name: at most 15 characters of ``[A-Za-z0-9_.]`` (others become ``_``)."""
    clean = "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_" for c in name)
    return clean[:BPF_OBJ_NAME_LEN - 1].encode()


@functools.cache
def possible_cpus() -> int:
    """Number of *possible* CPUs (``/sys/devices/system/cpu/possible``, e.g. ``0-3,8``).

    Per-CPU map values come back with one slot per possible CPU, not per online CPU.
    """
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    return parse_cpu_list(text)


def parse_cpu_list(text: str) -> int:
    """Count of CPUs in a kernel CPU list (``"0-3,8"`` → 5).

    The kernel packs per-CPU values with ``for_each_possible_cpu``, one slot after the
    other, so a sparse mask has as many slots as CPUs in it, not ``max index + 1``.
    """
    count = 0
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise ValueError(f"bad CPU range {part!r} in {text!r}")
        count += last - first + 1
    if count == 0:
        raise ValueError(f"empty CPU list {text!r}")
    return count


__all__ = [
    "BPF_OBJ_NAME_LEN", "ENOTSUPP", "NR_BPF", "BtfLoadAttr", "GetIdAttr", "InfoAttr",
    "LinkCreateAttr", "LinkDetachAttr", "LinkInfoStruct", "LinkUpdateAttr", "MapBatchAttr",
    "MapCreateAttr", "MapElemAttr", "MapInfoStruct", "ObjAttr", "ProgInfoStruct",
    "ProgLoadAttr", "TestRunAttr", "addr", "bpf", "bytes_addr", "obj_name", "parse_cpu_list",
    "possible_cpus",
]

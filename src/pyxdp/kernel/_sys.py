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
import platform

from pyxdp._uapi import Cmd
from pyxdp.errors import BpfError

# __NR_bpf differs per architecture; these are the two we support.
_NR_BPF = {"x86_64": 321, "amd64": 321, "aarch64": 280, "arm64": 280}
ENOTSUPP = 524  # kernel-internal "operation not supported", leaks out of bpf()
BPF_OBJ_NAME_LEN = 16

_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]


def _nr_bpf() -> int:
    machine = platform.machine().lower()
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


# -- attr layouts (uapi linux/bpf.h, union bpf_attr) -------------------------------------------
class MapCreateAttr(ctypes.Structure):
    _fields_ = [
        ("map_type", _u32), ("key_size", _u32), ("value_size", _u32), ("max_entries", _u32),
        ("map_flags", _u32), ("inner_map_fd", _u32), ("numa_node", _u32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("map_ifindex", _u32),
        ("btf_fd", _u32), ("btf_key_type_id", _u32), ("btf_value_type_id", _u32),
        ("btf_vmlinux_value_type_id", _u32), ("map_extra", _u64),
    ]


class MapElemAttr(ctypes.Structure):
    """BPF_MAP_{LOOKUP,UPDATE,DELETE}_ELEM, GET_NEXT_KEY (value doubles as next_key), FREEZE."""

    _fields_ = [("map_fd", _u32), ("key", _u64), ("value", _u64), ("flags", _u64)]


class MapBatchAttr(ctypes.Structure):
    _fields_ = [
        ("in_batch", _u64), ("out_batch", _u64), ("keys", _u64), ("values", _u64),
        ("count", _u32), ("map_fd", _u32), ("elem_flags", _u64), ("flags", _u64),
    ]


class ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", _u32), ("insn_cnt", _u32), ("insns", _u64), ("license", _u64),
        ("log_level", _u32), ("log_size", _u32), ("log_buf", _u64),
        ("kern_version", _u32), ("prog_flags", _u32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("prog_ifindex", _u32),
        ("expected_attach_type", _u32), ("prog_btf_fd", _u32), ("func_info_rec_size", _u32),
        ("func_info", _u64), ("func_info_cnt", _u32), ("line_info_rec_size", _u32),
        ("line_info", _u64), ("line_info_cnt", _u32), ("attach_btf_id", _u32),
        ("attach_prog_fd", _u32), ("core_relo_cnt", _u32), ("fd_array", _u64),
        ("core_relos", _u64), ("core_relo_rec_size", _u32),
        ("log_true_size", _u32),  # out (Linux 6.4+): the log size the verifier needed
    ]


class ObjAttr(ctypes.Structure):
    """BPF_OBJ_PIN / BPF_OBJ_GET."""

    _fields_ = [("pathname", _u64), ("bpf_fd", _u32), ("file_flags", _u32)]


class TestRunAttr(ctypes.Structure):
    __test__ = False  # not a pytest class
    _fields_ = [
        ("prog_fd", _u32), ("retval", _u32), ("data_size_in", _u32), ("data_size_out", _u32),
        ("data_in", _u64), ("data_out", _u64), ("repeat", _u32), ("duration", _u32),
        ("ctx_size_in", _u32), ("ctx_size_out", _u32), ("ctx_in", _u64), ("ctx_out", _u64),
        ("flags", _u32), ("cpu", _u32), ("batch_size", _u32),
    ]


class GetIdAttr(ctypes.Structure):
    """BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID (``start_id`` is also prog/map/link id)."""

    _fields_ = [("start_id", _u32), ("next_id", _u32), ("open_flags", _u32)]


class InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", _u32), ("info_len", _u32), ("info", _u64)]


class LinkCreateAttr(ctypes.Structure):
    _fields_ = [("prog_fd", _u32), ("target_fd", _u32), ("attach_type", _u32), ("flags", _u32)]


class LinkUpdateAttr(ctypes.Structure):
    _fields_ = [("link_fd", _u32), ("new_prog_fd", _u32), ("flags", _u32),
                ("old_prog_fd", _u32)]


class LinkDetachAttr(ctypes.Structure):
    _fields_ = [("link_fd", _u32)]


class BtfLoadAttr(ctypes.Structure):
    _fields_ = [("btf", _u64), ("btf_log_buf", _u64), ("btf_size", _u32),
                ("btf_log_size", _u32), ("btf_log_level", _u32)]


# -- info layouts (struct bpf_prog_info / bpf_map_info / bpf_link_info) ------------------------
class ProgInfoStruct(ctypes.Structure):
    _fields_ = [
        ("type", _u32), ("id", _u32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", _u32), ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64), ("xlated_prog_insns", _u64), ("load_time", _u64),
        ("created_by_uid", _u32), ("nr_map_ids", _u32), ("map_ids", _u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("ifindex", _u32),
        ("gpl_compatible", _u32),  # bit 0; the other 31 bits are padding
        ("netns_dev", _u64), ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32), ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64), ("jited_func_lens", _u64),
        ("btf_id", _u32), ("func_info_rec_size", _u32), ("func_info", _u64),
        ("nr_func_info", _u32), ("nr_line_info", _u32), ("line_info", _u64),
        ("jited_line_info", _u64), ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32), ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32), ("prog_tags", _u64),
        ("run_time_ns", _u64), ("run_cnt", _u64), ("recursion_misses", _u64),
        ("verified_insns", _u32), ("attach_btf_obj_id", _u32), ("attach_btf_id", _u32),
        ("_pad", _u32),
    ]


class MapInfoStruct(ctypes.Structure):
    _fields_ = [
        ("type", _u32), ("id", _u32), ("key_size", _u32), ("value_size", _u32),
        ("max_entries", _u32), ("map_flags", _u32), ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32), ("btf_vmlinux_value_type_id", _u32),
        ("netns_dev", _u64), ("netns_ino", _u64),
        ("btf_id", _u32), ("btf_key_type_id", _u32), ("btf_value_type_id", _u32),
        ("_pad", _u32), ("map_extra", _u64),
    ]


class LinkInfoStruct(ctypes.Structure):
    """``bpf_link_info`` head; the per-type union (8-aligned) is kept as raw words."""

    _fields_ = [("type", _u32), ("id", _u32), ("prog_id", _u32), ("_pad", _u32),
                ("u", _u32 * 12)]


__all__ = [
    "BPF_OBJ_NAME_LEN", "ENOTSUPP", "NR_BPF", "BtfLoadAttr", "GetIdAttr", "InfoAttr",
    "LinkCreateAttr", "LinkDetachAttr", "LinkInfoStruct", "LinkUpdateAttr", "MapBatchAttr",
    "MapCreateAttr", "MapElemAttr", "MapInfoStruct", "ObjAttr", "ProgInfoStruct",
    "ProgLoadAttr", "TestRunAttr", "addr", "bpf", "bytes_addr", "obj_name", "parse_cpu_list",
    "possible_cpus",
]

"""Feature probes: what does the *running* kernel support?

Each probe asks the kernel directly (create a tiny map, load a tiny program) instead of
guessing from the version number, because distributions backport and configs differ.
Results are cached per process.  Helper probes classify the verifier log the way
``bpftool feature probe`` does: "invalid func"/"unknown func" mean the helper is absent;
any other rejection (bad arguments) means it exists.
"""

from __future__ import annotations

import errno as _errno
import functools
import mmap
import os
import struct
from typing import Any

from pyxdp.abi import AttachType, Cmd, MapType, ProgType
from pyxdp.errors import BpfError, NotSupportedError, VerifierError
from pyxdp.isa import HELPER_NAMES, Class, Instruction, JmpOp, Source
from pyxdp.isa._opcodes import AluOp
from pyxdp.kernel._fd import Fd
from pyxdp.kernel._map import BPF_F_MMAPABLE, BPF_F_NO_PREALLOC
from pyxdp.kernel._prog import Program
from pyxdp.kernel._sys import ENOTSUPP, BtfLoadAttr, MapCreateAttr, bpf, bytes_addr

_MOV_R0_0 = Instruction(Class.ALU64 | AluOp.MOV | Source.K, dst=0, imm=0)
_EXIT = Instruction(Class.JMP | JmpOp.EXIT)
_ABSENT_HELPER = ("invalid func ", "unknown func ", "program of this type cannot use helper ")


# -- program types -----------------------------------------------------------------------------
def _prog_probe_args(ptype: ProgType) -> tuple[dict[str, Any], int | None, str | None]:
    """Load arguments for probing ``ptype``, and the (errno, log text) that still proves
    the type exists for types that cannot load without a real attach target."""
    eat = {
        ProgType.CGROUP_SOCK_ADDR: AttachType.CGROUP_INET4_CONNECT,
        ProgType.CGROUP_SOCKOPT: AttachType.CGROUP_GETSOCKOPT,
        ProgType.SK_LOOKUP: AttachType.SK_LOOKUP,
        ProgType.LIRC_MODE2: AttachType.LIRC_MODE2,
        ProgType.TRACING: AttachType.TRACE_FENTRY,
        ProgType.LSM: AttachType.LSM_MAC,
        # the kernel refuses a netfilter program whose expected attach type is not
        # BPF_NETFILTER (bpf_prog_load_check_attach), so without it the probe says "absent"
        ProgType.NETFILTER: AttachType.NETFILTER,
    }.get(ptype)
    kwargs: dict[str, Any] = {"expected_attach_type": eat}
    if ptype in (ProgType.TRACING, ProgType.LSM):
        kwargs["attach_btf_id"] = 1
        return kwargs, _errno.EINVAL, "attach_btf_id 1 is not a function"
    if ptype == ProgType.EXT:
        kwargs["attach_btf_id"] = 1
        return kwargs, _errno.EINVAL, "Cannot replace kernel functions"
    if ptype == ProgType.STRUCT_OPS:
        kwargs["attach_btf_id"] = 1
        return kwargs, ENOTSUPP, "is not a supported struct"
    if ptype == ProgType.SYSCALL:
        kwargs["flags"] = 1 << 4  # BPF_F_SLEEPABLE
    if ptype == ProgType.KPROBE:
        kwargs["kern_version"] = _kernel_version_code()
    return kwargs, None, None


def _kernel_version_code() -> int:
    parts = ([*os.uname().release.split("-")[0].split("."), "0", "0"])[:3]
    nums = [int("".join(c for c in p if c.isdigit()) or 0) for p in parts]
    return (nums[0] << 16) | (nums[1] << 8) | min(nums[2], 255)


def _load_probe(ptype: ProgType, insns: list[Instruction],
                log: bool) -> tuple[bool, BpfError | None]:
    kwargs, _, _ = _prog_probe_args(ptype)
    try:
        prog = Program.load(insns, type=ptype, license="GPL", name="pyxdp_probe",
                            log_level=1 if log else 0, **kwargs)
    except BpfError as e:
        return False, e
    prog.close()
    return True, None


@functools.cache
def has_prog_type(ptype: ProgType) -> bool:
    """Whether the kernel can load programs of type ``ptype``."""
    ptype = ProgType(ptype)
    if ptype == ProgType.UNSPEC:
        return False
    _, want_errno, want_msg = _prog_probe_args(ptype)
    ok, err = _load_probe(ptype, [_MOV_R0_0, _EXIT], log=want_msg is not None)
    if ok:
        return True
    assert err is not None
    if want_errno is not None and err.errno == want_errno:
        log = err.log if isinstance(err, VerifierError) else ""
        return want_msg is None or want_msg in log
    return False


# -- map types -------------------------------------------------------------------------------
def _tiny_btf() -> bytes:
    """BTF with ``[1] int`` and ``[2] struct val { int v; }``: the least a local-storage
    map needs (its key must be a BTF int, its value a BTF type)."""
    strings = b"\0int\0val\0v\0"
    types = (struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", 32)          # INT int
             + struct.pack("<III", 5, (4 << 24) | 1, 4) + struct.pack("<III", 9, 1, 0))
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                         len(strings))
    return header + types + strings


def load_btf(blob: bytes) -> Fd:
    """Load raw BTF into the kernel (BPF_BTF_LOAD)."""
    return Fd(bpf(Cmd.BTF_LOAD, BtfLoadAttr(btf=bytes_addr(blob), btf_size=len(blob))))


def _create_probe_map(mtype: MapType) -> tuple[bool, int]:
    attr = MapCreateAttr(map_type=mtype, key_size=4, value_size=4, max_entries=1)
    keep: list[Fd] = []
    expect = 0
    try:
        if mtype == MapType.LPM_TRIE:
            attr.key_size, attr.value_size, attr.map_flags = 8, 8, BPF_F_NO_PREALLOC
        elif mtype == MapType.STACK_TRACE:
            attr.value_size = 8
        elif mtype in (MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER):
            attr.key_size = 0
        elif mtype in (MapType.RINGBUF, MapType.USER_RINGBUF):
            attr.key_size = attr.value_size = 0
            attr.max_entries = mmap.PAGESIZE
        elif mtype in (MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE):
            attr.key_size, attr.max_entries = 16, 0  # struct bpf_cgroup_storage_key
        elif mtype in (MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE,
                       MapType.CGRP_STORAGE):
            # local storage maps (cgroup storage too, 6.2) must describe key and value in
            # BTF, be unpreallocated and have max_entries 0: plain sizes get EINVAL
            btf = load_btf(_tiny_btf())
            keep.append(btf)
            attr.btf_fd, attr.btf_key_type_id, attr.btf_value_type_id = btf.fileno(), 1, 2
            attr.max_entries, attr.map_flags = 0, BPF_F_NO_PREALLOC
        elif mtype in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            inner = Fd(bpf(Cmd.MAP_CREATE, MapCreateAttr(map_type=MapType.ARRAY, key_size=4,
                                                         value_size=4, max_entries=1)))
            keep.append(inner)
            attr.inner_map_fd = inner.fileno()
        elif mtype == MapType.ARENA:
            # an arena (6.9) is pages, not elements: no key/value, max_entries counts pages,
            # and it exists only to be mmap()ed, so BPF_F_MMAPABLE is mandatory; map_extra
            # is the user address to place it at (0: anywhere)
            attr.key_size = attr.value_size = 0
            attr.map_flags, attr.map_extra = BPF_F_MMAPABLE, 0
        elif mtype == MapType.STRUCT_OPS:
            attr.btf_vmlinux_value_type_id = 1  # not a struct_ops type: ENOTSUPP if known
            expect = ENOTSUPP
        try:
            Fd(bpf(Cmd.MAP_CREATE, attr)).close()
            return True, 0
        except BpfError as e:
            return bool(expect) and e.errno == expect, e.errno
    finally:
        for fd in keep:
            fd.close()


@functools.cache
def has_map_type(mtype: MapType) -> bool:
    """Whether the kernel can create maps of type ``mtype``."""
    mtype = MapType(mtype)
    return mtype != MapType.UNSPEC and _create_probe_map(mtype)[0]


# -- helpers -------------------------------------------------------------------------------
@functools.cache
def has_helper(ptype: ProgType, helper_id: int) -> bool:
    """Whether programs of type ``ptype`` may call helper ``helper_id``."""
    ptype = ProgType(ptype)
    if helper_id <= 0 or not has_prog_type(ptype):
        return False
    call = Instruction(Class.JMP | JmpOp.CALL, imm=helper_id)
    ok, err = _load_probe(ptype, [call, _MOV_R0_0, _EXIT], log=True)
    if ok:
        return True
    log = err.log if isinstance(err, VerifierError) else ""
    if not log:
        return False
    return not any(marker in log for marker in _ABSENT_HELPER)


def require_prog_type(ptype: ProgType, min_kernel: str | None = None) -> None:
    """Raise :class:`NotSupportedError` unless ``ptype`` programs can be loaded."""
    if not has_prog_type(ptype):
        raise NotSupportedError(f"program type {ProgType(ptype).name}", min_kernel)


def require_map_type(mtype: MapType, min_kernel: str | None = None) -> None:
    """Raise :class:`NotSupportedError` unless ``mtype`` maps can be created."""
    if not has_map_type(mtype):
        raise NotSupportedError(f"map type {MapType(mtype).name}", min_kernel)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def probe_all(helper_prog_types: tuple[ProgType, ...] = (ProgType.XDP,)) -> dict[str, Any]:
    """Everything the kernel supports, like ``bpftool feature probe`` (as plain data).

    Helpers are probed only for ``helper_prog_types`` (each type costs one load per helper).
    """
    prog_types = {p.name: has_prog_type(p) for p in ProgType if p != ProgType.UNSPEC}
    map_types = {m.name: has_map_type(m) for m in MapType if m != MapType.UNSPEC}
    helpers: dict[str, list[str]] = {}
    for ptype in helper_prog_types:
        helpers[ProgType(ptype).name] = [
            name for hid, name in sorted(HELPER_NAMES.items()) if has_helper(ptype, hid)]
    return {
        "kernel": os.uname().release,
        "system": {
            "jit_enable": _read("/proc/sys/net/core/bpf_jit_enable"),
            "unprivileged_bpf_disabled": _read("/proc/sys/kernel/unprivileged_bpf_disabled"),
            "btf_vmlinux": os.path.exists("/sys/kernel/btf/vmlinux"),
        },
        "prog_types": prog_types,
        "map_types": map_types,
        "helpers": helpers,
    }


def clear_cache() -> None:
    """Forget cached probe results (tests, or after loading a kernel module)."""
    for f in (has_prog_type, has_map_type, has_helper):
        f.cache_clear()


__all__ = [
    "clear_cache", "has_helper", "has_map_type", "has_prog_type", "load_btf", "probe_all",
    "require_map_type", "require_prog_type",
]

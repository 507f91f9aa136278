"""Object information (BPF_OBJ_GET_INFO_BY_FD) and enumeration of everything loaded
(BPF_*_GET_NEXT_ID + BPF_*_GET_FD_BY_ID), like ``bpftool prog show`` / ``map show``.

Info structs grow with every kernel release; the kernel fills at most ``info_len`` bytes
and tells us how much it knows, so one fixed ctypes layout serves old and new kernels.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from pyxdp.abi import Cmd, LinkType, MapType, ProgType
from pyxdp.errors import BpfError
from pyxdp.kernel._fd import Fd, fd_number
from pyxdp.kernel._sys import (
    GetIdAttr,
    InfoAttr,
    LinkInfoStruct,
    MapInfoStruct,
    ProgInfoStruct,
    addr,
    bpf,
)

S = TypeVar("S", bound=ctypes.Structure)
T = TypeVar("T")


def _enum(kind: type, value: int) -> int:
    """The enum member when pyxdp knows the value, else the bare int (newer kernels)."""
    try:
        return kind(value)
    except ValueError:
        return value


def get_info(fd: object, struct: S) -> S:
    """Fill ``struct`` via BPF_OBJ_GET_INFO_BY_FD (pointers set in it are honoured)."""
    attr = InfoAttr(bpf_fd=fd_number(fd), info_len=ctypes.sizeof(struct), info=addr(struct))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    return struct


@dataclass(frozen=True)
class MapInfo:
    type: MapType | int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str
    btf_id: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    map_extra: int = 0
    ifindex: int = 0


def map_info(fd: object) -> MapInfo:
    s = get_info(fd, MapInfoStruct())
    return MapInfo(
        type=_enum(MapType, s.type), id=s.id, key_size=s.key_size, value_size=s.value_size,
        max_entries=s.max_entries, flags=s.map_flags, name=s.name.decode(errors="replace"),
        btf_id=s.btf_id, btf_key_type_id=s.btf_key_type_id,
        btf_value_type_id=s.btf_value_type_id, map_extra=s.map_extra, ifindex=s.ifindex)


@dataclass(frozen=True)
class ProgInfo:
    type: ProgType | int
    id: int
    name: str
    tag: str                      # hex, as bpftool prints it
    jited_size: int
    xlated_size: int
    load_time_ns: int             # since boot (CLOCK_BOOTTIME), as the kernel reports it
    created_by_uid: int
    map_ids: list[int] = field(default_factory=list)
    btf_id: int = 0
    gpl_compatible: bool = False
    run_time_ns: int = 0
    run_cnt: int = 0
    verified_insns: int = 0

    @property
    def loaded_at(self) -> float:
        """Wall-clock load time (seconds since the epoch)."""
        boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        return boot + self.load_time_ns / 1e9


def prog_info(fd: object) -> ProgInfo:
    s = get_info(fd, ProgInfoStruct())
    map_ids: list[int] = []
    if s.nr_map_ids:  # second call with a buffer for the ids, now that we know how many
        ids = (ctypes.c_uint32 * s.nr_map_ids)()
        s2 = ProgInfoStruct(nr_map_ids=s.nr_map_ids, map_ids=addr(ids))
        get_info(fd, s2)
        map_ids = list(ids[:min(s.nr_map_ids, s2.nr_map_ids)])
    return ProgInfo(
        type=_enum(ProgType, s.type), id=s.id, name=s.name.decode(errors="replace"),
        tag=bytes(s.tag).hex(), jited_size=s.jited_prog_len, xlated_size=s.xlated_prog_len,
        load_time_ns=s.load_time, created_by_uid=s.created_by_uid, map_ids=map_ids,
        btf_id=s.btf_id, gpl_compatible=bool(s.gpl_compatible & 1),
        run_time_ns=s.run_time_ns, run_cnt=s.run_cnt, verified_insns=s.verified_insns)


def prog_xlated(fd: object) -> bytes:
    """The program as the verifier rewrote it (raw instruction bytes)."""
    s = get_info(fd, ProgInfoStruct())
    buf = ctypes.create_string_buffer(s.xlated_prog_len)
    s2 = get_info(fd, ProgInfoStruct(xlated_prog_len=s.xlated_prog_len,
                                     xlated_prog_insns=addr(buf)))
    return buf.raw[:s2.xlated_prog_len]


@dataclass(frozen=True)
class LinkInfo:
    type: LinkType | int
    id: int
    prog_id: int
    ifindex: int = 0              # XDP links: the interface


def link_info(fd: object) -> LinkInfo:
    s = get_info(fd, LinkInfoStruct())
    ifindex = s.u[0] if s.type == LinkType.XDP else 0
    return LinkInfo(type=_enum(LinkType, s.type), id=s.id, prog_id=s.prog_id, ifindex=ifindex)


# -- enumeration -----------------------------------------------------------------------------
def next_ids(cmd: Cmd) -> Iterator[int]:
    """Ids of live objects via ``cmd`` (PROG/MAP/LINK/BTF_GET_NEXT_ID), ascending."""
    attr = GetIdAttr(start_id=0)
    while True:
        try:
            bpf(cmd, attr)
        except BpfError as e:
            if e.errno == _errno.ENOENT:
                return
            raise
        yield attr.next_id
        attr.start_id = attr.next_id


def fd_by_id(cmd: Cmd, obj_id: int) -> Fd:
    """An owned fd for the object with ``obj_id`` (``ENOENT`` if it is gone)."""
    return Fd(bpf(cmd, GetIdAttr(start_id=obj_id)))


def _list(next_cmd: Cmd, fd_cmd: Cmd, info: Callable[[Fd], T]) -> list[T]:
    out: list[T] = []
    for obj_id in next_ids(next_cmd):
        try:
            fd = fd_by_id(fd_cmd, obj_id)
        except BpfError as e:
            if e.errno == _errno.ENOENT:  # unloaded between the two calls
                continue
            raise
        with fd:
            out.append(info(fd))
    return out


def list_programs() -> list[ProgInfo]:
    """Every program loaded in the kernel (like ``bpftool prog show``)."""
    return _list(Cmd.PROG_GET_NEXT_ID, Cmd.PROG_GET_FD_BY_ID, prog_info)


def list_maps() -> list[MapInfo]:
    """Every map in the kernel (like ``bpftool map show``)."""
    return _list(Cmd.MAP_GET_NEXT_ID, Cmd.MAP_GET_FD_BY_ID, map_info)


def list_links() -> list[LinkInfo]:
    """Every link in the kernel (like ``bpftool link show``)."""
    return _list(Cmd.LINK_GET_NEXT_ID, Cmd.LINK_GET_FD_BY_ID, link_info)


__all__ = [
    "LinkInfo", "MapInfo", "ProgInfo", "fd_by_id", "get_info", "link_info", "list_links",
    "list_maps", "list_programs", "map_info", "next_ids", "prog_info", "prog_xlated",
]

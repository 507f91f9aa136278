"""The kernel ABI in one place: every uapi enum, flag, constant and ``bpf_attr`` layout
pyxdp uses, written once (values are ABI and never change).

Enum names drop the kernel's prefixes (``MapType.HASH`` is ``BPF_MAP_TYPE_HASH``,
``ProgType.XDP`` is ``BPF_PROG_TYPE_XDP``); flags keep their kernel spelling
(``XDP_FLAGS_DRV_MODE``, ``BPF_F_NO_PREALLOC``) so they can be looked up in ``linux/bpf.h``
and ``linux/if_link.h``.  The instruction encoding (opcodes, ``PseudoSrc``) is the ISA's and
lives in :mod:`pyxdp.isa`.  This module is pure: it defines values and ctypes layouts and
never calls the kernel.
"""

from __future__ import annotations

import ctypes
from enum import IntEnum, IntFlag


class Cmd(IntEnum):
    """Commands of the ``bpf()`` system call."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_TEST_RUN = 10
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    PROG_QUERY = 16
    RAW_TRACEPOINT_OPEN = 17
    BTF_LOAD = 18
    BTF_GET_FD_BY_ID = 19
    TASK_FD_QUERY = 20
    MAP_LOOKUP_AND_DELETE_ELEM = 21
    MAP_FREEZE = 22
    BTF_GET_NEXT_ID = 23
    MAP_LOOKUP_BATCH = 24
    MAP_LOOKUP_AND_DELETE_BATCH = 25
    MAP_UPDATE_BATCH = 26
    MAP_DELETE_BATCH = 27
    LINK_CREATE = 28
    LINK_UPDATE = 29
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    ENABLE_STATS = 32
    ITER_CREATE = 33
    LINK_DETACH = 34
    PROG_BIND_MAP = 35


class MapType(IntEnum):
    """Map types."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    # newer than the Debian 12 headers this table was generated from (values from 6.18 uapi)
    CGRP_STORAGE = 32
    ARENA = 33


class ProgType(IntEnum):
    """Program types."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32  # 6.4


class AttachType(IntEnum):
    """Attach types (``expected_attach_type``)."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    # newer than the Debian 12 headers this table was generated from (values from 6.18 uapi)
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53
    NETKIT_PRIMARY = 54
    NETKIT_PEER = 55
    TRACE_KPROBE_SESSION = 56
    TRACE_UPROBE_SESSION = 57


class LinkType(IntEnum):
    """Link types."""

    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8
    STRUCT_OPS = 9
    # newer than the Debian 12 headers (values from 6.18 uapi)
    NETFILTER = 10
    TCX = 11
    UPROBE_MULTI = 12
    NETKIT = 13
    SOCKMAP = 14


class XdpAction(IntEnum):
    """An XDP program's verdict (``enum xdp_action``)."""

    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4


class UpdateFlags(IntFlag):
    """Flags of ``BPF_MAP_UPDATE_ELEM`` (and the batch variants' ``elem_flags``)."""

    ANY = 0
    NOEXIST = 1
    EXIST = 2
    F_LOCK = 4


# -- errno values the kernel leaks that Python's errno module does not know -----------------
ENOTSUPP = 524        # kernel-internal "operation not supported by this kernel"
CAP_SYS_ADMIN = 21    # linux/capability.h bits of CapEff that let bpf() through
CAP_BPF = 39

# -- map_flags (BPF_MAP_CREATE) --------------------------------------------------------------
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1    # LRU maps: one LRU list per CPU (no shared list lock)
BPF_F_RDONLY = 1 << 3          # also file_flags of BPF_OBJ_GET / *_GET_FD_BY_ID
BPF_F_WRONLY = 1 << 4
BPF_F_RDONLY_PROG = 1 << 7     # programs may only read the map (stores fail verification)
BPF_F_MMAPABLE = 1 << 10       # array values (or arena pages) may be mmap()ed by user space
BPF_F_INNER_MAP = 1 << 12      # inner-map template: array inner maps may differ in max_entries

# -- prog_flags (BPF_PROG_LOAD) ----------------------------------------------------------------
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5

# -- BPF_LINK_UPDATE / BPF_PROG_ATTACH ----------------------------------------------------------
BPF_F_REPLACE = 1 << 2

# -- BPF_PROG_TEST_RUN flags ------------------------------------------------------------------
BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2

# -- BPF ring buffer records (linux/bpf.h) -----------------------------------------------------
BPF_RINGBUF_BUSY_BIT = 1 << 31     # the producer has not submitted the record yet
BPF_RINGBUF_DISCARD_BIT = 1 << 30  # submitted as discarded: skip it
BPF_RINGBUF_HDR_SZ = 8             # u32 length (with the bits above) + u32 page offset

# -- BPF_ENABLE_STATS ---------------------------------------------------------------------------
BPF_STATS_RUN_TIME = 0

# -- XDP (linux/if_link.h, linux/bpf.h) ---------------------------------------------------------
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
XDP_PACKET_HEADROOM = 256      # headroom in front of every XDP frame

# -- bpffs and object names ------------------------------------------------------------------------
BPF_FS_MAGIC = 0xCAFE4A11
BPF_OBJ_NAME_LEN = 16

# -- libbpf's ELF conventions (not kernel ABI, but ABI of every clang-built object) --------------
LIBBPF_PIN_NONE = 0
LIBBPF_PIN_BY_NAME = 1

# -- rtnetlink (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h) ------------------------------
NETLINK_ROUTE = 0
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
SOL_NETLINK = 270
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_SETLINK = 19
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_ACK_TLVS = 0x200
NLA_F_NESTED = 0x8000
NLMSGERR_ATTR_MSG = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_EXT_MASK = 29
IFLA_XDP = 43
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFLA_XDP_FD = 1
IFLA_XDP_ATTACHED = 2
IFLA_XDP_FLAGS = 3
IFLA_XDP_PROG_ID = 4
IFLA_XDP_DRV_PROG_ID = 5
IFLA_XDP_SKB_PROG_ID = 6
IFLA_XDP_HW_PROG_ID = 7
IFLA_XDP_EXPECTED_FD = 8

_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64


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


class ProgBindMapAttr(ctypes.Structure):
    """``bpf_attr.prog_bind_map`` (BPF_PROG_BIND_MAP, 5.10)."""

    _fields_ = [("prog_fd", _u32), ("map_fd", _u32), ("flags", _u32)]


class EnableStatsAttr(ctypes.Structure):
    """``bpf_attr.enable_stats`` (BPF_ENABLE_STATS)."""

    _fields_ = [("type", _u32)]


class ElemPtrAttr(ctypes.Structure):
    """Same layout as :class:`MapElemAttr`, but ``key``/``value`` are ``char *`` fields so a
    ``bytes`` key can be assigned directly (ctypes keeps it alive) without an address lookup.
    Valid on the 64-bit targets we support, where a pointer is an 8-byte aligned u64."""

    _fields_ = [("map_fd", _u32), ("key", ctypes.c_char_p), ("value", ctypes.c_char_p),
                ("flags", _u64)]


class XdpMd(ctypes.Structure):
    """``struct xdp_md``: the XDP context as a test run takes and returns it.

    In a test run ``data``/``data_end`` are offsets (``data_meta`` <= ``data``), and
    ``ingress_ifindex``/``rx_queue_index`` select a real device queue (both 0: none).
    """

    _fields_ = [("data", _u32), ("data_end", _u32), ("data_meta", _u32),
                ("ingress_ifindex", _u32), ("rx_queue_index", _u32), ("egress_ifindex", _u32)]


__all__ = [
    "AttachType",
    "BPF_FS_MAGIC",
    "BPF_F_INNER_MAP",
    "BPF_F_MMAPABLE",
    "BPF_F_NO_COMMON_LRU",
    "BPF_F_NO_PREALLOC",
    "BPF_F_RDONLY",
    "BPF_F_RDONLY_PROG",
    "BPF_F_REPLACE",
    "BPF_F_SLEEPABLE",
    "BPF_F_TEST_RUN_ON_CPU",
    "BPF_F_TEST_SKB_CHECKSUM_COMPLETE",
    "BPF_F_TEST_XDP_LIVE_FRAMES",
    "BPF_F_WRONLY",
    "BPF_F_XDP_HAS_FRAGS",
    "BPF_OBJ_NAME_LEN",
    "BPF_RINGBUF_BUSY_BIT",
    "BPF_RINGBUF_DISCARD_BIT",
    "BPF_RINGBUF_HDR_SZ",
    "BPF_STATS_RUN_TIME",
    "BtfLoadAttr",
    "Cmd",
    "CAP_BPF",
    "CAP_SYS_ADMIN",
    "ENOTSUPP",
    "ElemPtrAttr",
    "EnableStatsAttr",
    "GetIdAttr",
    "IFLA_EXT_MASK",
    "IFLA_IFNAME",
    "IFLA_INFO_KIND",
    "IFLA_LINKINFO",
    "IFLA_MTU",
    "IFLA_XDP",
    "IFLA_XDP_ATTACHED",
    "IFLA_XDP_DRV_PROG_ID",
    "IFLA_XDP_EXPECTED_FD",
    "IFLA_XDP_FD",
    "IFLA_XDP_FLAGS",
    "IFLA_XDP_HW_PROG_ID",
    "IFLA_XDP_PROG_ID",
    "IFLA_XDP_SKB_PROG_ID",
    "InfoAttr",
    "LIBBPF_PIN_BY_NAME",
    "LIBBPF_PIN_NONE",
    "LinkCreateAttr",
    "LinkDetachAttr",
    "LinkInfoStruct",
    "LinkType",
    "LinkUpdateAttr",
    "MapBatchAttr",
    "MapCreateAttr",
    "MapElemAttr",
    "MapInfoStruct",
    "MapType",
    "NETLINK_EXT_ACK",
    "NETLINK_GET_STRICT_CHK",
    "NETLINK_ROUTE",
    "NLA_F_NESTED",
    "NLMSGERR_ATTR_MSG",
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "NLM_F_ACK",
    "NLM_F_ACK_TLVS",
    "NLM_F_REQUEST",
    "ObjAttr",
    "ProgBindMapAttr",
    "ProgInfoStruct",
    "ProgLoadAttr",
    "ProgType",
    "RTEXT_FILTER_SKIP_STATS",
    "RTM_GETLINK",
    "RTM_NEWLINK",
    "RTM_SETLINK",
    "SOL_NETLINK",
    "TestRunAttr",
    "UpdateFlags",
    "XDP_FLAGS_DRV_MODE",
    "XDP_FLAGS_HW_MODE",
    "XDP_FLAGS_REPLACE",
    "XDP_FLAGS_SKB_MODE",
    "XDP_FLAGS_UPDATE_IF_NOEXIST",
    "XDP_PACKET_HEADROOM",
    "XdpAction",
    "XdpMd",
]


# -- AF_XDP sockets (linux/if_xdp.h, linux/socket.h) ----------------------------------------
AF_XDP = 44
SOL_XDP = 283
# setsockopt/getsockopt names at SOL_XDP
XDP_MMAP_OFFSETS = 1
XDP_RX_RING = 2
XDP_TX_RING = 3
XDP_UMEM_REG = 4
XDP_UMEM_FILL_RING = 5
XDP_UMEM_COMPLETION_RING = 6
XDP_STATISTICS = 7
XDP_OPTIONS = 8
# struct sockaddr_xdp.sxdp_flags
XDP_SHARED_UMEM = 1 << 0
XDP_COPY = 1 << 1
XDP_ZEROCOPY = 1 << 2
XDP_USE_NEED_WAKEUP = 1 << 3
# struct xdp_umem_reg.flags
XDP_UMEM_UNALIGNED_CHUNK_FLAG = 1 << 0
# struct xdp_ring_offset.flags word
XDP_RING_NEED_WAKEUP = 1 << 0
# struct xdp_options.flags
XDP_OPTIONS_ZEROCOPY = 1 << 0
# mmap page offsets of the four rings
XDP_PGOFF_RX_RING = 0
XDP_PGOFF_TX_RING = 0x80000000
XDP_UMEM_PGOFF_FILL_RING = 0x100000000
XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000
XDP_UMEM_MIN_CHUNK_SIZE = 2048  # net/xdp/xdp_umem.c (not in the uapi header)
XDP_DESC_SIZE = 16              # struct xdp_desc {u64 addr; u32 len; u32 options}
XDP_RING_OFFSET_SIZE = 32       # struct xdp_ring_offset: four u64
SOCKADDR_XDP_FMT = "=HHIII"     # family, flags, ifindex, queue_id, shared_umem_fd
XDP_UMEM_REG_FMT = "=QQIIII"    # addr, len, chunk_size, headroom, flags, tx_metadata_len
XDP_STATISTICS_FIELDS = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
                         "rx_fill_ring_empty_descs", "tx_ring_empty_descs")

__all__ += [
    "AF_XDP", "SOCKADDR_XDP_FMT", "SOL_XDP", "XDP_COPY", "XDP_DESC_SIZE", "XDP_MMAP_OFFSETS",
    "XDP_OPTIONS", "XDP_OPTIONS_ZEROCOPY", "XDP_PGOFF_RX_RING", "XDP_PGOFF_TX_RING",
    "XDP_RING_NEED_WAKEUP", "XDP_RING_OFFSET_SIZE", "XDP_RX_RING", "XDP_SHARED_UMEM",
    "XDP_STATISTICS", "XDP_STATISTICS_FIELDS", "XDP_TX_RING", "XDP_UMEM_COMPLETION_RING",
    "XDP_UMEM_FILL_RING", "XDP_UMEM_MIN_CHUNK_SIZE", "XDP_UMEM_PGOFF_COMPLETION_RING",
    "XDP_UMEM_PGOFF_FILL_RING", "XDP_UMEM_REG", "XDP_UMEM_REG_FMT",
    "XDP_UMEM_UNALIGNED_CHUNK_FLAG", "XDP_USE_NEED_WAKEUP", "XDP_ZEROCOPY",
]

"""The names a program module imports: ``from pyxdp.compiler.lang import *``.

Everything here is an ordinary Python object, so a program module imports and runs as
plain Python (the control plane imports it for its map declarations and structs); the
compiler reads the same objects to know types, maps and configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyxdp.abi import (
    BPF_F_MMAPABLE,
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    LIBBPF_PIN_BY_NAME,
    LIBBPF_PIN_NONE,
    MapType,
    UpdateFlags,
)
from pyxdp.compiler.headers import (
    ARP,
    GRE,
    GUE,
    ICMP,
    TCP,
    UDP,
    VLAN,
    Ethernet,
    ICMPv6,
    IPv4,
    IPv6,
    IPv6Ext,
)
from pyxdp.compiler.structs import FibParams, LpmKey4, LpmKey6, SpinLock, Struct
from pyxdp.compiler.types import (
    IntType,
    Type,
    be16,
    be32,
    be64,
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
)

# -- verdicts and well-known numbers ---------------------------------------------------------
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 0, 1, 2, 3, 4
TC_ACT_UNSPEC, TC_ACT_OK, TC_ACT_RECLASSIFY, TC_ACT_SHOT = -1, 0, 1, 2
TC_ACT_PIPE, TC_ACT_STOLEN, TC_ACT_REDIRECT = 3, 4, 7
ETH_P_IP, ETH_P_IPV6, ETH_P_ARP = 0x0800, 0x86DD, 0x0806
ETH_P_8021Q, ETH_P_8021AD = 0x8100, 0x88A8
IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_IPIP, IPPROTO_TCP, IPPROTO_UDP = 0, 1, 4, 6, 17
IPPROTO_IPV6, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_GRE = 41, 43, 44, 47
IPPROTO_ICMPV6, IPPROTO_NONE, IPPROTO_DSTOPTS = 58, 59, 60
BPF_ANY, BPF_NOEXIST, BPF_EXIST = UpdateFlags.ANY, UpdateFlags.NOEXIST, UpdateFlags.EXIST
PIN_NONE, PIN_BY_NAME = LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME   # map pinning, libbpf's values
BPF_FIB_LKUP_RET_SUCCESS = 0


# -- configuration ---------------------------------------------------------------------------
@dataclass
class Const:
    """A configuration constant in ``.rodata``: set it on the compiled object before load
    (``obj.set_config("NAME", 7)``); the verifier then sees it as a constant."""

    type: IntType
    default: int = 0
    name: str = ""


# -- maps ------------------------------------------------------------------------------------
@dataclass
class MapDecl:
    """A map declared at module level; ``name`` is the module attribute it is bound to."""

    kind: str
    map_type: MapType
    key: Any
    value: Any
    max_entries: int
    flags: int = 0
    name: str = ""
    pinning: int = 0          # PIN_BY_NAME: pinned under the loader's pin path, shared

    def key_type(self) -> Type:
        return _as_type(self.key)

    def value_type(self) -> Type:
        if self.map_type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            return u32                      # user space stores map fds, reads back ids
        return _as_type(self.value)

    @property
    def inner(self) -> MapDecl | None:
        """The inner map template of an ArrayOfMaps/HashOfMaps."""
        return self.value if isinstance(self.value, MapDecl) else None

    # runtime behaviour when a program module is imported normally
    def __set_name__(self, owner: Any, name: str) -> None:
        self.name = name


def _as_type(t: Any) -> Type:
    if isinstance(t, type) and issubclass(t, Struct):
        return t.__pyxdp_type__
    if isinstance(t, Type):
        return t
    raise TypeError(f"{t!r} is not a pyxdp type")


class _MapKind:
    """``HashMap[K, V](max_entries=N)``: subscript with the types, call with the size."""

    def __init__(self, kind: str, map_type: MapType, fixed: tuple[Any, Any] | None = None,
                 flags: int = 0) -> None:
        self.kind = kind
        self.map_type = map_type
        self.fixed = fixed
        self.flags = flags

    def __getitem__(self, kv: tuple[Any, Any]) -> Callable[..., MapDecl]:
        if not isinstance(kv, tuple) or len(kv) != 2:
            raise TypeError(f"{self.kind}[key_type, value_type]")
        key, value = kv
        outer = self.map_type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)
        if outer != isinstance(value, MapDecl):
            raise TypeError(f"{self.kind}[key, HashMap[K, V](N)]: the value is an inner map"
                            " template" if outer else
                            f"{self.kind}[key, value]: a map is a value only of ArrayOfMaps"
                            " or HashOfMaps")
        if outer and value.inner is not None:
            raise TypeError(f"{self.kind}: an inner map cannot hold maps itself")
        if outer and value.map_type in (MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY):
            raise TypeError(f"{self.kind}: a {value.kind} cannot be an inner map")

        def declare(max_entries: int, flags: int = self.flags, pinning: int = 0) -> MapDecl:
            return MapDecl(self.kind, self.map_type, key, value, max_entries, flags,
                           pinning=_pinning(pinning))
        return declare

    def __call__(self, max_entries: int = -1, flags: int = 0, pinning: int = 0) -> MapDecl:
        if self.fixed is None:
            raise TypeError(f"give key and value types: {self.kind}[key, value](max_entries=N)")
        if max_entries < 0:
            if self.map_type != MapType.PERF_EVENT_ARRAY:
                raise TypeError(f"{self.kind}(max_entries): the size is required")
            max_entries = 0                 # the loader makes it one slot per CPU
        key, value = self.fixed
        return MapDecl(self.kind, self.map_type, key, value, max_entries, flags or self.flags,
                       pinning=_pinning(pinning))


def _pinning(value: int) -> int:
    if value not in (PIN_NONE, PIN_BY_NAME):
        raise TypeError(f"pinning={value!r}: use PIN_BY_NAME (or PIN_NONE)")
    return int(value)


HashMap = _MapKind("HashMap", MapType.HASH)
ArrayMap = _MapKind("ArrayMap", MapType.ARRAY)
PerCpuArray = _MapKind("PerCpuArray", MapType.PERCPU_ARRAY)
PerCpuHash = _MapKind("PerCpuHash", MapType.PERCPU_HASH)
LruHashMap = _MapKind("LruHashMap", MapType.LRU_HASH)
LpmTrie = _MapKind("LpmTrie", MapType.LPM_TRIE, flags=BPF_F_NO_PREALLOC)
DevMap = _MapKind("DevMap", MapType.DEVMAP, (u32, u32))
CpuMap = _MapKind("CpuMap", MapType.CPUMAP, (u32, u32))
XskMap = _MapKind("XskMap", MapType.XSKMAP, (u32, u32))
ProgArray = _MapKind("ProgArray", MapType.PROG_ARRAY, (u32, u32))
RingBuf = _MapKind("RingBuf", MapType.RINGBUF, (None, None))
PerfEventArray = _MapKind("PerfEventArray", MapType.PERF_EVENT_ARRAY, (u32, u32))
ArrayOfMaps = _MapKind("ArrayOfMaps", MapType.ARRAY_OF_MAPS)
HashOfMaps = _MapKind("HashOfMaps", MapType.HASH_OF_MAPS)


# -- programs --------------------------------------------------------------------------------
@dataclass
class ProgramDecl:
    """A function decorated with ``@xdp``/``@tc``: compile it with ``compile_function``."""

    fn: Callable[..., Any]
    kind: str
    section: str

    @property
    def name(self) -> str:
        return self.fn.__name__

    def __call__(self, *args: Any) -> Any:
        raise RuntimeError(f"{self.name} is a BPF program: compile it, then load or emulate")


def xdp(fn: Callable[..., Any] | None = None, *, section: str = "xdp") -> Any:
    """Mark ``fn(ctx)`` as an XDP program returning an ``XDP_*`` verdict."""
    if fn is None:
        return lambda f: ProgramDecl(f, "xdp", section)
    return ProgramDecl(fn, "xdp", section)


def tc(fn: Callable[..., Any] | None = None, *, section: str = "tc") -> Any:
    """Mark ``fn(ctx)`` as a tc (sched_cls) program returning a ``TC_ACT_*`` verdict."""
    if fn is None:
        return lambda f: ProgramDecl(f, "tc", section)
    return ProgramDecl(fn, "tc", section)


class SubprogDecl:
    """A module function marked ``@subprog``: compiled once per argument signature as a
    BPF-to-BPF call (``call`` of a ``.text`` function) instead of inlined at each call."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    @property
    def name(self) -> str:
        return self.fn.__name__

    def __call__(self, *args: Any) -> Any:
        raise RuntimeError(f"{self.name} is a BPF subprogram: call it from a program")


def subprog(fn: Callable[..., Any]) -> SubprogDecl:
    """Mark a helper function as a real BPF subprogram (a bpf-to-bpf call, not inlined):
    one copy of its code however many places call it.  Up to 4 arguments besides ``ctx``
    (integers, bools, refs, a cursor); it returns an integer (or nothing)."""
    return SubprogDecl(fn)


# -- helpers and builtins (only meaningful inside programs) ----------------------------------
def _stub(name: str) -> Callable[..., Any]:
    def f(*args: Any, **kw: Any) -> Any:
        raise RuntimeError(f"{name}() only works inside a compiled program")
    f.__name__ = name
    return f


BUILTINS = ("ktime_get_ns", "ktime_get_coarse_ns", "get_prandom_u32", "get_smp_processor_id",
            "redirect",
            "csum_diff", "fib_lookup", "trace_printk", "tail_call", "load", "store",
            "atomic_add", "csum_fold", "csum_replace2", "csum_replace4", "ipv4_csum",
            "bswap16", "bswap32", "bswap64", "ip4")
for _n in BUILTINS:
    globals()[_n] = _stub(_n)


def ip4(text: str) -> int:
    """``ip4("10.0.0.1")`` is the host-order u32 of an address (folded at compile time)."""
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d



__all__ = [
    "ARP", "BPF_ANY", "PIN_BY_NAME", "PIN_NONE", "BPF_EXIST", "BPF_FIB_LKUP_RET_SUCCESS",
    "BPF_F_MMAPABLE", "BPF_F_NO_COMMON_LRU", "BPF_F_NO_PREALLOC",
    "BPF_NOEXIST", "ETH_P_8021AD", "ETH_P_8021Q", "ETH_P_ARP", "ETH_P_IP", "ETH_P_IPV6", "GRE",
    "GUE", "ICMP", "IPPROTO_DSTOPTS", "IPPROTO_FRAGMENT", "IPPROTO_GRE", "IPPROTO_HOPOPTS",
    "IPPROTO_ICMP", "IPPROTO_ICMPV6", "IPPROTO_IPIP", "IPPROTO_IPV6", "IPPROTO_NONE",
    "IPPROTO_ROUTING", "IPPROTO_TCP", "IPPROTO_UDP", "TCP", "TC_ACT_OK", "TC_ACT_PIPE",
    "TC_ACT_RECLASSIFY", "TC_ACT_REDIRECT", "TC_ACT_SHOT", "TC_ACT_STOLEN", "TC_ACT_UNSPEC",
    "UDP", "VLAN", "XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_REDIRECT", "XDP_TX",
    "ArrayMap", "ArrayOfMaps", "Const", "CpuMap", "DevMap", "Ethernet", "FibParams", "HashMap",
    "HashOfMaps", "ICMPv6",
    "IPv4", "IPv6", "IPv6Ext", "LpmKey4", "LpmKey6", "LpmTrie", "LruHashMap", "MapDecl",
    "PerCpuArray", "PerCpuHash", "PerfEventArray", "ProgArray", "ProgramDecl", "RingBuf",
    "SpinLock", "Struct",
    "SubprogDecl", "XskMap",
    "be16", "be32", "be64", "i8", "i16", "i32", "i64", "subprog", "tc", "u8", "u16", "u32",
    "u64", "xdp",
    *BUILTINS,
]

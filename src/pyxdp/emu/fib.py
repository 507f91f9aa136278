"""A userspace forwarding table for ``bpf_fib_lookup``.

Tests fill it with routes (prefix -> egress ifindex, source MAC, next-hop MAC); the helper
fills ``struct bpf_fib_lookup`` the way the kernel does on success (``ifindex``, ``smac``,
``dmac``, MTU check) and returns the kernel's ``BPF_FIB_LKUP_RET_*`` codes otherwise.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum

AF_INET = 2
AF_INET6 = 10
FIB_PARAMS_SIZE = 64


class FibResult(IntEnum):
    SUCCESS = 0
    BLACKHOLE = 1
    UNREACHABLE = 2
    PROHIBIT = 3
    NOT_FWDED = 4
    FWD_DISABLED = 5
    UNSUPP_LWT = 6
    NO_NEIGH = 7
    FRAG_NEEDED = 8
    NO_SRC_ADDR = 9


def _mac(value: bytes | str | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return bytes(int(x, 16) for x in value.split(":"))


@dataclass(frozen=True)
class Route:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    ifindex: int
    smac: bytes
    dmac: bytes | None        # None: no neighbour entry -> BPF_FIB_LKUP_RET_NO_NEIGH
    mtu: int = 1500
    kind: FibResult = FibResult.SUCCESS   # BLACKHOLE / UNREACHABLE / PROHIBIT routes


class Fib:
    """Routes, matched by longest prefix; ``forwarding=False`` mimics a host with
    ``net.ipv4.ip_forward=0`` (``BPF_FIB_LKUP_RET_FWD_DISABLED``)."""

    def __init__(self, forwarding: bool = True) -> None:
        self.routes: list[Route] = []
        self.forwarding = forwarding

    def add_route(self, prefix: str, ifindex: int = 0, smac: bytes | str = bytes(6),
                  dmac: bytes | str | None = None, mtu: int = 1500,
                  kind: FibResult = FibResult.SUCCESS) -> Route:
        route = Route(ipaddress.ip_network(prefix, strict=False), ifindex,
                      _mac(smac) or bytes(6), _mac(dmac), mtu, kind)
        self.routes.append(route)
        return route

    def lookup(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Route | None:
        best: Route | None = None
        for r in self.routes:
            if r.network.version == address.version and address in r.network and (
                    best is None or r.network.prefixlen > best.network.prefixlen):
                best = r
        return best

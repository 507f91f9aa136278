"""The router's data plane, the same tests on the emulator (a FIB given as tables, no
root) and on the kernel (``bpf_fib_lookup`` against a real routing and neighbour table in
the bed's router namespace, frames run with BPF_PROG_TEST_RUN there).

Each test states what the FIB holds, sends one frame in on ``r0`` and checks the verdict,
the rewritten frame (MACs, TTL/hop limit, IPv4 checksum) and the counters."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from pyxdp.apps.router import REASONS
from pyxdp.apps.router.program import PROGRAM, compiled, load_router
from pyxdp.packets.build import ethernet, ipv4, ipv6, tcp, udp

XDP_PASS, XDP_REDIRECT = 2, 4
NEIGH_MAC = {"198.18.2.2": "02:aa:00:00:02:02", "198.18.3.2": "02:aa:00:00:03:02",
             "2001:db8:2::2": "02:aa:00:00:02:02", "198.18.4.2": "02:aa:00:00:04:02"}
PORT_MAC = {"r0": "02:bb:00:00:01:01", "r1": "02:bb:00:00:02:01", "r2": "02:bb:00:00:03:01",
            "r3": "02:bb:00:00:04:01"}
IN_MAC = PORT_MAC["r0"]


class World:
    """The router loaded on a backend, with a FIB: r0 (198.18.1.0/24, ingress), r1
    (198.18.2.0/24, 2001:db8:2::/64), r2 (198.18.3.0/24) are ports; r3 (198.18.4.0/24) is
    an interface that is not a port.  Neighbours: NEIGH_MAC; 198.18.2.77 and
    2001:db8:2::77 have none; 198.18.9.0/24 is an unreachable route; r0..r3 own .1."""

    def __init__(self) -> None:
        self.ifindex: dict[str, int] = {}
        self.coll: Any = None

    def run(self, frame: bytes) -> Any:
        raise NotImplementedError

    def maps(self) -> dict[str, Any]:
        return compiled().typed_maps(self.coll)

    def reason(self, name: str) -> int:
        return sum(c.packets for c in self.maps()["stats"][REASONS[name]])

    def egress(self, port: str) -> int:
        return sum(c.packets for c in self.maps()["egress"][self.ifindex[port]])


class EmuWorld(World):
    def __init__(self, backend: Any) -> None:
        super().__init__()
        from pyxdp.emu import Fib, FibResult

        self.ifindex = {"r0": 2, "r1": 3, "r2": 4, "r3": 5}
        fib = Fib()
        for n, port in ((1, "r0"), (2, "r1"), (3, "r2"), (4, "r3")):
            idx, smac = self.ifindex[port], PORT_MAC[port]
            fib.add_route(f"198.18.{n}.0/24", idx, smac, None)       # no neighbour
            fib.add_route(f"198.18.{n}.1/32", kind=FibResult.NOT_FWDED)   # local
            fib.add_route(f"2001:db8:{n}::/64", idx, smac, None)
            fib.add_route(f"2001:db8:{n}::1/128", kind=FibResult.NOT_FWDED)
        for ip, mac in NEIGH_MAC.items():
            port = {"2": "r1", "3": "r2", "4": "r3"}[ip.split(".")[2] if "." in ip else "2"]
            fib.add_route(ip, self.ifindex[port], PORT_MAC[port], mac)
        fib.add_route("198.18.9.0/24", kind=FibResult.UNREACHABLE)
        self.coll = load_router([2, 3, 4], backend)
        self.prog = self.coll.programs[PROGRAM]
        self.prog.machine.fib = fib

    def run(self, frame: bytes) -> Any:
        return self.prog.run_packet(frame, ingress_ifindex=self.ifindex["r0"])


class KernelWorld(World):
    def __init__(self, backend: Any, tb: Any) -> None:
        super().__init__()
        from pyxdp.apps.router import bed

        self.tb = tb
        tb.namespace(bed.ROUTER_NS)
        for ns, (host_if, rtr_if, n) in bed.HOSTS.items():
            tb.namespace(ns)
            tb.veth(ns, host_if, bed.ROUTER_NS, rtr_if,
                    ipv4=(f"{bed.v4(n, 2)}/24", f"{bed.v4(n, 1)}/24"),
                    ipv6=(f"{bed.v6(n, 2)}/64", f"{bed.v6(n, 1)}/64"),
                    macs=("02:cc:00:00:00:0" + str(n), PORT_MAC[rtr_if]))
        tb.namespace("oth")        # r3: an interface of the router that is not a port
        tb.veth("oth", "x3", "rtr", "r3", ipv4=("198.18.4.9/24", "198.18.4.1/24"),
                macs=("02:cc:00:00:00:04", PORT_MAC["r3"]))
        tb.exec("rtr", ["ip", "route", "add", "unreachable", "198.18.9.0/24"])
        tb.sysctl("rtr", "net.ipv4.ip_forward", "1")
        tb.sysctl("rtr", "net.ipv6.conf.all.forwarding", "1")
        for ip, mac in NEIGH_MAC.items():
            port = {"2": "r1", "3": "r2", "4": "r3"}[ip.split(".")[2] if "." in ip else "2"]
            tb.neighbour("rtr", port, ip, mac)
        import socket
        self.ifindex = {p: tb.call("rtr", socket.if_nametoindex, p)
                        for p in ("r0", "r1", "r2", "r3")}
        self.coll = tb.call("rtr", load_router,
                            [self.ifindex[p] for p in ("r0", "r1", "r2")], backend)
        self.prog = self.coll.programs[PROGRAM]

    def run(self, frame: bytes) -> Any:
        return self.tb.call("rtr", self.prog.run_packet, frame,
                            ingress_ifindex=self.ifindex["r0"])


@pytest.fixture
def world(backend: Any) -> Iterator[World]:
    if backend.name == "emulator":
        w: World = EmuWorld(backend)
        try:
            yield w
        finally:
            w.coll.close()
        return
    from pyxdp.testbed import Testbed
    with Testbed() as tb:
        w = KernelWorld(backend, tb)
        try:
            yield w
        finally:
            w.coll.close()


def v4frame(dst: str, ttl: int = 64, size: int = 18, **kw: Any) -> bytes:
    return ethernet(ipv4(udp(b"x" * size), src="198.18.1.2", dst=dst, ttl=ttl, **kw),
                    src="02:cc:00:00:00:01", dst=IN_MAC)


def v6frame(dst: str, hop: int = 64, **kw: Any) -> bytes:
    return ethernet(ipv6(udp(b"x" * 18), src="2001:db8:1::2", dst=dst, hop_limit=hop, **kw),
                    src="02:cc:00:00:00:01", dst=IN_MAC)


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ones_sum(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_ipv4_forwarded_with_ttl_checksum_and_macs(world: World) -> None:
    frame = v4frame("198.18.2.2", ttl=64)
    r = world.run(frame)
    assert r.verdict == XDP_REDIRECT
    out = r.packet
    assert out[0:6] == mac(NEIGH_MAC["198.18.2.2"])
    assert out[6:12] == mac(PORT_MAC["r1"])
    assert out[14 + 8] == 63                                 # TTL decremented
    assert ones_sum(out[14:34]) == 0xFFFF                    # header checksum still valid
    assert out[14 + 10:14 + 12] != frame[14 + 10:14 + 12]    # ... because it was updated
    assert out[34:] == frame[34:]                            # payload untouched
    assert world.reason("forwarded") == 1
    assert world.egress("r1") == 1 and world.egress("r2") == 0


def test_ipv4_second_egress(world: World) -> None:
    r = world.run(v4frame("198.18.3.2"))
    assert r.verdict == XDP_REDIRECT
    assert r.packet[0:6] == mac(NEIGH_MAC["198.18.3.2"])
    assert r.packet[6:12] == mac(PORT_MAC["r2"])
    assert world.egress("r2") == 1 and world.egress("r1") == 0


@pytest.mark.parametrize("ttl", [0, 255])
def test_ipv4_checksum_edge_ttls(world: World, ttl: int) -> None:
    r = world.run(v4frame("198.18.2.2", ttl=ttl))
    if ttl == 0:
        assert r.verdict == XDP_PASS and world.reason("pass_ttl") == 1
    else:
        assert r.verdict == XDP_REDIRECT
        assert r.packet[14 + 8] == 254 and ones_sum(r.packet[14:34]) == 0xFFFF


def test_ipv6_forwarded_with_hop_limit_and_macs(world: World) -> None:
    frame = v6frame("2001:db8:2::2", hop=64)
    r = world.run(frame)
    assert r.verdict == XDP_REDIRECT
    out = r.packet
    assert out[0:6] == mac(NEIGH_MAC["2001:db8:2::2"])
    assert out[6:12] == mac(PORT_MAC["r1"])
    assert out[14 + 7] == 63
    assert out[14 + 8:] == frame[14 + 8:]        # addresses and payload untouched
    assert world.egress("r1") == 1


@pytest.mark.parametrize("make,reason", [
    (lambda: v4frame("198.18.2.2", ttl=1), "pass_ttl"),
    (lambda: v6frame("2001:db8:2::2", hop=1), "pass_ttl"),
    (lambda: v4frame("198.18.2.77"), "pass_no_neighbour"),
    (lambda: v6frame("2001:db8:2::77"), "pass_no_neighbour"),
    (lambda: v4frame("198.18.2.1"), "pass_local_or_no_route"),
    (lambda: v6frame("2001:db8:2::1"), "pass_local_or_no_route"),
    (lambda: v4frame("198.18.9.9"), "pass_unreachable"),
    (lambda: v4frame("198.18.2.2", size=1600), "pass_frag_needed"),
    (lambda: v4frame("198.18.2.2", flags_frag=0x2000), "pass_fragment"),
    (lambda: v4frame("198.18.2.2", flags_frag=0x0010), "pass_fragment"),
    (lambda: v6frame("2001:db8:2::2", next_header=44), "pass_fragment"),
    (lambda: v6frame("2001:db8:2::2", next_header=0), "pass_ip_options"),
    (lambda: v4frame("198.18.4.2"), "pass_egress_not_a_port"),
    (lambda: ethernet(b"\x00" * 28, ethertype=0x0806), "pass_not_ip"),
    (lambda: ethernet(b"\x45" + b"\x00" * 8, ethertype=0x0800), "pass_malformed"),
])
def test_passed_to_the_stack_unchanged(world: World, make: Any, reason: str) -> None:
    frame = make()
    r = world.run(frame)
    assert r.verdict == XDP_PASS
    assert r.packet == frame                  # the stack gets the frame as it came
    assert world.reason(reason) == 1
    assert world.reason("forwarded") == 0
    assert sum(world.egress(p) for p in ("r0", "r1", "r2")) == 0


def test_ipv4_options_passed(world: World) -> None:
    ip = bytearray(ipv4(udp(b"x" * 18), src="198.18.1.2", dst="198.18.2.2"))
    # ihl 6: one 4-byte option word (NOPs... end of list), checksum recomputed
    opt = bytes([0x01, 0x01, 0x01, 0x00])
    hdr = bytearray(b"\x46" + ip[1:20] + opt)
    struct.pack_into("!H", hdr, 2, len(ip) + 4)
    struct.pack_into("!H", hdr, 10, 0)
    struct.pack_into("!H", hdr, 10, ~ones_sum(bytes(hdr)) & 0xFFFF)
    frame = ethernet(bytes(hdr) + bytes(ip[20:]), src="02:cc:00:00:00:01", dst=IN_MAC)
    r = world.run(frame)
    assert r.verdict == XDP_PASS and r.packet == frame
    assert world.reason("pass_ip_options") == 1


def test_tcp_frame_forwarded(world: World) -> None:
    frame = ethernet(ipv4(tcp(b"data", sport=40000, dport=5001), src="198.18.1.2",
                          dst="198.18.2.2"), src="02:cc:00:00:00:01", dst=IN_MAC)
    r = world.run(frame)
    assert r.verdict == XDP_REDIRECT
    assert r.packet[34:] == frame[34:]           # L4 (with its checksum) untouched
    assert ipaddress.IPv4Address(r.packet[30:34]) == ipaddress.IPv4Address("198.18.2.2")

"""The load balancer's data plane on both backends: the emulator (a FIB given as tables)
and the kernel (``bpf_fib_lookup`` against real neighbours in a namespace, frames run with
BPF_PROG_TEST_RUN there).  Every case of the scapy corpus (``tests/data/lb_corpus.py``)
must give the corpus's expected frame on both; the rest checks what the corpus cannot
show in one frame: the Maglev ring chosen by the flow hash, the connection table keeping
a flow on its real across a ring change, the bank flip, stale entries, the second hop,
and "too big" answers."""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import Ether

from pyxdp.apps.lb import dataplane as dp
from pyxdp.apps.lb import maglev
from pyxdp.apps.lb import program as pg

sys.path.insert(0, str(Path(__file__).parent.parent / "data"))
import lb_corpus as corpus

XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3
RING = 13
REASONS = {"forwarded": dp.R_FORWARDED, "not_vip": dp.R_NOT_VIP, "not_ip": dp.R_NOT_IP,
           "malformed": dp.R_MALFORMED, "fragment": dp.R_FRAGMENT, "options": dp.R_OPTIONS,
           "no_real": dp.R_NO_REAL, "lru_hit": dp.R_LRU_HIT, "lru_miss": dp.R_LRU_MISS,
           "second_hop": dp.R_SECOND_HOP, "icmp_sent": dp.R_ICMP_SENT,
           "stale": dp.R_STALE, "quic_routed": dp.R_QUIC_ROUTED,
           "quic_hashed": dp.R_QUIC_HASHED}
A = ipaddress.ip_address
CONFIG = {"SRC4": int(A(corpus.SRC4)), "SRC6_A": pg.words(A(corpus.SRC6))[0],
          "SRC6_B": pg.words(A(corpus.SRC6))[1], "ICMP_SRC4": int(A(corpus.SRC4)),
          "ICMP_SRC6_A": pg.words(A(corpus.SRC6))[0],
          "ICMP_SRC6_B": pg.words(A(corpus.SRC6))[1], "GUE_PORT": corpus.GUE_PORT}


class World:
    ifindex = 0
    coll: Any = None

    def run(self, frame: bytes) -> Any:
        raise NotImplementedError

    def maps(self) -> dict[str, Any]:
        return pg.compiled().typed_maps(self.coll)

    def reason(self, name: str) -> int:
        return sum(c.packets for c in self.maps()["stats"][REASONS[name]])

    ifindex2 = 0          # a second port (two-NIC setups): the far real is behind it
    l1_mac = "02:1b:00:00:00:02"
    far_mac = "02:1e:00:00:00:21"
    far = "198.18.11.21"

    def load(self, backend: Any, config: dict[str, int] | None = None) -> None:
        self.coll = pg.load_lb(backend, ring_size=RING, max_vips=16, max_reals=16,
                               max_conns=256, config={**CONFIG, **(config or {})},
                               ifindexes=[self.ifindex, self.ifindex2])
        self.prog = self.coll.programs[pg.PROGRAM]
        self.slots: dict[str, int] = {}
        for i, (vip, port, proto, method, real, variant) in enumerate(corpus.SERVICES):
            self.service(i, vip, port, proto, method, {real: 1}, variant)

    def real_slot(self, addr: str) -> int:
        if addr not in self.slots:
            self.slots[addr] = len(self.slots)
            pg.set_real(self.maps(), self.slots[addr], A(addr), 1)
        return self.slots[addr]

    def service(self, num: int, vip: str, port: int, proto: str, method: str,
                reals: dict[str, int], variant: int = 1, bank: int = 0,
                prev_until: int = 0) -> list[int]:
        ring = maglev.build({r: (self.real_slot(r), w) for r, w in reals.items()}, RING)
        m = self.maps()
        pg.write_ring(m, num, bank, ring, RING)
        pg.set_vip(m, pg.vip_key(A(vip), port, pg.PROTOS[proto]), num,
                   pg.METHODS[method], bank, variant == 0, prev_until)
        return ring


class EmuWorld(World):
    def __init__(self, backend: Any, config: dict[str, int] | None = None) -> None:
        from pyxdp.emu import Fib

        self.ifindex, self.ifindex2 = 2, 3
        fib = Fib()
        for ip, mac in corpus.REAL_MAC.items():
            fib.add_route(ip, self.ifindex, corpus.LB_MAC, mac)
        fib.add_route(self.far, self.ifindex2, self.l1_mac, self.far_mac)
        self.load(backend, config)
        self.prog.machine.fib = fib

    def run(self, frame: bytes) -> Any:
        return self.prog.run_packet(frame, ingress_ifindex=self.ifindex)


class KernelWorld(World):
    def __init__(self, backend: Any, tb: Any, config: dict[str, int] | None = None) -> None:
        self.tb = tb
        tb.namespace("lb")
        tb.namespace("cl")
        tb.veth("cl", "c0", "lb", "l0", ipv4=("198.18.10.2/24", "198.18.10.1/24"),
                ipv6=("2001:db8:10::2/64", "2001:db8:10::1/64"),
                macs=(corpus.CLIENT_MAC, corpus.LB_MAC))
        tb.sysctl("lb", "net.ipv4.ip_forward", "1")          # bpf_fib_lookup needs it
        tb.sysctl("lb", "net.ipv6.conf.all.forwarding", "1")
        for ip, mac in corpus.REAL_MAC.items():
            tb.neighbour("lb", "l0", ip, mac)
        tb.veth("cl", "c1", "lb", "l1", ipv4=("198.18.11.2/24", "198.18.11.1/24"),
                macs=("02:1c:00:00:00:03", self.l1_mac))
        tb.neighbour("lb", "l1", self.far, self.far_mac)
        self.ifindex = tb.call("lb", socket.if_nametoindex, "l0")
        self.ifindex2 = tb.call("lb", socket.if_nametoindex, "l1")
        tb.call("lb", self.load, backend, config)

    def run(self, frame: bytes) -> Any:
        return self.tb.call("lb", self.prog.run_packet, frame, ingress_ifindex=self.ifindex)


def make_world(backend: Any, config: dict[str, int] | None = None) -> Iterator[World]:
    if backend.name == "emulator":
        w: World = EmuWorld(backend, config)
        try:
            yield w
        finally:
            w.coll.close()
        return
    from pyxdp.testbed import Testbed
    with Testbed() as tb:
        w = KernelWorld(backend, tb, config)
        try:
            yield w
        finally:
            w.coll.close()


@pytest.fixture
def world(backend: Any) -> Iterator[World]:
    yield from make_world(backend)


def h_of(inner: Any) -> int:
    l4 = inner.payload
    proto = 6 if isinstance(l4, TCP) else 17
    return pg.flow_hash(A(inner.src), A(inner.dst), l4.sport, l4.dport, proto)


@pytest.mark.parametrize("case", corpus.forward_cases(), ids=lambda c: c[0])
def test_corpus_forwarded_frames_are_the_expected_ones(world: World, case: Any) -> None:
    _, inner, i, real = case
    method, variant = corpus.SERVICES[i][3], corpus.SERVICES[i][5]
    r = world.run(bytes(corpus.frame(inner)))
    want = bytes(corpus.encap(inner, real, method, h_of(inner), variant))
    assert r.verdict == XDP_TX, (r.verdict, world.reason("not_vip"))
    assert r.packet == want, (Ether(r.packet).show(dump=True), Ether(want).show(dump=True))
    assert world.reason("forwarded") == 1 and world.reason("lru_miss") == 1
    assert sum(c.packets for c in world.maps()["vip_stats"][i]) == 1
    assert sum(c.bytes for c in world.maps()["real_stats"][world.slots[real]]) == len(
        corpus.frame(inner))
    # the same flow again: from the connection table
    assert world.run(bytes(corpus.frame(inner))).packet == want
    assert world.reason("lru_hit") == 1


@pytest.mark.parametrize("case", corpus.pass_cases(), ids=lambda c: c[0])
def test_corpus_frames_left_to_the_stack(world: World, case: Any) -> None:
    _, frame, reason = case
    raw = bytes(frame)
    r = world.run(raw)
    assert r.verdict == XDP_PASS and r.packet == raw
    assert world.reason(reason) == 1 and world.reason("forwarded") == 0


def test_flows_spread_over_the_ring_as_maglev_and_the_hash_say(world: World) -> None:
    reals = {"198.18.10.11": 1, "198.18.10.12": 2, "198.18.10.13": 1}
    ring = world.service(0, "198.18.100.1", 80, "tcp", "dsr", reals)
    by_slot = {world.slots[r]: r for r in reals}
    seen = {r: 0 for r in reals}
    for sport in range(1000, 1200):
        inner = corpus.client4("198.18.100.1", 80)
        inner[TCP].sport = sport
        r = world.run(bytes(corpus.frame(inner)))
        got = Ether(r.packet).dst
        want = by_slot[ring[h_of(inner) % RING]]
        assert got == corpus.REAL_MAC[want], sport
        seen[want] += 1
    assert all(seen.values())


def test_established_flows_keep_their_real_when_the_ring_changes(world: World) -> None:
    world.service(0, "198.18.100.1", 80, "tcp", "dsr", {"198.18.10.11": 1})
    inner = corpus.client4("198.18.100.1", 80)
    first = world.run(bytes(corpus.frame(inner)))
    assert Ether(first.packet).dst == corpus.REAL_MAC["198.18.10.11"]
    # the new ring (bank 1) has only .12: the known flow stays, a new one goes to .12
    world.service(0, "198.18.100.1", 80, "tcp", "dsr", {"198.18.10.12": 1}, bank=1)
    assert Ether(world.run(bytes(corpus.frame(inner))).packet).dst == corpus.REAL_MAC[
        "198.18.10.11"]
    other = corpus.client4("198.18.100.1", 80)
    other[TCP].sport = 40001
    assert Ether(world.run(bytes(corpus.frame(other))).packet).dst == corpus.REAL_MAC[
        "198.18.10.12"]
    # the real's slot given away (epoch changes): its flows are rehashed, not misdelivered
    pg.set_real(world.maps(), world.slots["198.18.10.11"], A("198.18.10.13"), 2)
    assert Ether(world.run(bytes(corpus.frame(inner))).packet).dst == corpus.REAL_MAC[
        "198.18.10.12"]
    assert world.reason("stale") == 1


def test_second_hop_sends_an_unknown_established_flow_to_the_previous_real(
        world: World) -> None:
    world.service(0, "198.18.100.1", 80, "tcp", "dsr", {"198.18.10.11": 1})
    world.service(0, "198.18.100.1", 80, "tcp", "dsr", {"198.18.10.12": 1}, bank=1,
                  prev_until=(1 << 63))
    ack = corpus.client4("198.18.100.1", 80)
    ack[TCP].flags = "A"
    syn = corpus.client4("198.18.100.1", 80)
    syn[TCP].sport = 40002
    # no connection entry, not a SYN, inside the window: the previous bank's real
    assert Ether(world.run(bytes(corpus.frame(ack))).packet).dst == corpus.REAL_MAC[
        "198.18.10.11"]
    assert world.reason("second_hop") == 1
    # a SYN is a new connection: the new ring
    assert Ether(world.run(bytes(corpus.frame(syn))).packet).dst == corpus.REAL_MAC[
        "198.18.10.12"]
    # the window over: the new ring for everything
    world.service(0, "198.18.100.1", 80, "tcp", "dsr", {"198.18.10.12": 1}, bank=1,
                  prev_until=0)
    late = corpus.client4("198.18.100.1", 80)
    late[TCP].flags = "A"
    late[TCP].sport = 40003
    assert Ether(world.run(bytes(corpus.frame(late))).packet).dst == corpus.REAL_MAC[
        "198.18.10.12"]
    assert world.reason("second_hop") == 1


def test_a_service_without_reals_drops(world: World) -> None:
    world.service(0, "198.18.100.1", 80, "tcp", "ipip", {"198.18.10.11": 0})
    r = world.run(bytes(corpus.frame(corpus.client4("198.18.100.1", 80))))
    assert r.verdict == XDP_DROP and world.reason("no_real") == 1


@pytest.fixture
def small_world(backend: Any) -> Iterator[World]:
    yield from make_world(backend, {"MTU": 1400})


def test_too_big_once_encapsulated_is_answered_in_xdp(small_world: World) -> None:
    w = small_world
    inner = corpus.client4("198.18.100.1", 80, size=1400 - 20 - 20 - 10)   # 1390 + 20 > 1400
    r = w.run(bytes(corpus.frame(inner)))
    assert r.verdict == XDP_TX and w.reason("icmp_sent") == 1
    e = Ether(r.packet)
    assert e.dst == corpus.CLIENT_MAC and e[IP].src == corpus.SRC4
    assert e[IP].dst == inner.src and e[ICMP].type == 3 and e[ICMP].code == 4
    assert e[ICMP].nexthopmtu == 1380
    again = e[IP].copy()
    del again.chksum
    assert IP(bytes(again)).chksum == e[IP].chksum        # scapy recomputes it: equal
    inner6 = corpus.client6("2001:db8:100::1", 80, size=1400 - 40 - 20 - 10)
    r6 = w.run(bytes(corpus.frame(inner6)))
    assert r6.verdict == XDP_TX and w.reason("icmp_sent") == 2
    e6 = Ether(r6.packet)
    assert e6[IPv6].dst == inner6.src and e6[ICMPv6PacketTooBig].mtu == 1360
    fits = corpus.client4("198.18.100.1", 80, size=1400 - 20 - 20 - 20)
    assert w.run(bytes(corpus.frame(fits))).verdict == XDP_TX
    assert w.reason("forwarded") == 1


def test_a_real_behind_another_port_is_reached_through_the_devmap(world: World) -> None:
    """Two-NIC setups: the next hop is on the second port, so the frame leaves by a devmap
    redirect (XDP_REDIRECT) with that port's MAC as its source."""
    world.service(0, "198.18.100.1", 80, "tcp", "ipip", {world.far: 1})
    inner = corpus.client4("198.18.100.1", 80)
    r = world.run(bytes(corpus.frame(inner)))
    assert r.verdict == 4                                 # XDP_REDIRECT
    e = Ether(r.packet)
    assert (e.dst, e.src, e[IP].dst, e[IP].proto) == (world.far_mac, world.l1_mac,
                                                      world.far, 4)
    assert bytes(e[IP].payload) == bytes(inner)


def quic_frame(payload: bytes, sport: int) -> bytes:
    from scapy.layers.inet import UDP
    from scapy.packet import Raw

    return bytes(corpus.frame(IP(src="198.19.7.7", dst="198.18.100.7", ttl=60)
                              / UDP(sport=sport, dport=443) / Raw(payload)))


def test_quic_packets_go_to_the_real_their_connection_id_names(world: World) -> None:
    """QUIC routing (a UDP service with quic): a short-header or Handshake packet whose
    destination connection id carries a real's host id goes to that real whatever its
    5-tuple; Initial packets, ids of no real and non-QUIC payloads are hashed."""
    reals = {"198.18.10.11": 1, "198.18.10.12": 1, "198.18.10.13": 1}
    ring = maglev.build({r: (world.real_slot(r), w) for r, w in reals.items()}, RING)
    m = world.maps()
    pg.write_ring(m, 5, 0, ring, RING)
    pg.set_quic_ids(m, 5, {7: world.slots["198.18.10.11"], 9: world.slots["198.18.10.12"]})
    pg.set_vip(m, pg.vip_key(A("198.18.100.7"), 443, 17), 5, pg.METHODS["dsr"], 0, False, 0,
               quic=True)
    by_slot = {world.slots[r]: r for r in reals}

    def real_for(payload: bytes, sport: int) -> str:
        r = world.run(quic_frame(payload, sport))
        assert r.verdict == XDP_TX
        return next(a for a, mac in corpus.REAL_MAC.items() if mac == Ether(r.packet).dst)

    def hashed(sport: int) -> str:
        return by_slot[ring[pg.flow_hash(A("198.19.7.7"), A("198.18.100.7"), sport, 443, 17)
                            % RING]]

    short9 = bytes([0x41, 0x40, 0x00, 0x09]) + b"\xaa" * 20
    handshake7 = bytes([0xE0, 0, 0, 0, 1, 8, 0x40, 0x00, 0x07]) + b"\xbb" * 25
    initial = bytes([0xC0, 0, 0, 0, 1, 8, 0x40, 0x00, 0x09]) + b"\xcc" * 25
    unknown = bytes([0x41, 0x40, 0x12, 0x34]) + b"\xdd" * 20
    for sport in range(5000, 5020):
        assert real_for(short9, sport) == "198.18.10.12", sport
    for sport in range(6000, 6010):
        assert real_for(handshake7, sport) == "198.18.10.11", sport
    assert world.reason("quic_routed") == 30
    for sport in range(7000, 7010):                   # hashed as any UDP flow
        assert real_for(initial, sport) == hashed(sport)
        assert real_for(unknown, sport + 100) == hashed(sport + 100)
        assert real_for(b"\x00\x01", sport + 200) == hashed(sport + 200)   # not QUIC
    assert world.reason("quic_hashed") == 30
    # the host id's real removed from the slot table: hashed, not sent to a dead slot
    pg.set_quic_ids(m, 5, {9: world.slots["198.18.10.12"]})
    assert real_for(handshake7, 6100) == hashed(6100)

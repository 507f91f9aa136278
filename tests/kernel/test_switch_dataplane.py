"""The switch's ingress program, the same tests on the emulator and on the kernel (frames
run with BPF_PROG_TEST_RUN in a namespace whose veths are the ports: the devmap needs real
ifindexes there).  Each test sends frames in on a port and checks the verdict, the frame
as it leaves the program (802.1Q push), the learning table and the counters.

The egress (devmap) program cannot be test-run (the kernel refuses BPF_XDP_DEVMAP programs
in BPF_PROG_TEST_RUN); the netns tests cover it end to end."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest

from pyxdp.apps.switch import REASONS, PortVlans
from pyxdp.apps.switch import dataplane as dp
from pyxdp.apps.switch.program import PROGRAM, compiled, load_switch, mac_key

XDP_DROP, XDP_PASS, XDP_REDIRECT = 1, 2, 4
PORT_MAC = {"p0": "02:5f:00:00:00:01", "p1": "02:5f:00:00:00:02", "p2": "02:5f:00:00:00:03",
            "x3": "02:5f:00:00:00:04"}
A, B, C = "02:5e:00:00:00:0a", "02:5e:00:00:00:0b", "02:5e:00:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def frame(dst: str, src: str, vlan: int | None = None, tci: int | None = None) -> bytes:
    tag = b"" if vlan is None and tci is None else struct.pack(
        "!HH", 0x8100, tci if tci is not None else vlan or 0)
    return mac(dst) + mac(src) + tag + struct.pack("!H", 0x88B5) + b"payload!" * 6


class World:
    def __init__(self, backend: Any, vlans: dict[str, PortVlans] | None) -> None:
        self.backend = backend
        self.vlans = vlans
        self.ifindex: dict[str, int] = {}
        self.coll: Any = None

    def table(self) -> dict[int, tuple[bytes, PortVlans | None]]:
        return {self.ifindex[p]: (mac(PORT_MAC[p]), (self.vlans or {}).get(p)
                                  if self.vlans is not None else None)
                for p in ("p0", "p1", "p2")}

    def run(self, port: str, f: bytes) -> Any:
        raise NotImplementedError

    def maps(self) -> dict[str, Any]:
        return compiled().typed_maps(self.coll)

    def reason(self, name: str) -> int:
        return sum(c.packets for c in self.maps()["stats"][REASONS[name]])

    def where(self, m: str, vid: int = 0) -> str | None:
        e = self.maps()["fdb"].get(mac_key(mac(m)) | (vid << 48))
        if e is None:
            return None
        return {i: n for n, i in self.ifindex.items()}.get(e.ifindex, str(e.ifindex))

    def rx(self, port: str) -> int:
        return sum(c.rx_packets for c in self.maps()["port_stats"][self.ifindex[port]])


class EmuWorld(World):
    def __init__(self, backend: Any, vlans: dict[str, PortVlans] | None) -> None:
        super().__init__(backend, vlans)
        self.ifindex = {"p0": 2, "p1": 3, "p2": 4, "x3": 5}
        self.coll = load_switch(self.table(), backend, vlans=vlans is not None)
        self.prog = self.coll.programs[PROGRAM]

    def run(self, port: str, f: bytes) -> Any:
        return self.prog.run_packet(f, ingress_ifindex=self.ifindex[port])


class KernelWorld(World):
    def __init__(self, backend: Any, vlans: dict[str, PortVlans] | None, tb: Any) -> None:
        super().__init__(backend, vlans)
        import socket

        self.tb = tb
        tb.namespace("sw")
        for i, p in enumerate(("p0", "p1", "p2", "x3")):
            tb.namespace(f"h{i}")
            tb.veth(f"h{i}", f"e{i}", "sw", p, macs=(f"02:5e:00:00:01:0{i}", PORT_MAC[p]))
        self.ifindex = {p: tb.call("sw", socket.if_nametoindex, p)
                        for p in ("p0", "p1", "p2", "x3")}
        self.coll = tb.call("sw", load_switch, self.table(), backend,
                            vlans=vlans is not None)
        self.prog = self.coll.programs[PROGRAM]

    def run(self, port: str, f: bytes) -> Any:
        return self.tb.call("sw", self.prog.run_packet, f, ingress_ifindex=self.ifindex[port])


def _world(backend: Any, vlans: dict[str, PortVlans] | None) -> Iterator[World]:
    if backend.name == "emulator":
        w: World = EmuWorld(backend, vlans)
        try:
            yield w
        finally:
            w.coll.close()
        return
    from pyxdp.testbed import Testbed
    with Testbed() as tb:
        w = KernelWorld(backend, vlans, tb)
        try:
            yield w
        finally:
            w.coll.close()


@pytest.fixture
def world(backend: Any) -> Iterator[World]:
    yield from _world(backend, None)


@pytest.fixture
def vworld(backend: Any) -> Iterator[World]:
    """p0: access VLAN 10; p1: trunk (10, 20 tagged, no PVID); p2: access VLAN 20."""
    yield from _world(backend, {"p0": PortVlans(10), "p1": PortVlans(0, (10, 20)),
                                "p2": PortVlans(20)})


def test_learn_flood_forward_and_same_port(world: World) -> None:
    # A -> B, B unknown: flooded; A learned on p0
    assert world.run("p0", frame(B, A)).verdict == XDP_REDIRECT
    assert world.where(A) == "p0" and world.where(B) is None
    assert world.reason("flooded_unknown") == 1 and world.reason("learned") == 1
    # B -> A: A is known: forwarded, B learned on p1
    assert world.run("p1", frame(A, B)).verdict == XDP_REDIRECT
    assert world.reason("forwarded") == 1 and world.where(B) == "p1"
    # A -> B again: forwarded now, not flooded
    assert world.run("p0", frame(B, A)).verdict == XDP_REDIRECT
    assert world.reason("forwarded") == 2 and world.reason("flooded_unknown") == 1
    # C on p1 -> B (also behind p1): the frame has reached its segment: dropped
    assert world.run("p1", frame(B, C)).verdict == XDP_DROP
    assert world.reason("drop_same_port") == 1 and world.where(C) == "p1"
    assert world.rx("p0") == 2 and world.rx("p1") == 2


def test_a_mac_seen_on_another_port_moves(world: World) -> None:
    world.run("p0", frame(BCAST, A))
    assert world.where(A) == "p0"
    world.run("p2", frame(BCAST, A))
    assert world.where(A) == "p2" and world.reason("moved") == 1
    # a static entry does not move
    world.maps()["fdb"][mac_key(mac(B))] = dp.FdbEntry(ifindex=world.ifindex["p1"],
                                                      flags=dp.F_STATIC, seen=0)
    world.run("p0", frame(BCAST, B))
    assert world.where(B) == "p1" and world.reason("moved") == 1
    # and never ages: seen=0 is long ago, yet frames to B are forwarded, not flooded
    assert world.run("p0", frame(B, A)).verdict == XDP_REDIRECT
    assert world.reason("forwarded") == 1


def test_broadcast_multicast_link_local_local_and_bad_source(world: World) -> None:
    assert world.run("p0", frame(BCAST, A)).verdict == XDP_REDIRECT
    assert world.run("p0", frame("01:00:5e:00:00:fb", A)).verdict == XDP_REDIRECT
    assert world.reason("flooded_multicast") == 2
    for ll in ("01:80:c2:00:00:00", "01:80:c2:00:00:0e"):      # STP, LLDP
        assert world.run("p0", frame(ll, A)).verdict == XDP_PASS
    assert world.reason("pass_link_local") == 2
    assert world.run("p0", frame("01:80:c2:00:00:21", A)).verdict == XDP_REDIRECT  # not 0x
    assert world.run("p0", frame(PORT_MAC["p0"], A)).verdict == XDP_PASS
    assert world.reason("pass_local") == 1
    assert world.run("p0", frame(B, "03:00:00:00:00:01")).verdict == XDP_DROP
    assert world.reason("drop_multicast_source") == 1
    assert world.run("x3", frame(B, A)).verdict == XDP_PASS        # not a switch port
    assert world.reason("pass_not_a_port") == 1
    # VLANs off: a tagged frame is switched as it is, in the one learning domain
    r = world.run("p1", frame(A, C, vlan=77))
    assert r.verdict == XDP_REDIRECT and r.packet[12:16] == struct.pack("!HH", 0x8100, 77)
    assert world.where(C, 0) == "p1"


def test_vlans_push_membership_and_priority_tags(vworld: World) -> None:
    w = vworld
    f = frame(BCAST, A)
    r = w.run("p0", f)                    # untagged on access VLAN 10: the tag is pushed
    assert r.verdict == XDP_REDIRECT
    assert r.packet == f[:12] + struct.pack("!HH", 0x8100, 10) + f[12:]
    assert w.where(A, 10) == "p0" and w.where(A, 0) is None
    assert w.run("p0", frame(BCAST, A, vlan=20)).verdict == XDP_DROP     # not a member
    assert w.run("p2", frame(BCAST, C, vlan=10)).verdict == XDP_DROP     # access: untagged
    assert w.reason("drop_vlan_ingress") == 2
    r = w.run("p1", frame(A, B, vlan=10))                                 # trunk, VLAN 10
    assert r.verdict == XDP_REDIRECT and r.packet[12:16] == struct.pack("!HH", 0x8100, 10)
    assert w.reason("forwarded") == 1 and w.where(B, 10) == "p1"
    assert w.run("p1", frame(A, B)).verdict == XDP_DROP                  # trunk, no PVID
    assert w.run("p1", frame(A, B, vlan=30)).verdict == XDP_DROP         # not carried
    # a priority tag (VID 0) on an access port: the PVID, with the priority bits kept
    r = w.run("p2", frame(BCAST, C, tci=0xA000))
    assert r.verdict == XDP_REDIRECT
    assert r.packet[12:16] == struct.pack("!HH", 0x8100, 0xA000 | 20)
    assert w.where(C, 20) == "p2"

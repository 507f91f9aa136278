"""The tunnel app's data plane, the same tests on the emulator (a FIB given as tables) and on
the kernel (``bpf_fib_lookup`` against real routes and neighbours in a namespace, frames
run with BPF_PROG_TEST_RUN there).  Frames are built with scapy, byte for byte as the RFC
layouts say (RFC 2003 IPIP, RFC 4213 6in4, RFC 2473 6in6, draft-ietf-intarea-gue, RFC 2784/
2890 GRE, RFC 7348 VXLAN, RFC 8926 Geneve, RFC 8986 SRv6 End.DX4/DX6), and what leaves the
program is parsed back with scapy.

Ports: ``t0`` (198.18.1.1, 2001:db8:1::1; the inner side, neighbour .2) and ``t1``
(198.18.2.1, 2001:db8:2::1; the outer side: the remote endpoints 198.18.2.2 and
2001:db8:2::2 are neighbours there)."""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import GRE, ICMP, IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrSegmentRouting
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from pyxdp.apps.tunnel import REASONS, TunnelConfig, check_tunnels
from pyxdp.apps.tunnel.control import assign_ids, load_generation
from pyxdp.apps.tunnel.program import PROGRAM, compiled

XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 1, 2, 3, 4
MAC = {"t0": "02:bb:00:00:01:01", "t1": "02:bb:00:00:02:01", "a": "02:cc:00:00:01:02",
       "b": "02:cc:00:00:02:02", "x": "02:cc:00:00:03:02"}
L4, R4, L6, R6 = "198.18.2.1", "198.18.2.2", "2001:db8:2::1", "2001:db8:2::2"
OTHER4, OTHER6 = "198.18.2.99", "2001:db8:2::99"
SID, SID_REMOTE = "2001:db8:5::d4", "2001:db8:2::d4"


def T(name: str, protocol: str, v6: bool = False, **kw: Any) -> dict[str, Any]:
    return {"name": name, "protocol": protocol, "local": L6 if v6 else L4,
            "remote": R6 if v6 else R4, **kw}


TUNNELS = [
    T("ipip4", "ipip", routes=["198.18.64.0/24"]),
    T("sit", "ip6ip", routes=["2001:db8:64::/64"]),
    T("ipip6", "ipip", v6=True, routes=["198.18.65.0/24"]),
    T("ip6ip6", "ip6ip", v6=True, routes=["2001:db8:65::/64"]),
    {"name": "gue4", "protocol": "gue", "local": L4, "remote": "198.18.2.3",
     "routes": ["198.18.66.0/24", "2001:db8:66::/64"]},
    {"name": "gue1", "protocol": "gue", "local": L6, "remote": "2001:db8:2::3",
     "gue_variant": 1, "routes": ["198.18.67.0/24"]},
    {"name": "gre", "protocol": "gre", "local": L4, "remote": "198.18.2.4",
     "routes": ["198.18.68.0/24"]},
    {"name": "grekey", "protocol": "gre", "local": L6, "remote": "2001:db8:2::4",
     "vni": 0xDEADBEEF, "routes": ["198.18.69.0/24"]},
    {"name": "vx", "protocol": "vxlan", "local": L4, "remote": "198.18.2.5", "vni": 42,
     "routes": ["198.18.70.0/24"], "inner_dmac": MAC["x"]},
    {"name": "gnv", "protocol": "geneve", "local": L6, "remote": "2001:db8:2::5",
     "vni": 4242, "routes": ["198.18.71.0/24"]},
    {"name": "dx4", "protocol": "end.dx4", "local": SID, "remote": SID_REMOTE,
     "source": L6, "routes": ["198.18.72.0/24"]},
    {"name": "dx6", "protocol": "end.dx6", "local": "2001:db8:5::d6",
     "remote": "2001:db8:2::d6", "source": L6, "routes": ["2001:db8:72::/64"]},
    {"name": "fwd", "protocol": "ipip", "local": L4, "remote": "198.18.2.6",
     "action": "forward"},
    {"name": "small", "protocol": "ipip", "local": L4, "remote": "198.18.2.7", "mtu": 1400,
     "routes": ["198.18.73.0/24"]},
    {"name": "small6", "protocol": "ip6ip", "local": L4, "remote": "198.18.2.7",
     "mtu": 1400, "decap": False, "routes": ["2001:db8:74::/64"]},
]
NEIGH = {R4: MAC["b"], R6: MAC["b"], **{f"198.18.2.{i}": MAC["b"] for i in range(3, 8)},
         **{f"2001:db8:2::{i}": MAC["b"] for i in range(3, 6)},
         "2001:db8:2::d4": MAC["b"], "2001:db8:2::d6": MAC["b"],
         "198.18.1.2": MAC["a"], "2001:db8:1::2": MAC["a"]}
CFG = dict(icmp_source4="198.18.1.1", icmp_source6="2001:db8:1::1")


def config(tunnels: list[dict[str, Any]] | None = None) -> TunnelConfig:
    return TunnelConfig(("t0", "t1"), None, **CFG,
                        tunnels=check_tunnels(TUNNELS if tunnels is None else tunnels))


class World:
    def __init__(self) -> None:
        self.ifindex: dict[str, int] = {}
        self.coll: Any = None
        self.ids: dict[str, int] = {}

    def run(self, port: str, frame: bytes) -> Any:
        raise NotImplementedError

    def maps(self) -> dict[str, Any]:
        return compiled().typed_maps(self.coll)

    def reason(self, name: str) -> int:
        return sum(c.packets for c in self.maps()["stats"][REASONS[name]])

    def tunnel(self, name: str) -> int:
        return sum(c.packets for c in self.maps()["tunnels"][self.ids[name]])

    def load(self, backend: Any, cfg: TunnelConfig) -> None:
        self.ids = assign_ids(cfg.tunnels, {})
        self.coll = load_generation(cfg, [self.ifindex["t0"], self.ifindex["t1"]], backend,
                                    self.ids, ifindex_of=self.ifindex.__getitem__)
        self.prog = self.coll.programs[PROGRAM]


class EmuWorld(World):
    def __init__(self, backend: Any, cfg: TunnelConfig) -> None:
        super().__init__()
        from pyxdp.emu import Fib, FibResult

        self.ifindex = {"t0": 2, "t1": 3}
        fib = Fib()
        fib.add_route("198.18.1.1/32", kind=FibResult.NOT_FWDED)
        fib.add_route("198.18.2.1/32", kind=FibResult.NOT_FWDED)
        for ip, m in NEIGH.items():
            port = "t0" if ip in ("198.18.1.2", "2001:db8:1::2") else "t1"
            fib.add_route(ip, self.ifindex[port], MAC[port], m)
        self.load(backend, cfg)
        self.prog.machine.fib = fib

    def run(self, port: str, frame: bytes) -> Any:
        return self.prog.run_packet(frame, ingress_ifindex=self.ifindex[port])


class KernelWorld(World):
    def __init__(self, backend: Any, tb: Any, cfg: TunnelConfig) -> None:
        super().__init__()
        self.tb = tb
        tb.namespace("tun")
        tb.namespace("a")
        tb.namespace("b")
        tb.veth("a", "a0", "tun", "t0", ipv4=("198.18.1.2/24", "198.18.1.1/24"),
                ipv6=("2001:db8:1::2/64", "2001:db8:1::1/64"), macs=(MAC["a"], MAC["t0"]))
        tb.veth("b", "b0", "tun", "t1", ipv4=(f"{R4}/24", f"{L4}/24"),
                ipv6=(f"{R6}/64", f"{L6}/64"), macs=(MAC["b"], MAC["t1"]))
        tb.sysctl("tun", "net.ipv4.ip_forward", "1")
        tb.sysctl("tun", "net.ipv6.conf.all.forwarding", "1")
        for ip, m in NEIGH.items():
            port = "t0" if ip in ("198.18.1.2", "2001:db8:1::2") else "t1"
            tb.neighbour("tun", port, ip, m)
        self.ifindex = {p: tb.call("tun", socket.if_nametoindex, p) for p in ("t0", "t1")}
        tb.call("tun", self.load, backend, cfg)

    def run(self, port: str, frame: bytes) -> Any:
        return self.tb.call("tun", self.prog.run_packet, frame,
                            ingress_ifindex=self.ifindex[port])


def make_world(backend: Any, cfg: TunnelConfig) -> Iterator[World]:
    if backend.name == "emulator":
        w: World = EmuWorld(backend, cfg)
        try:
            yield w
        finally:
            w.coll.close()
        return
    from pyxdp.testbed import Testbed
    with Testbed() as tb:
        w = KernelWorld(backend, tb, cfg)
        try:
            yield w
        finally:
            w.coll.close()


@pytest.fixture
def world(backend: Any) -> Iterator[World]:
    yield from make_world(backend, config())


def inner4(dst: str = "198.18.1.2", size: int = 40, df: bool = False) -> Any:
    return IP(src="198.18.64.9", dst=dst, ttl=33, flags="DF" if df else 0, id=77) / UDP(
        sport=1111, dport=2222) / Raw(b"i" * size)


def inner6(dst: str = "2001:db8:1::2", size: int = 40) -> Any:
    return IPv6(src="2001:db8:64::9", dst=dst, hlim=33) / UDP(sport=1111, dport=2222) / Raw(
        b"i" * size)


def outer(remote: str = R4, local: str = L4) -> Any:
    e = Ether(src=MAC["b"], dst=MAC["t1"])
    if ":" in remote:
        return e / IPv6(src=remote, dst=local, hlim=64)
    return e / IP(src=remote, dst=local, ttl=64)


def gue0(proto: int) -> bytes:
    return bytes([0, proto, 0, 0])


L3_IN = Ether(src=MAC["b"], dst=MAC["t1"])


def decap_cases() -> list[tuple[str, Any, Any]]:
    """(case, outer frame, what the stack must get)"""
    i4, i6 = inner4(), inner6()
    l2in = Ether(src="02:dd:00:00:00:01", dst=MAC["t1"]) / inner4()
    return [
        ("ipip 4in4", outer() / i4, L3_IN / inner4()),
        ("6in4", outer() / i6, L3_IN / inner6()),
        ("4in6", outer(R6, L6) / i4, L3_IN / inner4()),
        ("6in6", outer(R6, L6) / i6, L3_IN / inner6()),
        ("gue v0 ipv4", outer("198.18.2.3") / UDP(sport=5555, dport=6080)
         / Raw(gue0(4)) / i4, L3_IN / inner4()),
        ("gue v0 ipv6", outer("198.18.2.3") / UDP(sport=5555, dport=6080)
         / Raw(gue0(41)) / i6, L3_IN / inner6()),
        ("gue v0 options", outer("198.18.2.3") / UDP(sport=5555, dport=6080)
         / Raw(bytes([2, 4, 0, 0]) + b"\x00" * 8) / i4, L3_IN / inner4()),
        ("gue v1", outer("2001:db8:2::3", L6) / UDP(sport=5555, dport=6080) / i4,
         L3_IN / inner4()),
        ("gre", outer("198.18.2.4") / GRE(proto=0x0800) / i4, L3_IN / inner4()),
        ("gre checksum+seq", outer("198.18.2.4") / GRE(proto=0x0800, chksum_present=1,
                                                       seqnum_present=1, sequence_number=5)
         / i4, L3_IN / inner4()),
        ("gre key", outer("2001:db8:2::4", L6) / GRE(proto=0x0800, key_present=1,
                                                     key=0xDEADBEEF) / i4,
         L3_IN / inner4()),
        ("vxlan", outer("198.18.2.5") / UDP(sport=5555, dport=4789) / VXLAN(vni=42) / l2in,
         l2in),
        ("geneve", outer("2001:db8:2::5", L6) / UDP(sport=5555, dport=6081)
         / GENEVE(vni=4242, proto=0x6558) / l2in, l2in),
        ("geneve options", outer("2001:db8:2::5", L6) / UDP(sport=5555, dport=6081)
         / GENEVE(vni=4242, proto=0x6558, optionlen=2,
                  options=b"\x01\x02\x03\x01" + b"\x00" * 4) / l2in, l2in),
        ("srv6 end.dx4 srh", Ether(src=MAC["b"], dst=MAC["t1"])
         / IPv6(src=R6, dst=SID) / IPv6ExtHdrSegmentRouting(addresses=[SID], segleft=0,
                                                             nh=4) / i4, L3_IN / inner4()),
        ("srv6 end.dx4 reduced", Ether(src=MAC["b"], dst=MAC["t1"])
         / IPv6(src=OTHER6, dst=SID, nh=4) / i4, L3_IN / inner4()),
        ("srv6 end.dx6", Ether(src=MAC["b"], dst=MAC["t1"])
         / IPv6(src=R6, dst="2001:db8:5::d6") / IPv6ExtHdrSegmentRouting(
             addresses=["2001:db8:5::d6"], segleft=0, nh=41) / i6, L3_IN / inner6()),
    ]


TUNNEL_OF = {"ipip 4in4": "ipip4", "6in4": "sit", "4in6": "ipip6", "6in6": "ip6ip6",
             "gue v0 ipv4": "gue4", "gue v0 ipv6": "gue4", "gue v0 options": "gue4",
             "gue v1": "gue1", "gre": "gre", "gre checksum+seq": "gre", "gre key": "grekey",
             "vxlan": "vx", "geneve": "gnv", "geneve options": "gnv",
             "srv6 end.dx4 srh": "dx4", "srv6 end.dx4 reduced": "dx4",
             "srv6 end.dx6": "dx6"}


@pytest.mark.parametrize("case", [c[0] for c in decap_cases()])
def test_decap_each_protocol(world: World, case: str) -> None:
    _, frame, want = next(c for c in decap_cases() if c[0] == case)
    r = world.run("t1", bytes(frame))
    assert r.verdict == XDP_PASS
    assert r.packet == bytes(want)               # outer gone, inner bytes (checksums) as sent
    assert world.reason("decapsulated") == 1
    assert world.tunnel(TUNNEL_OF[case]) == 1


def unknown_cases() -> list[tuple[str, Any]]:
    i4 = inner4()
    l2in = Ether(src="02:dd:00:00:00:01", dst=MAC["t1"]) / i4
    return [
        ("ipip from an unknown endpoint", outer(OTHER4) / i4),
        ("6in6 from an unknown endpoint", outer(OTHER6, L6) / inner6()),
        ("gue from the ipip endpoint", outer(R4) / UDP(dport=6080) / Raw(gue0(4)) / i4),
        ("vxlan with another vni", outer("198.18.2.5") / UDP(dport=4789) / VXLAN(vni=43)
         / l2in),
        ("gre without the key", outer("2001:db8:2::4", L6) / GRE(proto=0x0800) / i4),
        ("gre with another key", outer("2001:db8:2::4", L6) / GRE(proto=0x0800,
                                                                  key_present=1, key=1) / i4),
        ("srv6 to another sid", Ether(src=MAC["b"], dst=MAC["t1"])
         / IPv6(src=R6, dst="2001:db8:5::99") / IPv6ExtHdrSegmentRouting(
             addresses=["2001:db8:5::99"], segleft=0, nh=4) / i4),
        ("end.dx6 sid with an ipv4 payload", Ether(src=MAC["b"], dst=MAC["t1"])
         / IPv6(src=OTHER6, dst="2001:db8:5::d6", nh=4) / i4),
    ]


@pytest.mark.parametrize("case", [c[0] for c in unknown_cases()])
def test_unknown_endpoint_is_untouched(world: World, case: str) -> None:
    frame = bytes(next(c for c in unknown_cases() if c[0] == case)[1])
    r = world.run("t1", frame)
    assert r.verdict == XDP_PASS and r.packet == frame
    assert world.reason("pass_unknown_endpoint") == 1
    assert world.reason("decapsulated") == 0


def unsupported_cases() -> list[tuple[str, Any, str]]:
    i4 = inner4()
    l2in = Ether(src="02:dd:00:00:00:01", dst=MAC["t1"]) / i4
    return [
        ("gre version 1", outer("198.18.2.4") / GRE(proto=0x0800, version=1) / i4,
         "pass_unsupported"),
        ("gre routing", outer("198.18.2.4") / GRE(proto=0x0800, routing_present=1) / i4,
         "pass_unsupported"),
        ("geneve critical option", outer("2001:db8:2::5", L6) / UDP(dport=6081)
         / GENEVE(vni=4242, proto=0x6558, critical=1) / l2in, "pass_unsupported"),
        ("gue control", outer("198.18.2.3") / UDP(dport=6080) / Raw(bytes([0x20, 0, 0, 0]))
         / i4, "pass_unsupported"),
        ("srv6 segments left", Ether(src=MAC["b"], dst=MAC["t1"]) / IPv6(src=R6, dst=SID)
         / IPv6ExtHdrSegmentRouting(addresses=["2001:db8:9::1", SID], segleft=1, nh=4) / i4,
         "pass_unsupported"),
        ("vxlan without the I flag", outer("198.18.2.5") / UDP(dport=4789)
         / VXLAN(vni=42, flags=0) / l2in, "pass_malformed"),
        ("outer fragment", Ether(src=MAC["b"], dst=MAC["t1"])
         / IP(src=R4, dst=L4, proto=4, flags="MF") / Raw(bytes(i4)), "pass_fragment"),
    ]


@pytest.mark.parametrize("case", [c[0] for c in unsupported_cases()])
def test_unsupported_or_invalid_is_untouched(world: World, case: str) -> None:
    _, f, reason = next(c for c in unsupported_cases() if c[0] == case)
    frame = bytes(f)
    r = world.run("t1", frame)
    assert r.verdict == XDP_PASS and r.packet == frame
    assert world.reason(reason) == 1
    assert world.reason("decapsulated") == 0


def test_truncated_outer_headers_never_crash(world: World) -> None:
    """Every decap case cut at every length short of a whole inner header (IPv4 20, IPv6
    40, Ethernet 14 bytes): passed untouched, counted, never decapsulated."""
    n = 0
    for _case, frame, want in decap_cases():
        b, w = bytes(frame), bytes(want)
        l2 = w[:12] != bytes(L3_IN)[:12]           # L3 payloads keep the outer MACs
        inner = w if l2 else w[14:]
        at = len(b) - len(inner)                   # where the payload starts in the frame
        need = 14 if l2 else (20 if inner[0] >> 4 == 4 else 40)
        for cut in range(14, at + need):
            r = world.run("t1", b[:cut])
            assert r.verdict == XDP_PASS, (_case, cut)
            assert r.packet == b[:cut], (_case, cut)
            n += 1
    assert world.reason("decapsulated") == 0
    counted = sum(world.reason(k) for k in REASONS if k != "decapsulated")
    assert counted == n


def test_decap_then_forward(world: World) -> None:
    frame = outer("198.18.2.6") / inner4("198.18.1.2")
    r = world.run("t1", bytes(frame))
    assert r.verdict == XDP_REDIRECT
    out = Ether(r.packet)
    assert out.dst == MAC["a"] and out.src == MAC["t0"]
    assert out[IP].ttl == 32 and out[IP].dst == "198.18.1.2"
    want = IP(bytes(inner4("198.18.1.2")))
    want.ttl = 32
    del want.chksum
    assert bytes(out[IP]) == bytes(IP(bytes(want)))      # checksum recomputed right
    assert world.tunnel("fwd") == 1


def lan4(dst: str, size: int = 40, df: bool = False) -> bytes:
    return bytes(Ether(src=MAC["a"], dst=MAC["t0"]) / IP(
        src="198.18.1.2", dst=dst, ttl=33, flags="DF" if df else 0, id=77)
        / UDP(sport=1111, dport=2222) / Raw(b"e" * size))


def lan6(dst: str, size: int = 40) -> bytes:
    return bytes(Ether(src=MAC["a"], dst=MAC["t0"]) / IPv6(src="2001:db8:1::2", dst=dst,
                                                           hlim=33)
                 / UDP(sport=1111, dport=2222) / Raw(b"e" * size))


def check_outer_ip(out: Any, remote: str, local: str, proto: int, plen: int) -> None:
    if ":" in remote:
        o = out[IPv6]
        assert (o.src, o.dst, o.nh, o.hlim, o.plen) == (local, remote, proto, 33, plen)
    else:
        o = out[IP]
        assert (o.src, o.dst, o.proto, o.ttl, o.ihl, o.len) == (local, remote, proto, 33, 5,
                                                                 plen + 20)
        raw = bytes(o)[:20]
        fixed = IP(raw)
        del fixed.chksum
        assert bytes(IP(bytes(fixed)))[:20] == raw        # header checksum valid


def udp_sport(out: Any) -> int:
    sport = int(out[UDP].sport)
    assert 0xC000 <= sport <= 0xFFFF
    return sport


@pytest.mark.parametrize("tname,frame,remote,local,proto,extra", [
    ("ipip4", lambda: lan4("198.18.64.5"), R4, L4, 4, b""),
    ("sit", lambda: lan6("2001:db8:64::5"), R4, L4, 41, b""),
    ("ipip6", lambda: lan4("198.18.65.5"), R6, L6, 4, b""),
    ("ip6ip6", lambda: lan6("2001:db8:65::5"), R6, L6, 41, b""),
    ("gre", lambda: lan4("198.18.68.5"), "198.18.2.4", L4, 47, bytes(GRE(proto=0x0800))),
    ("grekey", lambda: lan4("198.18.69.5"), "2001:db8:2::4", L6, 47,
     bytes(GRE(proto=0x0800, key_present=1, key=0xDEADBEEF))),
    ("dx4", lambda: lan4("198.18.72.5"), SID_REMOTE, L6, 4, b""),
    ("dx6", lambda: lan6("2001:db8:72::5"), "2001:db8:2::d6", L6, 41, b""),
])
def test_encap_ip_kinds(world: World, tname: str, frame: Any, remote: str, local: str,
                        proto: int, extra: bytes) -> None:
    f = frame()
    r = world.run("t0", f)
    assert r.verdict == XDP_REDIRECT
    out = Ether(r.packet)
    assert out.dst == MAC["b"] and out.src == MAC["t1"]
    hdr = 40 if ":" in remote else 20
    check_outer_ip(out, remote, local, proto, len(f) - 14 + len(extra))
    assert r.packet[14 + hdr:14 + hdr + len(extra)] == extra
    assert r.packet[14 + hdr + len(extra):] == f[14:]         # the inner packet as it came
    assert world.reason("encapsulated") == 1 and world.tunnel(tname) == 1


@pytest.mark.parametrize("tname,frame,remote,local,dport,hdr", [
    ("gue4", lambda: lan4("198.18.66.5"), "198.18.2.3", L4, 6080, gue0(4)),
    ("gue4", lambda: lan6("2001:db8:66::5"), "198.18.2.3", L4, 6080, gue0(41)),
    ("gue1", lambda: lan4("198.18.67.5"), "2001:db8:2::3", L6, 6080, b""),
])
def test_encap_gue(world: World, tname: str, frame: Any, remote: str, local: str,
                   dport: int, hdr: bytes) -> None:
    f = frame()
    r = world.run("t0", f)
    assert r.verdict == XDP_REDIRECT
    out = Ether(r.packet)
    check_outer_ip(out, remote, local, 17, len(f) - 14 + 8 + len(hdr))
    sport = udp_sport(out)
    want = bytes(UDP(sport=sport, dport=dport, len=len(f) - 14 + 8 + len(hdr), chksum=0))
    ip = 40 if ":" in remote else 20
    assert r.packet[14 + ip:14 + ip + 8] == want
    assert r.packet[14 + ip + 8:] == hdr + f[14:]


@pytest.mark.parametrize("tname,frame,remote,local,dport,vni", [
    ("vx", lambda: lan4("198.18.70.5"), "198.18.2.5", L4, 4789, 42),
    ("gnv", lambda: lan4("198.18.71.5"), "2001:db8:2::5", L6, 6081, 4242),
])
def test_encap_l2_kinds(world: World, tname: str, frame: Any, remote: str, local: str,
                        dport: int, vni: int) -> None:
    f = frame()
    r = world.run("t0", f)
    assert r.verdict == XDP_REDIRECT
    out = Ether(r.packet)
    check_outer_ip(out, remote, local, 17, len(f) + 16)
    sport = udp_sport(out)
    ip = 40 if ":" in remote else 20
    assert r.packet[14 + ip:14 + ip + 8] == bytes(UDP(sport=sport, dport=dport,
                                                      len=len(f) + 16, chksum=0))
    tun = bytes(VXLAN(vni=vni)) if tname == "vx" else bytes(GENEVE(vni=vni, proto=0x6558))
    assert r.packet[14 + ip + 8:14 + ip + 16] == tun
    inner = f if tname != "vx" else bytes.fromhex(MAC["x"].replace(":", "")) + f[6:]
    assert r.packet[14 + ip + 16:] == inner            # the whole frame (VXLAN: inner_dmac)


def test_flow_hash_spreads_and_is_stable(world: World) -> None:
    ports = set()
    for sp in range(40):
        f = bytes(Ether(src=MAC["a"], dst=MAC["t0"]) / IP(src="198.18.1.2", dst="198.18.66.5")
                  / UDP(sport=1000 + sp, dport=53) / Raw(b"q" * 20))
        a = udp_sport(Ether(world.run("t0", f).packet))
        assert udp_sport(Ether(world.run("t0", f).packet)) == a      # one flow, one port
        ports.add(a)
    assert len(ports) > 20                                  # flows spread over source ports


def test_no_route_to_the_remote_goes_to_the_stack(backend: Any) -> None:
    cfg = config([{"name": "lost", "protocol": "ipip", "local": L4, "remote": "198.18.3.3",
                   "routes": ["198.18.64.0/24"]}])
    for w in make_world(backend, cfg):
        f = lan4("198.18.64.5")
        r = w.run("t0", f)
        assert r.verdict == XDP_PASS and r.packet == f
        assert w.reason("pass_no_route") == 1


def test_too_big_ipv4_df_answered_with_icmp(world: World) -> None:
    f = lan4("198.18.73.5", size=1400 - 28 + 1, df=True)     # 1401 + 20 > 1400
    r = world.run("t0", f)
    assert r.verdict == XDP_REDIRECT                          # back out of t0 (devmap)
    out = Ether(r.packet)
    assert out.dst == MAC["a"] and out.src == MAC["t0"]
    assert out[IP].src == "198.18.1.1" and out[IP].dst == "198.18.1.2"
    icmp = out[ICMP]
    assert (icmp.type, icmp.code, icmp.nexthopmtu) == (3, 4, 1400 - 20)
    assert bytes(icmp)[8:] == f[14:14 + 28]                   # the quote: header + 8 bytes
    fixed = IP(bytes(out[IP]))
    del fixed.chksum
    del fixed[ICMP].chksum
    assert bytes(IP(bytes(fixed))) == bytes(out[IP])          # both checksums valid
    assert world.reason("icmp_too_big_sent") == 1


def test_too_big_ipv4_without_df_is_dropped(world: World) -> None:
    r = world.run("t0", lan4("198.18.73.5", size=1400, df=False))
    assert r.verdict == XDP_DROP and world.reason("drop_too_big") == 1


def test_too_big_ipv6_answered_with_packet_too_big(world: World) -> None:
    from scapy.layers.inet6 import ICMPv6PacketTooBig
    f = lan6("2001:db8:74::5", size=1400)
    r = world.run("t0", f)
    assert r.verdict == XDP_REDIRECT
    out = Ether(r.packet)
    assert out[IPv6].src == "2001:db8:1::1" and out[IPv6].dst == "2001:db8:1::2"
    ptb = out[ICMPv6PacketTooBig]
    assert ptb.mtu == 1400 - 20
    assert bytes(ptb)[8:] == f[14:14 + 48]
    fixed = IPv6(bytes(out[IPv6]))
    del fixed[ICMPv6PacketTooBig].cksum
    assert bytes(IPv6(bytes(fixed))) == bytes(out[IPv6])     # ICMPv6 checksum valid
    assert world.reason("icmp_too_big_sent") == 1


def test_not_a_tunnel_and_not_routed_passes(world: World) -> None:
    for f in (lan4("198.18.1.77"), lan6("2001:db8:1::77"),
              bytes(Ether(src=MAC["a"], dst=MAC["t0"], type=0x0806) / Raw(b"\x00" * 28))):
        r = world.run("t0", f)
        assert r.verdict == XDP_PASS and r.packet == f
    assert world.reason("pass_not_tunnel") == 2 and world.reason("pass_not_ip") == 1


def test_words_match_the_data_plane() -> None:
    from pyxdp.apps.tunnel.config import words
    a, b = words(ipaddress.ip_address("2001:db8::1"))
    assert struct.pack("<QQ", a, b) == ipaddress.IPv6Address("2001:db8::1").packed
    assert words(ipaddress.ip_address("198.18.0.1")) == (0xC6120001, 0)

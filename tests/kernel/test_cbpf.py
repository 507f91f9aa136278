"""tcpdump expressions, translated from classic BPF to eBPF, against libpcap itself.

For every expression of a corpus (>= 100, the filters operators write: protocols, hosts,
nets, ports, ranges, TCP flags, byte offsets and masks, lengths, VLANs, IPv6 and its
``protochain`` walk, fragments, arithmetic), libpcap compiles classic BPF; pyxdp
translates it to an XDP program; that program runs in the kernel and in the emulator
over ~40 varied frames built with scapy, and must return exactly what
``pcap_offline_filter`` returns for each frame.
"""

from __future__ import annotations

import pytest

from pyxdp.cbpf import CbpfError, CbpfInsn, translate, translate_spec
from pyxdp.cbpf.libpcap import compile_expression, offline_filter
from pyxdp.spec import ObjectSpec

EXPRESSIONS = [
    "ip", "ip6", "arp", "tcp", "udp", "icmp", "icmp6", "vlan", "not ip", "ip or ip6",
    "host 198.18.0.1", "src host 198.18.0.1", "dst host 198.18.0.2", "host 2001:db8::1",
    "src host 2001:db8::1", "dst host 2001:db8::2", "net 198.18.0.0/24",
    "src net 198.19.0.0/16", "dst net 198.18.0.0/15", "net 2001:db8::/32",
    "src net 2001:db8:1::/48", "port 53", "src port 53", "dst port 53", "tcp port 80",
    "udp port 53", "port 80 or port 443", "portrange 1000-2000", "tcp dst portrange 20-25",
    "udp src portrange 5000-6000", "not port 22", "tcp and port 22",
    "udp and dst port 53 and udp[10] & 0x80 = 0", "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn", "tcp[tcpflags] & tcp-rst != 0",
    "tcp[tcpflags] & tcp-fin != 0", "tcp[tcpflags] == tcp-ack", "tcp[13] = 18",
    "tcp[12] & 0xf0 > 0x50", "ip[8] = 64", "ip[8] < 10", "ip[1] & 0xfc = 0xb8",
    "ip[0] & 0xf != 5", "ip[0] & 0xf > 5", "ip[6:2] & 0x1fff != 0", "ip[6] & 0x20 != 0",
    "ip[6:2] & 0x3fff != 0", "ip[2:2] > 100", "ip[2:2] < 60", "ip[9] = 17",
    "ip proto 17", "ip proto 6", "ip proto 1", "ip6 proto 17", "ip6 proto 58",
    "ip6 protochain 6", "ip6 protochain 17", "ip6 protochain 58", "ip6 protochain 44",
    "ip protochain 6", "len > 100", "len < 80", "len = 60", "len >= 64 and len <= 128",
    "greater 200", "less 70", "ether src 02:00:00:00:00:01", "ether dst 02:00:00:00:00:02",
    "ether host 02:00:00:00:00:66", "ether broadcast", "ether multicast", "ip multicast",
    "ether proto 0x0806", "ether[12:2] = 0x0800", "ether[0] & 1 != 0",
    "vlan 42", "vlan and udp", "vlan 42 and ip", "vlan 7", "vlan and vlan",
    "icmp[icmptype] = icmp-echo", "icmp[icmptype] = icmp-echoreply", "icmp[0] = 3",
    "icmp6 and ip6[40] = 128", "ip6[6] = 58", "ip6[7] < 10", "ip6[0] & 0xf0 = 0x60",
    "udp[8:2] = 0x7878", "udp[4:2] > 20", "tcp[20:4] = 0x47455420", "tcp[20] = 0x47",
    "udp[8] & 0x0f = 1", "ip[2:2] / 2 > 30", "ip[2:2] * 2 > 200", "ip[2:2] - 20 > 30",
    "ip[2:2] + 14 = len", "ip[2:2] % 7 = 0", "ip[8] ^ 0xff > 200", "ip[8] << 1 > 100",
    "ip[8] >> 1 > 30", "ip[8] | 1 = 65", "(ip[2:2] & 0xff) - (ip[8] & 0x0f) > 2",
    "udp and ip[2:2] - ((ip[0] & 0xf) << 2) > 30", "tcp and (tcp[0:2] > 1000)",
    "ip and not tcp and not udp", "(tcp or udp) and ip6", "ip6 and not ip6 protochain 6",
    "host 198.18.0.1 and (port 53 or port 80)", "src 198.18.0.1 and dst 198.18.0.2",
    "dst 2001:db8::2 and udp", "net 198.18.0.0 mask 255.255.0.0",
    "not (host 198.18.0.1 or host 198.18.0.3)", "udp and not udp port 53",
    "tcp and tcp[tcpflags] & tcp-push != 0", "ip[6:2] & 0x1fff = 0 and udp",
    "ip and ip[0] & 0x0f > 5 and tcp", "tcp[tcpflags] & tcp-ece != 0",
    "tcp[14:2] < 1000", "udp[6:2] = 0", "ip[12:4] = 0xc6120001",
]


def _frames() -> list[bytes]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import (
        ICMPv6EchoRequest,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
    )
    from scapy.layers.l2 import ARP, Dot1Q, Ether
    from scapy.packet import Raw

    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    v4 = IP(src="198.18.0.1", dst="198.18.0.2")
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    pkts = [
        e / v4 / UDP(sport=1234, dport=53) / Raw(b"\x12\x34\x01\x00" + bytes(8)),
        e / v4 / UDP(sport=53, dport=40000) / Raw(b"\x12\x34\x81\x80" + bytes(8)),
        e / v4 / UDP(sport=5555, dport=9) / Raw(b"xx" * 30),
        e / v4 / UDP(sport=1500, dport=1600) / Raw(b"\x01" * 3),
        e / v4 / TCP(sport=40000, dport=80, flags="S"),
        e / v4 / TCP(sport=80, dport=40000, flags="SA"),
        e / v4 / TCP(sport=40000, dport=80, flags="A") / Raw(b"GET / HTTP/1.0\r\n\r\n"),
        e / v4 / TCP(sport=40000, dport=443, flags="PA") / Raw(b"\x16\x03" * 40),
        e / v4 / TCP(sport=22, dport=50000, flags="R"),
        e / v4 / TCP(sport=22, dport=50000, flags="FA"),
        e / v4 / TCP(sport=1000, dport=22, flags="SE",
                     options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)),
                              ("WScale", 7)]),
        e / IP(src="198.18.0.3", dst="198.18.0.2", ttl=5) / TCP(dport=25, flags="S"),
        e / IP(src="198.19.4.4", dst="198.18.0.2", tos=0xb8) / UDP(dport=5060) / Raw(b"v"),
        e / IP(src="198.18.0.1", dst="198.18.0.2", options=b"\x94\x04\x00\x00") /
        TCP(dport=80, flags="S"),
        e / IP(src="198.18.0.1", dst="198.18.0.2", flags="MF", frag=0) / UDP(dport=53) /
        Raw(b"f" * 40),
        e / IP(src="198.18.0.1", dst="198.18.0.2", frag=10, proto=17) / Raw(b"g" * 40),
        e / IP(src="198.18.0.1", dst="198.18.0.2", flags="DF") / ICMP(type=8) / Raw(b"p" * 20),
        e / IP(src="198.18.0.2", dst="198.18.0.1") / ICMP(type=0) / Raw(b"p" * 20),
        e / IP(src="198.18.0.2", dst="198.18.0.1") / ICMP(type=3, code=3) / Raw(b"q" * 28),
        e / IP(src="198.18.0.1", dst="224.0.0.5", proto=89) / Raw(b"o" * 20),
        Ether(src="02:00:00:00:00:66", dst="ff:ff:ff:ff:ff:ff") /
        IP(src="198.18.0.9", dst="198.18.255.255") / UDP(dport=137) / Raw(b"b" * 10),
        Ether(src="02:00:00:00:00:01", dst="01:00:5e:00:00:fb") /
        IP(src="198.18.0.1", dst="224.0.0.251") / UDP(sport=5353, dport=5353),
        e / v6 / UDP(sport=1234, dport=53) / Raw(b"\x00\x01" * 6),
        e / v6 / TCP(sport=40000, dport=443, flags="S"),
        e / v6 / ICMPv6EchoRequest(data=b"ping6"),
        e / IPv6(src="2001:db8:1::5", dst="2001:db8::2", hlim=3) / UDP(dport=9999),
        e / v6 / IPv6ExtHdrHopByHop() / TCP(dport=80, flags="S"),
        e / v6 / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / UDP(dport=53),
        e / v6 / IPv6ExtHdrFragment(m=1, nh=17) / UDP(dport=53) / Raw(b"h" * 16),
        e / v6 / IPv6ExtHdrFragment(offset=5, nh=6) / Raw(b"i" * 16),
        e / Dot1Q(vlan=42) / v4 / UDP(dport=53) / Raw(b"v" * 12),
        e / Dot1Q(vlan=7) / v6 / TCP(dport=80),
        e / Dot1Q(vlan=42) / Dot1Q(vlan=7) / v4 / UDP(dport=1234),
        e / Dot1Q(vlan=42) / ARP(psrc="198.18.0.1", pdst="198.18.0.2"),
        Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") /
        ARP(psrc="198.18.0.1", pdst="198.18.0.2"),
        e / v4 / UDP(sport=4000, dport=4001) / Raw(b"z" * 1200),
        e / v4 / TCP(sport=1000, dport=2000, flags="A", window=500) / Raw(b"w" * 300),
    ]
    out = [bytes(p) for p in pkts]
    # truncated (BPF_PROG_TEST_RUN refuses XDP frames under 14 bytes: none shorter)
    out += [out[0][:30], out[4][:40], out[22][:50], out[0][:16], bytes(14)]
    return out


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return _frames()


def test_the_corpus_is_large_and_compiles() -> None:
    assert len(EXPRESSIONS) >= 100 and len(set(EXPRESSIONS)) == len(EXPRESSIONS)
    sizes = [len(compile_expression(x)) for x in EXPRESSIONS]
    assert max(sizes) > 20 and min(sizes) >= 2


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_translation_agrees_with_libpcap(backend, frames, expr: str) -> None:
    prog = compile_expression(expr)
    spec = translate_spec(prog)
    want = [offline_filter(prog, f) for f in frames]
    with backend.load(ObjectSpec(programs={spec.name: spec})) as coll:
        p = coll.programs[spec.name]
        got = [p.run_packet(f).retval for f in frames]
    assert got == want, [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]


def test_the_frames_tell_expressions_apart(frames) -> None:
    """The corpus is discriminating: most expressions match some frames and not others."""
    mixed = 0
    for x in EXPRESSIONS:
        verdicts = {offline_filter(compile_expression(x), f) != 0 for f in frames}
        mixed += verdicts == {True, False}
    assert mixed >= 0.9 * len(EXPRESSIONS)


@pytest.mark.parametrize(("prog", "why"), [
    ([], "empty"),
    ([CbpfInsn(0x15, 5, 0, 1), CbpfInsn(0x06, 0, 0, 0)], "outside the program"),
    ([CbpfInsn(0x60, 0, 0, 16), CbpfInsn(0x16, 0, 0, 0)], "scratch memory index 16"),
    ([CbpfInsn(0x34, 0, 0, 0), CbpfInsn(0x16, 0, 0, 0)], "division by the constant 0"),
    ([CbpfInsn(0x64, 0, 0, 32), CbpfInsn(0x16, 0, 0, 0)], "shift by 32"),
    ([CbpfInsn(0xFF, 0, 0, 0), CbpfInsn(0x06, 0, 0, 0)], "unknown"),
    ([CbpfInsn(0x00, 0, 0, 1)], "must end in a return"),
])
def test_invalid_classic_programs_are_refused(prog, why: str) -> None:
    with pytest.raises(CbpfError, match=why):
        translate(prog)


def test_bad_expression_names_the_problem() -> None:
    with pytest.raises(CbpfError, match="bad filter expression 'port banana'"):
        compile_expression("port banana")


def test_protochain_loop_is_bounded(backend) -> None:
    """protochain's loop stops after LOOP_BOUND extension headers: a frame with more is
    "no match" here where libpcap (no bound) walks on; fewer agree (the corpus above)."""
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
    from scapy.layers.l2 import Ether

    from pyxdp.cbpf.translate import LOOP_BOUND

    prog = compile_expression("ip6 protochain 6")
    spec = translate_spec(prog)
    deep = Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2")
    for _ in range(LOOP_BOUND + 4):
        deep = deep / IPv6ExtHdrDestOpt()
    frame = bytes(deep / TCP(dport=80))
    assert offline_filter(prog, frame) != 0
    with backend.load(ObjectSpec(programs={spec.name: spec})) as coll:
        assert coll.programs[spec.name].run_packet(frame).retval == 0

"""One byte-order rule everywhere (issue 11): ``be16/be32/be64`` are storage types, and
whatever reads them -- a header field, ``ctx.load``, ``cursor.load``, raw ``load`` -- gives
the host-order value; whatever writes them takes one.  Checked in the kernel and in the
emulator, through the backend protocol, with the frame bytes as the reference."""

from __future__ import annotations

import pytest

from pyxdp.backend import Backend
from pyxdp.compiler import compile_module
from pyxdp.errors import CompileError

SRC = '''
from pyxdp.compiler.lang import *
out = ArrayMap[u32, u64](max_entries=8)

@xdp
def order(ctx):
    v = ctx.load(be32, 0)
    if not v:
        return XDP_PASS
    out.update(0, v.value)
    c = ctx.cursor()
    w = c.load(be16, 4)
    if w:
        out.update(1, w.value)
    x = ctx.load(u32, 0)
    if x:
        out.update(2, x.value)
    q = ctx.load(be64, 0)
    if q:
        out.update(3, q.value)
    p = ctx.data
    if p + 8 > ctx.data_end:
        return XDP_PASS
    out.update(4, load(be16, p + 6))
    store(be16, p + 8 - 2, 0xABCD)          # bytes 6..7 become AB CD
    v.value = 0x11223344                    # bytes 0..3 become 11 22 33 44
    return XDP_TX
'''
FRAME = bytes(range(1, 65))


def correct_checksum(ip: object) -> int:
    """The IPv4 header checksum scapy computes for ``ip``'s header (options included)."""
    from scapy.layers.inet import IP

    fresh = IP(bytes(ip))  # type: ignore[call-overload]
    del fresh.chksum
    return int(IP(bytes(fresh)).chksum)


def test_every_big_endian_read_and_write_is_in_host_order(backend: Backend) -> None:
    obj = compile_module(SRC)
    with backend.load(obj.spec) as coll:
        out = obj.typed_maps(coll)["out"]
        res = coll.programs["order"].run_packet(FRAME)
        got = [out[i] for i in range(5)]
    assert got == [int.from_bytes(FRAME[0:4], "big"), int.from_bytes(FRAME[4:6], "big"),
                   int.from_bytes(FRAME[0:4], "little"), int.from_bytes(FRAME[0:8], "big"),
                   int.from_bytes(FRAME[6:8], "big")]
    assert res.packet == bytes.fromhex("11223344") + FRAME[4:6] + bytes.fromhex("abcd") + (
        FRAME[8:])


@pytest.mark.parametrize("stmt", [
    "csum_replace2(1, 2, 3)", "csum_fold(5)", "bswap16(5)", "u32(ctx.ingress_ifindex)",
    "ctx.load(be32, 0)", "ipv4_csum(ip)",
])
def test_a_discarded_pure_result_is_refused(stmt: str) -> None:
    src = ("from pyxdp.compiler.lang import *\n\n@xdp\ndef p(ctx):\n"
           "    c = ctx.cursor()\n    eth = c.parse(Ethernet)\n    ip = c.parse(IPv4)\n"
           "    if not ip:\n        return XDP_PASS\n"
           f"    {stmt}\n    return XDP_PASS\n")
    with pytest.raises(CompileError, match="is discarded") as ei:
        compile_module(src)
    assert ei.value.line == 10


CSUM = '''
from pyxdp.compiler.lang import *
out = ArrayMap[u32, u64](max_entries=4)

@xdp
def csum(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    ip = c.parse(IPv4)
    if not ip:
        return XDP_PASS
    old = ip.check
    ip.check = 0
    whole = csum_fold(csum_diff(None, ip, 0))
    if csum_fold(csum_diff(0, ip, 0)) != whole:     # 0 means no old data, as in C
        return XDP_ABORTED
    out.update(0, whole)
    out.update(1, ipv4_csum(ip))
    out.update(2, old)
    ip.ttl = ip.ttl - 1
    ip.check = csum_fold(csum_diff(None, ip, 0))
    return XDP_TX
'''


def test_checksum_helpers_give_host_order_like_the_field_they_are_stored_in(
        backend: Backend) -> None:
    """``csum_fold(csum_diff(None, hdr, 0))`` stored in a header's checksum field gives
    the right bytes on the wire (it came out byte-swapped), and agrees with
    ``ipv4_csum`` and with the checksum the sender wrote (scapy)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IP(src="198.18.0.1", dst="198.18.0.2", ttl=64, id=0x1234)
                  / UDP(sport=1, dport=2) / bytes(12))
    obj = compile_module(CSUM)
    with backend.load(obj.spec) as coll:
        out = obj.typed_maps(coll)["out"]
        res = coll.programs["csum"].run_packet(frame)
        whole, by_ipv4_csum, sent = out[0], out[1], out[2]
    assert whole == by_ipv4_csum == sent == Ether(frame)[IP].chksum
    rewritten = Ether(res.packet)[IP]
    assert rewritten.ttl == 63
    assert rewritten.chksum == correct_checksum(rewritten)


ENCAP = '''
from pyxdp.compiler.lang import *

@xdp
def encap(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return XDP_PASS
    dst, src = eth.dst, eth.src
    if ctx.adjust_head(-20) != 0:
        return XDP_ABORTED
    c = ctx.cursor()
    neth = c.header(Ethernet)
    outer = c.header(IPv4)              # fresh headroom: its IHL is not read, it is written
    if not neth or not outer:
        return XDP_ABORTED
    neth.dst, neth.src, neth.proto = dst, src, ETH_P_IP
    outer.version = 4
    outer.ihl = 5
    outer.tos = 0
    outer.tot_len = ctx.packet_len() - 14
    outer.id = 0
    outer.frag_off = 0
    outer.ttl = 64
    outer.protocol = 4
    outer.saddr = ip4("198.18.0.100")
    outer.daddr = ip4("198.18.0.200")
    outer.check = 0
    outer.check = ipv4_csum(outer)
    return XDP_TX
'''


def test_a_header_is_pushed_into_fresh_headroom(backend: Backend) -> None:
    """IPIP encapsulation: ``c.header(IPv4)`` on fresh headroom gives a typed header to
    fill (``c.parse(IPv4)`` read the unset IHL there and returned None)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    inner = IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=1, dport=2) / bytes(10)
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / inner)
    obj = compile_module(ENCAP)
    with backend.load(obj.spec) as coll:
        res = coll.programs["encap"].run_packet(frame)
    assert res.verdict.name == "TX"
    out = Ether(res.packet)
    assert (out.src, out.dst, out.type) == ("02:00:00:00:00:01", "02:00:00:00:00:02", 0x800)
    outer = out[IP]
    assert (outer.src, outer.dst, outer.proto, outer.ihl) == ("198.18.0.100", "198.18.0.200",
                                                               4, 5)
    assert outer.len == len(res.packet) - 14
    assert outer.chksum == correct_checksum(outer)
    assert bytes(outer.payload) == bytes(inner)


def test_parse_on_fresh_headroom_is_what_header_fixes(backend: Backend) -> None:
    src = ENCAP.replace("outer = c.header(IPv4)", "outer = c.parse(IPv4)")
    obj = compile_module(src)
    frame = bytes(12) + b"\x08\x00" + bytes(40)
    with backend.load(obj.spec) as coll:
        assert coll.programs["encap"].run_packet(frame).verdict.name == "ABORTED"


RECHECK = '''
from pyxdp.compiler.lang import *

@xdp
def recheck(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    ip = c.parse(IPv4)
    if not ip:
        return XDP_PASS
    ip.ttl = ip.ttl - 1
    ip.check = 0
    ip.check = ipv4_csum(ip)
    return XDP_TX
'''


@pytest.mark.parametrize("options", [b"", b"\x94\x04\x00\x00", bytes([0x07, 39, 4]) + bytes(36)
                                     + b"\x00"])
def test_ipv4_csum_covers_the_options(backend: Backend, options: bytes) -> None:
    """IHL 5, 6 (router alert) and 15 (a 39-byte record route): the checksum covers the
    whole header, as the receiver checks it (it covered 20 bytes, silently wrong)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    ip = IP(src="198.18.0.1", dst="198.18.0.2", ttl=9, options=options) / UDP() / bytes(8)
    frame = bytes(Ether() / ip)
    assert Ether(frame)[IP].ihl == 5 + len(options) // 4
    obj = compile_module(RECHECK)
    with backend.load(obj.spec) as coll:
        res = coll.programs["recheck"].run_packet(frame)
    out = Ether(res.packet)[IP]
    assert out.ttl == 8
    assert out.chksum == correct_checksum(out)
